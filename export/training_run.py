"""One training run of the build half, shared by fine-tuning and distillation.

:func:`train_and_report` takes a model, its encoded training and validation sets and a
loss, trains it with :class:`~edgesent_export.training.Trainer` (checkpoints, resume,
early stopping), writes ``history.json`` and ``curves.png``, and, once the run has
finished, scores the best weights on validation and every test set and writes
``result.json`` and one predictions file per test set. An unfinished run (stopped as
asked, or killed) returns a :class:`TrainingResult` without metrics.

Under a distributed launch (see :mod:`edgesent_export.distributed`) every process trains
and rank 0 alone writes the history, the curves, the scores and ``result.json``; the
others wait for it and return the same result.

The best weights are saved with their tokenizer and the encoding they were trained
with (:data:`ENCODING_FILE`), so a checkpoint is scored as it was trained.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgesent.metrics import accuracy_by_group, softmax
from edgesent.tokenization import EncodingSettings, TextEncoder

from .data import FormattedData, Review
from .distributed import context
from .torch_data import (
    IGNORE_LABEL,
    EncodedSet,
    evaluate_logits,
    hardware,
    predict_logits,
)
from .training import LossFn, Monitor, TrainConfig, Trainer

RESULT_FILE = "result.json"
ENCODING_FILE = "edgesent_encoding.json"


@dataclass
class TrainingResult:
    """Where the trained model lies and how it scored (no metrics: not finished)."""

    out_dir: Path
    model_dir: Path
    val_metrics: dict[str, Any]
    test_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    stopped_early: bool = False

    @property
    def finished(self) -> bool:
        return bool(self.val_metrics)


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


def best_saver(tokenizer: Any, encoding: EncodingSettings | None = None) -> Any:
    """A callback that saves model, tokenizer (and the encoding) into a directory,
    replacing it whole."""

    def save(model: Any, directory: Path) -> None:
        tmp = directory.with_name(directory.name + ".tmp")
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if encoding is not None:
            (tmp / ENCODING_FILE).write_text(json.dumps(asdict(encoding)) + "\n", "utf-8")
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)

    return save


def saved_encoding(model_dir: str | Path) -> EncodingSettings | None:
    """The encoding a checkpoint was trained with, when training saved it."""
    path = Path(model_dir) / ENCODING_FILE
    if not path.is_file():
        return None
    return EncodingSettings(**json.loads(path.read_text("utf-8")))


class RunStart(NamedTuple):
    """A run's folder, start time, tokenizer and the run-half encoder over it."""

    out: Path
    started: float
    tokenizer: Any
    encoder: TextEncoder


def start_run(model: str | Path, out_dir: str | Path,
              encoding: EncodingSettings | None = None) -> RunStart:
    """Make the run's folder and read ``model``'s tokenizer with ``encoding``."""
    out = Path(out_dir)
    if context().is_main:
        out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tokenizer = load_tokenizer(model)
    encoder = make_encoder(tokenizer, encoding or EncodingSettings())
    return RunStart(out, started, tokenizer, encoder)


def train_and_report(
    model: Any,
    tokenizer: Any,
    encoder: TextEncoder,
    data: FormattedData,
    out: Path,
    config: TrainConfig,
    *,
    train_set: EncodedSet,
    val_set: EncodedSet,
    loss_fn: LossFn,
    started: float,
    resume: bool = False,
    progress: bool = True,
    record: Mapping[str, Any] | None = None,
    monitor: Monitor | None = None,
) -> TrainingResult:
    """Train ``model``, then score its best weights; ``record`` joins ``result.json``;
    ``monitor`` (see :class:`~edgesent_export.training.Trainer`) replaces validation loss
    for early stopping and the best weights."""
    trainer = Trainer(model, train_set, val_set, config, out, loss_fn=loss_fn,
                      pad_id=encoder.pad_id, label_names=data.labels,
                      save_best=best_saver(tokenizer, encoder.settings), progress=progress,
                      monitor=monitor)
    state = trainer.train(resume=resume)
    dist = context()
    if dist.is_main:
        (out / "history.json").write_text(json.dumps(state.history, indent=2) + "\n", "utf-8")
        if state.history:
            save_history_plot(state.history, out / "curves.png")
    if not state.finished:
        return TrainingResult(out, trainer.best_dir, {}, wall_seconds=_elapsed(started))
    if not dist.is_main:  # rank 0 scores the best weights; the others read what it wrote
        dist.barrier()
        summary = json.loads((out / RESULT_FILE).read_text("utf-8"))
        return TrainingResult(out, trainer.best_dir, summary["val"], summary["test"],
                              summary["wall_seconds"], summary["stopped_early"])

    best = load_classifier(trainer.best_dir, data.labels).to(trainer.device)
    dtype = trainer.autocast_dtype  # scored in the precision it trained in
    val_logits = predict_logits(best, val_set, encoder.pad_id, config.eval_batch_size,
                                autocast_dtype=dtype)
    val_metrics = evaluate_logits(val_logits, val_set.labels, data.labels)
    test_metrics = {}
    for name, reviews in data.test.items():
        test_set = encode_reviews(encoder, reviews, data.labels)
        logits = predict_logits(best, test_set, encoder.pad_id, config.eval_batch_size,
                                progress, autocast_dtype=dtype)
        test_metrics[name] = evaluate_logits(logits, test_set.labels, data.labels)
        test_metrics[name]["per_domain"] = per_domain_accuracy(reviews, logits, data.labels)
        write_predictions(out / f"predictions_{name}.csv", reviews, logits, data.labels)
    result = TrainingResult(out, trainer.best_dir, val_metrics, test_metrics,
                            _elapsed(started), state.stopped_early)
    summary = {
        "model_dir": str(trainer.best_dir),
        "val": val_metrics,
        "test": test_metrics,
        "wall_seconds": result.wall_seconds,
        "train_seconds": round(state.train_seconds, 1),
        "stopped_early": result.stopped_early,
        "best_step": state.best_step,
        "steps": state.global_step,
        "config": vars(config),
        "encoding": asdict(encoder.settings),
        "scored_in": str(dtype or "torch.float32").removeprefix("torch."),
        "hardware": hardware(trainer.device),
        "architecture": architecture(best),
        **(record or {}),
    }
    (out / RESULT_FILE).write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    dist.barrier()
    return result


