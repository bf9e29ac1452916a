"""Score a model bundle or a fine-tuned PyTorch checkpoint on labelled reviews.

>>> report = evaluate_model("runs/build/bundle", Source("test.csv", ColumnSpec()))  # doctest: +SKIP
>>> print(format_report(report))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgesent.bundle import MANIFEST_NAME
from edgesent.errors import InputError
from edgesent.metrics import classification_report

from .data import DropCounts, Review
from .sources import Source


def evaluate_model(
    model: str | Path,
    source: Source,
    *,
    batch_size: int = 32,
    threads: int | None = None,
    max_length: int = 256,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class figures, confusion matrix (and per domain) of ``model``."""
    drops = DropCounts()
    reviews = source.read(drops)
    if not reviews:
        raise InputError(f"{source.path}: no labelled reviews to evaluate on")
    labels, logits = _logits(Path(model), [r.text for r in reviews], batch_size, threads,
                             max_length)
    unknown = sorted({str(r.label) for r in reviews} - set(labels))
    if unknown:
        raise InputError(
            f"{source.path}: labels {unknown} are not among the model's labels {labels}; "
            "map them with --label-map or --stars, or drop them with --drop-label"
        )
    truth = np.array([labels.index(str(r.label)) for r in reviews])
    report = classification_report(truth, logits.argmax(axis=1), labels)
    report["model"] = str(model)
    report["file"] = str(source.path)
    report["rows_dropped"] = drops.as_dict()
    domains = _per_domain(reviews, truth, logits.argmax(axis=1))
    if domains:
        report["per_domain"] = domains
    return report


def _logits(
    model: Path, texts: list[str], batch_size: int, threads: int | None, max_length: int
) -> tuple[list[str], np.ndarray]:
    if (model / MANIFEST_NAME).exists():
        from edgesent import Classifier

        classifier = Classifier.load(model, threads=threads)
        return list(classifier.labels), classifier.predict_logits(texts, batch_size=batch_size)
    if not (model / "config.json").exists():
        raise InputError(
            f"{model}: neither a bundle ({MANIFEST_NAME}) nor a checkpoint (config.json)"
        )
    from transformers import AutoConfig

    from edgesent.tokenization import EncodingSettings

    from .finetune import encode_reviews, load_classifier, load_tokenizer, make_encoder
    from .training import predict_logits

    config = AutoConfig.from_pretrained(str(model))
    labels = [config.id2label[i] for i in range(config.num_labels)]
    # head_tokens 64 at the default 256, a quarter of shorter lengths (64 would not fit).
    encoding = EncodingSettings(max_length=max_length, head_tokens=min(64, max_length // 4))
    encoder = make_encoder(load_tokenizer(model), encoding)
    classifier = load_classifier(model, labels)
    if threads:
        import torch

        torch.set_num_threads(threads)
    encoded = encode_reviews(encoder, [Review(t, None) for t in texts], labels)
    return labels, predict_logits(classifier, encoded, encoder.pad_id, batch_size)


def _per_domain(reviews: list[Review], truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    groups: dict[str, list[int]] = {}
    for i, review in enumerate(reviews):
        if review.domain is not None:
            groups.setdefault(review.domain, []).append(i)
    return {
        domain: {"accuracy": float((truth[idx] == pred[idx]).mean()), "n": len(idx)}
        for domain, idx in sorted(groups.items())
    }


def format_report(report: dict[str, Any]) -> str:
    """A report as aligned text tables for people."""
    labels = report["labels"]
    width = max(12, *(len(label) for label in labels))
    lines = [
        f"model:    {report['model']}",
        f"file:     {report['file']} ({report['n']} reviews)",
        f"accuracy: {report['accuracy']:.4f}",
        f"macro-F1: {report['macro_f1']:.4f}",
        "",
        f"{'class':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
    ]
    for label in labels:
        c = report["per_class"][label]
        lines.append(
            f"{label:<{width}} {c['precision']:>9.4f} {c['recall']:>9.4f} {c['f1']:>9.4f} "
            f"{c['support']:>8}"
        )
    lines += ["", "confusion matrix (rows: true, columns: predicted)"]
    lines.append(" " * width + " " + " ".join(f"{label:>{width}}" for label in labels))
    for label, row in zip(labels, report["confusion_matrix"], strict=True):
        lines.append(f"{label:<{width}} " + " ".join(f"{n:>{width}}" for n in row))
    if report.get("per_domain"):
        lines += ["", f"{'domain':<{width}} {'accuracy':>9} {'n':>6}"]
        for domain, d in report["per_domain"].items():
            lines.append(f"{domain:<{width}} {d['accuracy']:>9.4f} {d['n']:>6}")
    if report.get("rows_dropped"):
        dropped = ", ".join(f"{k}: {v}" for k, v in report["rows_dropped"].items())
        lines += ["", f"rows dropped: {dropped}"]
    return "\n".join(lines)
