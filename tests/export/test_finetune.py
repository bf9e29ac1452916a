"""Fine-tuning a teacher end to end (export/finetune.py) on a tiny DistilBERT."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from extras import EXPORT_REASON
from helpers_training import (
    TINY_ENCODING,
    formatted,
    load_model,
    logits_of,
    tiny_config,
    to_reviews,
)

pytest.importorskip("torch", reason=EXPORT_REASON)
pytest.importorskip("transformers", reason=EXPORT_REASON)

from edgesent_export import finetune as finetune_module
from edgesent_export.data import Review, format_dataset
from edgesent_export.finetune import finetune
from edgesent_export.training_run import RESULT_FILE, per_domain_accuracy, write_predictions

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt")


@pytest.fixture(scope="module")
def headless_dir(tiny_distilbert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny DistilBERT encoder without a classification head, like a hub base model."""
    from transformers import DistilBertModel

    out = tmp_path_factory.mktemp("headless")
    DistilBertModel.from_pretrained(tiny_distilbert_dir).save_pretrained(out)
    for name in TOKENIZER_FILES:
        (out / name).write_bytes((tiny_distilbert_dir / name).read_bytes())
    return out


def test_finetune_learns_and_writes_every_output(
    tiny_distilbert_dir: Path, review_factory: Any, tmp_path: Path
) -> None:
    test_set = review_factory(60, seed=4)
    test_reviews = [
        Review(r.text, r.label, "synthetic", "books" if i % 3 else "dvd")
        for i, r in enumerate(to_reviews(test_set))
    ]
    data = format_dataset([to_reviews(review_factory(240, seed=3))], {"test": test_reviews},
                          val_fraction=0.2, seed=0, labels=["negative", "positive"])
    out = tmp_path / "teacher"
    config = tiny_config(epochs=6, batch_size=8, learning_rate=5e-3)
    result = finetune(tiny_distilbert_dir, data, out, config=config, encoding=TINY_ENCODING,
                      progress=False)

    assert result.val_metrics["accuracy"] > 0.85
    test_metrics = result.test_metrics["test"]
    assert test_metrics["accuracy"] > 0.85
    assert test_metrics["n"] == len(data.test["test"])
    assert set(test_metrics["per_domain"]) == {"books", "dvd"}
    assert sum(d["n"] for d in test_metrics["per_domain"].values()) == test_metrics["n"]
    assert result.model_dir == out / "best" and not result.stopped_early

    for name in ("config.json", "model.safetensors", *TOKENIZER_FILES[:3]):
        assert (out / "best" / name).exists(), name

    steps_per_epoch = -(-len(data.train) // 8)
    history = json.loads((out / "history.json").read_text("utf-8"))
    assert [h["step"] for h in history] == [steps_per_epoch * k for k in range(1, 7)]
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr"} <= set(history[0])

    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000

    record = json.loads((out / RESULT_FILE).read_text("utf-8"))
    assert record["val"]["accuracy"] == result.val_metrics["accuracy"]
    assert record["test"]["test"]["accuracy"] == test_metrics["accuracy"]
    assert record["steps"] == 6 * steps_per_epoch and record["stopped_early"] is False
    assert record["best_step"] in [h["step"] for h in history]
    assert record["config"]["batch_size"] == 8 and record["base_model"] == str(tiny_distilbert_dir)
    assert record["scored_in"] == "float32"  # the tiny config trains in fp32
    assert 0 < record["train_seconds"] < record["wall_seconds"]
    assert record["hardware"]["device"] == "cpu" and record["hardware"]["threads"] == 1
    assert record["hardware"]["name"]

    summary = json.loads((out / "data_summary.json").read_text("utf-8"))
    assert summary["encoding"] == {"max_length": 48, "truncation": "head_tail", "head_tokens": 16}
    assert summary["token_lengths"]["train"]["max"] <= 48

    with open(out / "predictions_test.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["text", "label", "predicted", "p_negative", "p_positive"]
    assert [r["text"] for r in rows] == [r.text for r in data.test["test"]]
    probs = np.array([[float(r["p_negative"]), float(r["p_positive"])] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    predicted = [["negative", "positive"][i] for i in probs.argmax(axis=1)]
    assert predicted == [r["predicted"] for r in rows]
    hits = np.mean([r["label"] == r["predicted"] for r in rows])
    assert hits == pytest.approx(test_metrics["accuracy"])


def test_killed_run_resumes_to_the_result_of_an_uninterrupted_run(
    headless_dir: Path, review_factory: Any, tmp_path: Path
) -> None:
    data = formatted(review_factory(120, seed=6), review_factory(20, seed=7))
    config = tiny_config(epochs=2, batch_size=16, eval_every=3)
    kwargs = {"encoding": TINY_ENCODING, "progress": False}

    whole = finetune(headless_dir, data, tmp_path / "whole", config=config, **kwargs)

    killed = tiny_config(**{**vars(config), "stop_after_steps": 5})
    partial = finetune(headless_dir, data, tmp_path / "run", config=killed, **kwargs)
    assert partial.val_metrics == {}
    assert not (tmp_path / "run" / RESULT_FILE).exists()
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())
    assert state["train_seconds"] > 0

    resumed = finetune(headless_dir, data, tmp_path / "run", config=config, resume=True,
                       **kwargs)
    assert resumed.val_metrics["loss"] == pytest.approx(whole.val_metrics["loss"], abs=1e-6)
    assert resumed.test_metrics["test"]["accuracy"] == whole.test_metrics["test"]["accuracy"]
    ours = json.loads((tmp_path / "run" / RESULT_FILE).read_text("utf-8"))
    theirs = json.loads((tmp_path / "whole" / RESULT_FILE).read_text("utf-8"))
    assert (ours["best_step"], ours["steps"]) == (theirs["best_step"], theirs["steps"])
    assert ours["train_seconds"] > state["train_seconds"]  # the killed run's steps count
    texts = [r.text for r in data.val]
    np.testing.assert_allclose(
        logits_of(load_model(resumed.model_dir), headless_dir, texts).numpy(),
        logits_of(load_model(whole.model_dir), headless_dir, texts).numpy(),
        atol=1e-5, rtol=0,
    )


def test_class_weights_auto_weights_the_loss(
    tiny_distilbert_dir: Path, review_factory: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    reviews = to_reviews(review_factory(120, seed=8))
    positives = [r for r in reviews if r.label == "positive"]
    negatives = [r for r in reviews if r.label == "negative"][:20]
    data = format_dataset([positives + negatives], {}, val_fraction=0.2, seed=0)
    seen: list[Any] = []
    real = finetune_module.cross_entropy_loss

    def spy(class_weights: Any = None) -> Any:
        seen.append(class_weights)
        return real(class_weights)

    monkeypatch.setattr(finetune_module, "cross_entropy_loss", spy)
    with caplog.at_level(logging.INFO, logger="edgesent_export.finetune"):
        result = finetune(tiny_distilbert_dir, data, tmp_path, config=tiny_config(epochs=1),
                          encoding=TINY_ENCODING, weighting="auto", progress=False)
    counts = data.summary["class_balance"]["train"]
    total = counts["negative"] + counts["positive"]
    expected = [total / (2 * counts["negative"]), total / (2 * counts["positive"])]
    assert seen == [pytest.approx(expected)]
    assert expected[0] > 1.5 > 1 > expected[1]
    assert "class weights" in caplog.text
    assert np.isfinite(result.val_metrics["loss"])
    assert (tmp_path / RESULT_FILE).exists()


def test_per_domain_accuracy_and_predictions_file(tmp_path: Path) -> None:
    reviews = [Review("a", "positive", domain="x"), Review("b", "negative", domain="x"),
               Review("c", "positive", domain="y"), Review("d", None, domain="y"),
               Review("e", "negative")]
    logits = np.array([[0, 1], [0, 1], [0, 1], [1, 0], [1, 0]], dtype=np.float32)
    labels = ["negative", "positive"]
    assert per_domain_accuracy(reviews, logits, labels) == {
        "x": {"accuracy": 0.5, "n": 2}, "y": {"accuracy": 1.0, "n": 1},
    }
    write_predictions(tmp_path / "p.csv", reviews, logits, labels)
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["text", "label", "predicted", "p_negative", "p_positive"]
    assert rows[4][:3] == ["d", "", "negative"]
    assert rows[1][3:] == ["0.26894", "0.73106"]
