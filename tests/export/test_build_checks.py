"""``edgesent build`` refuses an unusable input before any stage starts (export/build_checks.py).

These run without the [export] extra: the checks read no data and load no model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers_training import one_line_error, write_csv

from edgesent.cli import main

ROWS = [{"text": "great kettle, works well", "label": "positive"},
        {"text": "awful, broke in a day", "label": "negative"}]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    write_csv(tmp_path / "train.csv", ROWS, ["text", "label"])
    write_csv(tmp_path / "test.csv", ROWS, ["text", "label"])
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(
        {"model_type": "bert", "num_hidden_layers": 4, "max_position_embeddings": 128}))
    return tmp_path


def _build(files: Path, *args: str, out: Path | None = None) -> Result:
    out = out or files / "out"
    return CliRunner().invoke(main, ["build", str(out), "--quiet", *args])


def _nothing_trained(files: Path) -> None:
    out = files / "out"
    assert not (out / "teacher").exists() and not (out / "data_summary.json").exists()


def test_build_without_a_test_set_fails_before_anything(files: Path) -> None:
    result = _build(files, "--train", str(files / "train.csv"))
    one_line_error(result, "needs a test set for the accuracy gate", "--test FILE")
    assert not (files / "out").exists()


def test_sources_file_without_a_test_set(files: Path) -> None:
    sources = files / "sources.json"
    sources.write_text(json.dumps({"train": [{"path": "train.csv"}]}))
    one_line_error(_build(files, "--sources", str(sources)), "needs a test set")
    _nothing_trained(files)


@pytest.mark.parametrize(("which", "needle"), [
    ("--train", "no such file (training data)"),
    ("--test", "no such file (test set 'missing')"),
    ("--unlabelled", "no such file (unlabelled data)"),
])
def test_a_missing_data_file(files: Path, which: str, needle: str) -> None:
    given = {"--train": str(files / "train.csv"), "--test": str(files / "test.csv")}
    given[which] = str(files / "missing.csv")
    args = [a for pair in given.items() for a in pair]
    one_line_error(_build(files, *args), str(files / "missing.csv"), needle)
    _nothing_trained(files)


def _with_data(files: Path) -> list[str]:
    return ["--train", str(files / "train.csv"), "--test", str(files / "test.csv")]


def test_a_bad_star_rule_or_licence(files: Path) -> None:
    one_line_error(_build(files, *_with_data(files), "--stars", "1-2=neg"), "star rule '1-2=neg'")
    result = _build(files, *_with_data(files), "--licence", "CC-BY-4.0")
    assert result.exit_code == 2 and "expected FILE=LICENCE" in result.output
    _nothing_trained(files)


def test_a_model_that_is_not_there_or_not_a_model(files: Path) -> None:
    one_line_error(_build(files, *_with_data(files), "--model", str(files / "nowhere")),
             "--model", "no such model directory")
    one_line_error(_build(files, *_with_data(files), "--model", str(files)),
             "not a model directory (no config.json)")
    _nothing_trained(files)


def test_a_student_deeper_or_longer_than_the_model(files: Path) -> None:
    model = str(files / "model")
    one_line_error(_build(files, *_with_data(files), "--model", model, "--student-layers", "6"),
             "--student-layers 6", "1..4 layers")
    one_line_error(_build(files, *_with_data(files), "--model", model, "--max-length", "256"),
             "--max-length 256", "128 positions")
    one_line_error(_build(files, *_with_data(files), "--model", model, "--max-length", "64",
                          "--bundle-max-length", "128", "--bundle-max-length", "512"),
             "--bundle-max-length 512", "128 positions")
    one_line_error(_build(files, *_with_data(files), "--model", model, "--max-length", "64",
                          "--head-tokens", "32", "--bundle-max-length", "16"),
             "--bundle-max-length 16", "32 --head-tokens")
    _nothing_trained(files)


def test_an_out_dir_that_cannot_be_written(files: Path) -> None:
    blocker = files / "a_file"
    blocker.write_text("not a directory")
    one_line_error(_build(files, *_with_data(files), out=blocker / "out"), "cannot write the build")
    assert blocker.read_text() == "not a directory"
    if os.geteuid() != 0:  # root writes anywhere
        locked = files / "locked"
        locked.mkdir(mode=0o500)
        one_line_error(_build(files, *_with_data(files), out=locked / "out"), "cannot write")


def test_numbers_out_of_range_are_usage_errors(files: Path) -> None:
    for option, value in [("--alpha", "1.5"), ("--temperature", "0"), ("--batch-size", "0"),
                          ("--val-fraction", "1"), ("--student-layers", "0")]:
        result = _build(files, *_with_data(files), option, value)
        assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output