def architecture(model: Any) -> dict[str, Any]:
    """What ``edgesent card`` shows of a trained model: its type, depth, width, vocabulary
    and parameter count."""
    config = model.config
    keys = ("model_type", "num_hidden_layers", "hidden_size", "vocab_size")
    return {**{k: getattr(config, k, None) for k in keys},
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def per_domain_accuracy(
    reviews: Sequence[Review], logits: np.ndarray, labels: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Accuracy per review domain (where the data names one), for labelled reviews.

    >>> reviews = [Review("a", "pos", domain="books"), Review("b", "neg", domain="books")]
    >>> per_domain_accuracy(reviews, np.array([[0.0, 1.0], [0.0, 1.0]]), ["neg", "pos"])
    {'books': {'accuracy': 0.5, 'n': 2}}
    """
    index = {label: i for i, label in enumerate(labels)}
    kept = [r for r in reviews if r.label is not None]
    predicted = [int(g) for r, g in zip(reviews, logits.argmax(axis=1), strict=True)
                 if r.label is not None]
    return accuracy_by_group([r.domain for r in kept], [index[str(r.label)] for r in kept],
                             predicted)


def write_predictions(
    path: Path, reviews: Sequence[Review], logits: np.ndarray, labels: Sequence[str]
) -> None:
    """Text, true label, predicted label and class probabilities, one row per review."""
    probs = softmax(logits)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "predicted", *[f"p_{label}" for label in labels]])
        for review, row in zip(reviews, probs, strict=True):
            writer.writerow(
                [review.text, review.label, labels[int(row.argmax())], *[f"{p:.5f}" for p in row]]
            )


def save_history_plot(history: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Training curves (train and validation loss, validation accuracy) and what training
    cost (samples per second; process and GPU memory) as a PNG, three panels side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (ax_loss, ax_acc, ax_cost) = plt.subplots(1, 3, figsize=(15, 4))
    ax_loss.plot(steps, [h["val_loss"] for h in history], marker="o", label="validation")
    ax_loss.plot(
        steps, [h["train_loss"] for h in history], marker="o", label="train (running)"
    )
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_acc.plot(steps, [h["val_accuracy"] for h in history], marker="o", label="accuracy")
    ax_acc.plot(steps, [h["val_macro_f1"] for h in history], marker="o", label="macro-F1")
    ax_acc.set_xlabel("step")
    ax_acc.legend()
    _plot_cost(ax_cost, history)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_cost(ax: Any, history: Sequence[dict[str, Any]]) -> None:
    """Samples per second (left axis) and memory in MB (right axis) at each record; OOM
    back-offs as vertical lines."""
    def series(key: str) -> tuple[list[int], list[float]]:
        pairs = [(h["step"], h[key]) for h in history if h.get(key) is not None]
        return [s for s, _ in pairs], [v for _, v in pairs]

    ax.plot(*series("samples_per_s"), marker="o", color="tab:green", label="samples/s")
    ax.set_xlabel("step")
    ax.set_ylabel("samples / s")
    memory = ax.twinx()
    for key, label, colour in (("rss_mb", "process RSS", "tab:purple"),
                               ("cuda_allocated_mb", "GPU allocated", "tab:orange"),
                               ("cuda_peak_mb", "GPU peak", "tab:red")):
        steps, values = series(key)
        if values:
            memory.plot(steps, values, marker=".", linestyle="--", color=colour, label=label)
    memory.set_ylabel("MB")
    for h in history:
        for backoff in h.get("oom_backoffs") or ():
            ax.axvline(backoff["step"], color="grey", linestyle=":")
            ax.annotate(f"OOM: batch {backoff['micro_batch']}", (backoff["step"], 0),
                        xycoords=("data", "axes fraction"), rotation=90, fontsize=7)
    lines = ax.get_legend_handles_labels()
    more = memory.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8)
    ax.set_title("cost")


def _elapsed(started: float) -> float:
    return round(time.perf_counter() - started, 1)
