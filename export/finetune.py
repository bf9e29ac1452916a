"""Fine-tune an encoder (DistilBERT by default) as the review-sentiment teacher.

>>> data = format_dataset([read_reviews("train.csv", ColumnSpec())], {})  # doctest: +SKIP
>>> result = finetune(DEFAULT_BASE_MODEL, data, "runs/teacher")  # doctest: +SKIP
>>> result.test_metrics["test"]["accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from edgesent.tokenization import EncodingSettings

from . import DEFAULT_BASE_MODEL
from .data import FormattedData, class_weights, length_stats
from .distributed import is_main_process
from .training import TrainConfig, cross_entropy_loss
from .training_run import (
    TrainingResult,
    encode_reviews,
    load_classifier,
    start_run,
    train_and_report,
)

logger = logging.getLogger(__name__)


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
) -> TrainingResult:
    """Fine-tune ``model`` (hub id or local directory, :data:`DEFAULT_BASE_MODEL` by
    default in the CLI) on ``data``; keep the best weights.

    ``weighting="auto"`` weights the loss by inverse class frequency.
    """
    config = config or TrainConfig()
    out, started, tokenizer, encoder = start_run(model, out_dir, encoding)
    train_set = encode_reviews(encoder, data.train, data.labels)
    val_set = encode_reviews(encoder, data.val, data.labels)
    summary = dict(data.summary)
    summary["token_lengths"] = {
        "train": length_stats([len(s) for s in train_set.ids]),
        "val": length_stats([len(s) for s in val_set.ids]),
    }
    summary["encoding"] = asdict(encoder.settings)
    if is_main_process():
        (out / "data_summary.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    weights = class_weights(data.train, data.labels) if weighting == "auto" else None
    if weights:
        logger.info("class weights: %s", dict(zip(data.labels, weights, strict=True)))
    import torch

    torch.manual_seed(config.seed)  # a new classification head starts the same for a seed
    return train_and_report(
        load_classifier(model, data.labels), tokenizer, encoder, data, out, config,
        train_set=train_set, val_set=val_set, loss_fn=cross_entropy_loss(weights),
        started=started, resume=resume, progress=progress,
        record={"base_model": str(model)},
    )


__all__ = ["DEFAULT_BASE_MODEL", "finetune"]
