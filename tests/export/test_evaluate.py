"""Scoring bundles and PyTorch checkpoints on labelled files (export/evaluate.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_training import load_model, logits_of, write_csv

from edgesent.classifier import Classifier
from edgesent.errors import InputError
from edgesent_export.data import ColumnSpec, parse_star_rule
from edgesent_export.evaluate import evaluate_model, format_report
from edgesent_export.sources import Source

# Words the tiny test bundle's graph (tests/conftest.py) weighs as positive or negative.
BUNDLE_ROWS = [
    {"text": "great product, I love it", "label": "pos", "shop": "a"},
    {"text": "excellent and perfect, happy", "label": "pos", "shop": "a"},
    {"text": "would recommend, amazing", "label": "pos", "shop": "b"},
    {"text": "awful, it broke after a week", "label": "neg", "shop": "a"},
    {"text": "terrible waste, I want a refund", "label": "neg", "shop": "b"},
    {"text": "poor quality and disappointed", "label": "pos", "shop": "b"},  # mislabelled
    {"text": "", "label": "neg", "shop": "b"},
]


@pytest.fixture
def bundle_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "labelled.csv", BUNDLE_ROWS, ["text", "label", "shop"])


def test_evaluate_a_bundle(tiny_bundle: Path, bundle_csv: Path) -> None:
    report = evaluate_model(tiny_bundle, Source(str(bundle_csv), ColumnSpec(domain="shop")),
                            threads=1)
    texts = [row["text"] for row in BUNDLE_ROWS[:6]]
    predicted = [p.label for p in Classifier.load(tiny_bundle, threads=1).predict(texts)]
    truth = ["positive"] * 3 + ["negative"] * 2 + ["positive"]
    assert report["n"] == 6
    assert report["accuracy"] == pytest.approx(np.mean([p == t for p, t in zip(
        predicted, truth, strict=True)]))
    assert report["labels"] == ["negative", "positive"]
    assert sum(map(sum, report["confusion_matrix"])) == 6
    assert report["per_class"]["positive"]["support"] == 4
    assert set(report["per_domain"]) == {"a", "b"}
    assert report["per_domain"]["a"]["n"] == 3
    assert report["rows_dropped"] == {"empty text": 1}
    assert report["model"] == str(tiny_bundle) and report["file"] == str(bundle_csv)

    text = format_report(report)
    assert f"accuracy: {report['accuracy']:.4f}" in text
    assert "confusion matrix (rows: true, columns: predicted)" in text
    assert "rows dropped: empty text: 1" in text
    lines = text.splitlines()
    positive = report["per_class"]["positive"]
    assert (f"positive     {positive['precision']:>9.4f} {positive['recall']:>9.4f} "
            f"{positive['f1']:>9.4f}        4") in lines
    shop_a = report["per_domain"]["a"]["accuracy"]
    assert f"a            {shop_a:>9.4f}      3" in lines
    matrix = report["confusion_matrix"]
    assert f"negative     {matrix[0][0]:>12} {matrix[0][1]:>12}" in lines


def test_evaluate_a_checkpoint_matches_its_own_logits(
    tiny_distilbert_dir: Path, tmp_path: Path
) -> None:
    rows = [{"body": r["text"] or "blank", "stars": s}
            for r, s in zip(BUNDLE_ROWS, [5, 4, 5, 1, 2, 3, 1], strict=True)]
    path = write_csv(tmp_path / "stars.csv", rows, ["body", "stars"])
    spec = ColumnSpec(text="body", label="stars", stars=parse_star_rule("1-2:neg,3:neu,4-5:pos"),
                      drop_labels=("neutral",))
    report = evaluate_model(tiny_distilbert_dir, Source(str(path), spec), threads=1,
                            max_length=48)
    kept = [r for r in rows if r["stars"] != 3]
    logits = logits_of(load_model(tiny_distilbert_dir), tiny_distilbert_dir,
                       [r["body"] for r in kept])
    predicted = logits.argmax(dim=1).numpy()
    truth = np.array([1 if r["stars"] >= 4 else 0 for r in kept])
    assert report["n"] == 6
    assert report["accuracy"] == pytest.approx(float(np.mean(predicted == truth)))
    assert report["rows_dropped"] == {"label neutral dropped": 1}
    assert "per_domain" not in report
    assert report["encoding"] == {"max_length": 48, "truncation": "head_tail", "head_tokens": 12}


def test_a_checkpoint_is_read_with_the_encoding_training_saved(tmp_path: Path) -> None:
    from edgesent.tokenization import EncodingSettings
    from edgesent_export.evaluate import checkpoint_encoding
    from edgesent_export.training_run import ENCODING_FILE

    saved = EncodingSettings(max_length=40, truncation="tail", head_tokens=0)
    (tmp_path / ENCODING_FILE).write_text(
        '{"max_length": 40, "truncation": "tail", "head_tokens": 0}', "utf-8")
    assert checkpoint_encoding(tmp_path) == saved
    assert checkpoint_encoding(tmp_path, 32) == EncodingSettings(32, "tail", 0)
    assert checkpoint_encoding(tmp_path / "elsewhere") == EncodingSettings(256, "head_tail", 64)


def test_labels_the_model_does_not_know(tiny_bundle: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "three.csv", [{"text": "fine", "label": "neu"},
                                              {"text": "great", "label": "pos"}],
                     ["text", "label"])
    with pytest.raises(InputError, match=r"labels \['neutral'\] are not among the model's"):
        evaluate_model(tiny_bundle, Source(str(path), ColumnSpec()))


def test_neither_bundle_nor_checkpoint(tmp_path: Path, bundle_csv: Path) -> None:
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="neither a bundle"):
        evaluate_model(tmp_path / "empty_dir", Source(str(bundle_csv), ColumnSpec()))


def test_a_file_without_usable_rows(tiny_bundle: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "blank.csv", [{"text": " ", "label": "pos"}], ["text", "label"])
    with pytest.raises(InputError, match="no labelled reviews"):
        evaluate_model(tiny_bundle, Source(str(path), ColumnSpec()))
