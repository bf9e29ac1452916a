"""Score a model bundle or a fine-tuned PyTorch checkpoint on labelled reviews.

>>> report = evaluate_model("runs/build/bundle", Source("test.csv", ColumnSpec()))  # doctest: +SKIP
>>> print(format_report(report))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgesent.bundle import MANIFEST_NAME
from edgesent.errors import InputError
from edgesent.metrics import classification_report
from edgesent.tokenization import EncodingSettings

from .data import DropCounts, Review
from .sources import Source
from .training_run import per_domain_accuracy, saved_encoding


def evaluate_model(
    model: str | Path,
    source: Source,
    *,
    batch_size: int = 32,
    threads: int | None = None,
    max_length: int | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class figures, confusion matrix (and per domain) of ``model``.

    A checkpoint is read with the encoding its training saved; ``max_length`` overrides
    its length (and sets it for checkpoints that saved none, 256 by default).
    """
    drops = DropCounts()
    reviews = source.read(drops)
    if not reviews:
        raise InputError(f"{source.path}: no labelled reviews to evaluate on")
    labels, logits, encoding = _logits(Path(model), [r.text for r in reviews], batch_size,
                                       threads, max_length)
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
    if encoding is not None:
        report["encoding"] = asdict(encoding)
    domains = per_domain_accuracy(reviews, logits, labels)
    if domains:
        report["per_domain"] = domains
    return report


def _logits(
    model: Path, texts: list[str], batch_size: int, threads: int | None, max_length: int | None
) -> tuple[list[str], np.ndarray, EncodingSettings | None]:
    """Labels and logits of a bundle (run half), or of a checkpoint with its encoding."""
    if (model / MANIFEST_NAME).exists():
        from edgesent import Classifier

        classifier = Classifier.load(model, threads=threads)
        logits = classifier.predict_logits(texts, batch_size=batch_size)
        return list(classifier.labels), logits, None
    if not (model / "config.json").exists():
        raise InputError(
            f"{model}: neither a bundle ({MANIFEST_NAME}) nor a checkpoint (config.json)"
        )
    from transformers import AutoConfig

    from .torch_data import predict_logits
    from .training_run import encode_reviews, load_classifier, load_tokenizer, make_encoder

    config = AutoConfig.from_pretrained(str(model))
    labels = [config.id2label[i] for i in range(config.num_labels)]
    encoding = checkpoint_encoding(model, max_length)
    encoder = make_encoder(load_tokenizer(model), encoding)
    classifier = load_classifier(model, labels)
    if threads:
        import torch

        torch.set_num_threads(threads)
    encoded = encode_reviews(encoder, [Review(t, None) for t in texts], labels)
    return labels, predict_logits(classifier, encoded, encoder.pad_id, batch_size), encoding


def checkpoint_encoding(model: Path, max_length: int | None = None) -> EncodingSettings:
    """The encoding training saved with ``model``, its length overridden by ``max_length``;
    without one, ``max_length`` (256) with a quarter of it, at most 64, kept from the head."""
    saved = saved_encoding(model)
    if saved is None:
        length = max_length or EncodingSettings().max_length
        return EncodingSettings(max_length=length, head_tokens=min(64, length // 4))
    if max_length is None:
        return saved
    return replace(saved, max_length=max_length, head_tokens=min(saved.head_tokens, max_length))


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
