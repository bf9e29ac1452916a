"""Fine-tune an encoder (DistilBERT by default) as the review-sentiment teacher.

>>> data = format_dataset([read_reviews("train.csv", ColumnSpec())], {})  # doctest: +SKIP
>>> result = finetune("distilbert-base-uncased", data, "runs/teacher")  # doctest: +SKIP
>>> result.test_metrics["test"]["accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesent.tokenization import EncodingSettings, TextEncoder

from .data import FormattedData, Review, class_weights, length_stats
from .training import (
    IGNORE_LABEL,
    EncodedSet,
    TrainConfig,
    Trainer,
    cross_entropy_loss,
    evaluate_logits,
    predict_logits,
    save_history_plot,
)

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "distilbert-base-uncased"
RESULT_FILE = "result.json"


@dataclass
class FinetuneResult:
    """Where the fine-tuned model lies and how it scored."""

    out_dir: Path
    model_dir: Path
    val_metrics: dict[str, Any]
    test_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    stopped_early: bool = False


def load_tokenizer(model: str | Path) -> Any:
    """The transformers fast tokenizer of a hub id or a local directory."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model), use_fast=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{model}: edgesent needs a fast (tokenizers) tokenizer")
    return tokenizer


def make_encoder(tokenizer: Any, encoding: EncodingSettings) -> TextEncoder:
    """A run-half :class:`TextEncoder` over a copy of the fast tokenizer's backend."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    return TextEncoder(backend, encoding)


def encode_reviews(
    encoder: TextEncoder, reviews: Sequence[Review], labels: Sequence[str]
) -> EncodedSet:
    """Token ids and label indices (``-100`` for unlabelled reviews)."""
    index = {label: i for i, label in enumerate(labels)}
    ids = encoder.token_ids([r.text for r in reviews])
    y = np.array(
        [index[r.label] if r.label is not None else IGNORE_LABEL for r in reviews],
        dtype=np.int64,
    )
    return EncodedSet(ids=ids, labels=y)


def load_classifier(model: str | Path, labels: Sequence[str]) -> Any:
    """A sequence-classification model with a head sized for ``labels``."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        str(model),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        ignore_mismatched_sizes=True,
    )


def best_saver(tokenizer: Any) -> Any:
    """A callback that saves model and tokenizer into a directory, replacing it whole."""

    def save(model: Any, directory: Path) -> None:
        tmp = directory.with_name(directory.name + ".tmp")
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if directory.exists():
            import shutil

            shutil.rmtree(directory)
        tmp.rename(directory)

    return save


def finetune(
    model: str | Path,
    data: FormattedData,
    out_dir: str | Path,
    *,
    config: TrainConfig | None = None,
    encoding: EncodingSettings | None = None,
    weighting: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune ``model`` (hub id or local directory) on ``data``; keep the best weights.

    ``weighting="auto"`` weights the loss by inverse class frequency.
    """
    config = config or TrainConfig()
    encoding = encoding or EncodingSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tokenizer = load_tokenizer(model)
    encoder = make_encoder(tokenizer, encoding)
    train_set = encode_reviews(encoder, data.train, data.labels)
    val_set = encode_reviews(encoder, data.val, data.labels)
    summary = dict(data.summary)
    summary["token_lengths"] = {
        "train": length_stats([len(s) for s in train_set.ids]),
        "val": length_stats([len(s) for s in val_set.ids]),
    }
    summary["encoding"] = vars(encoding)
    (out / "data_summary.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    weights = class_weights(data.train, data.labels) if weighting == "auto" else None
    if weights:
        logger.info("class weights: %s", dict(zip(data.labels, weights, strict=True)))
    import torch

    torch.manual_seed(config.seed)  # a new classification head starts the same for a seed
    classifier = load_classifier(model, data.labels)
    trainer = Trainer(
        classifier,
        train_set,
        val_set,
        config,
        out,
        loss_fn=cross_entropy_loss(weights),
        pad_id=encoder.pad_id,
        label_names=data.labels,
        save_best=best_saver(tokenizer),
        progress=progress,
    )
    state = trainer.train(resume=resume)
    (out / "history.json").write_text(json.dumps(state.history, indent=2) + "\n", "utf-8")
    if state.history:
        save_history_plot(state.history, out / "curves.png")
    if not state.finished:
        return FinetuneResult(out, trainer.best_dir, {}, wall_seconds=_elapsed(started))
    return report_run(
        trainer.best_dir, data, encoder, out, config,
        started=started, state=state, base_model=str(model), progress=progress,
    )


def report_run(
    model_dir: Path,
    data: FormattedData,
    encoder: TextEncoder,
    out: Path,
    config: TrainConfig,
    *,
    started: float,
    state: Any,
    base_model: str,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Score the best weights on validation and every test set; write predictions."""
    from .training import select_device_and_precision

    device, _ = select_device_and_precision("fp32")
    best = load_classifier(model_dir, data.labels).to(device)
    val_set = encode_reviews(encoder, data.val, data.labels)
    val_logits = predict_logits(best, val_set, encoder.pad_id, config.eval_batch_size)
    val_metrics = evaluate_logits(val_logits, val_set.labels, data.labels)
    test_metrics = {}
    for name, reviews in data.test.items():
        test_set = encode_reviews(encoder, reviews, data.labels)
        logits = predict_logits(best, test_set, encoder.pad_id, config.eval_batch_size, progress)
        test_metrics[name] = evaluate_logits(logits, test_set.labels, data.labels)
        test_metrics[name]["per_domain"] = per_domain_accuracy(reviews, logits, data.labels)
        write_predictions(out / f"predictions_{name}.csv", reviews, logits, data.labels)
    result = FinetuneResult(
        out, model_dir, val_metrics, test_metrics, _elapsed(started), state.stopped_early
    )
    record = {
        "model_dir": str(model_dir),
        "base_model": base_model,
        "val": val_metrics,
        "test": test_metrics,
        "wall_seconds": result.wall_seconds,
        "stopped_early": result.stopped_early,
        "best_step": state.best_step,
        "steps": state.global_step,
        "config": vars(config),
        **(extra or {}),
    }
    (out / RESULT_FILE).write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    return result


def per_domain_accuracy(
    reviews: Sequence[Review], logits: np.ndarray, labels: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Accuracy per review domain (where the data names one)."""
    index = {label: i for i, label in enumerate(labels)}
    predicted = logits.argmax(axis=1)
    groups: dict[str, list[bool]] = {}
    for review, guess in zip(reviews, predicted, strict=True):
        if review.domain is not None and review.label is not None:
            groups.setdefault(review.domain, []).append(index[review.label] == guess)
    return {
        domain: {"accuracy": float(np.mean(hits)), "n": len(hits)}
        for domain, hits in sorted(groups.items())
    }


def write_predictions(
    path: Path, reviews: Sequence[Review], logits: np.ndarray, labels: Sequence[str]
) -> None:
    """Text, true label, predicted label and class probabilities, one row per review."""
    from edgesent.metrics import softmax

    probs = softmax(logits)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "predicted", *[f"p_{label}" for label in labels]])
        for review, row in zip(reviews, probs, strict=True):
            writer.writerow(
                [review.text, review.label, labels[int(row.argmax())], *[f"{p:.5f}" for p in row]]
            )


def _elapsed(started: float) -> float:
    return round(time.perf_counter() - started, 1)
