"""Plain helpers for the training, fine-tuning, distillation and CLI tests.

Fixtures (tokenizer, tiny models, synthetic reviews) live in ``conftest.py``; this module
only turns their outputs into what the build half consumes: ``Review`` lists, formatted
splits, CSV files and small, fast training settings.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from edgesent.tokenization import EncodingSettings
from edgesent_export.data import FormattedData, Review, format_dataset

# Short enough to be fast, long enough to hold every synthetic review whole.
TINY_ENCODING = EncodingSettings(max_length=48, truncation="head_tail", head_tokens=16)


def to_reviews(review_set: Any, domain: str | None = None) -> list[Review]:
    """``Review`` objects from a conftest ``ReviewSet``."""
    return [
        Review(text=row["text"], label=row["label"], source="synthetic", domain=domain)
        for row in review_set.rows()
    ]


def formatted(
    train: Any, test: Any | None = None, *, val_fraction: float = 0.2, seed: int = 0
) -> FormattedData:
    """Train/validation (and optional ``test``) splits of synthetic reviews."""
    tests = {"test": to_reviews(test)} if test is not None else {}
    return format_dataset(
        [to_reviews(train)], tests, val_fraction=val_fraction, seed=seed,
        labels=["negative", "positive"],
    )


def tiny_config(**overrides: Any) -> Any:
    """A ``TrainConfig`` for tiny models: fp32, one thread, no progress-bar noise."""
    from edgesent_export.training import TrainConfig

    settings: dict[str, Any] = {
        "epochs": 3.0,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.0,
        "weight_decay": 0.0,
        "save_every": 1000,
        "patience": 10,
        "seed": 0,
        "precision": "fp32",
        "threads": 1,
        "eval_batch_size": 64,
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def write_csv(path: Path, rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> Path:
    """Write ``rows`` as a CSV file with a header and return its path."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    return path


def load_model(model_dir: Path, **config_overrides: Any) -> Any:
    """A sequence-classification model from ``model_dir`` (config values overridable)."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(model_dir, **config_overrides)


def logits_of(model: Any, tokenizer_dir: Path, texts: Sequence[str]) -> Any:
    """Eval-mode logits of ``model`` for ``texts`` (a torch tensor)."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def one_line_error(result: Any, *needles: str) -> str:
    """A user mistake through the CLI: non-zero exit, one ``Error:`` line naming every
    needle, no traceback."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]
