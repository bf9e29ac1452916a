"""``edgesent train``, ``distill`` and ``evaluate`` through click (export/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from helpers_training import one_line_error, write_csv

from edgesent import Classifier
from edgesent.cli import main
from edgesent_export.cli import register_commands

STARS = "1-2:neg,3:neu,4-5:pos"
FAST = ["--max-length", "48", "--head-tokens", "16", "--precision", "fp32", "--threads", "1",
        "--quiet", "--seed", "0"]


def _star_rows(review_set: Any, with_neutral: bool = False) -> list[dict]:
    rows = [
        {"review": text, "rating": (4 + i % 2) if label else (1 + i % 2)}
        for i, (text, label) in enumerate(zip(review_set.texts, review_set.labels, strict=True))
    ]
    if with_neutral:
        rows.append({"review": "It arrived on tuesday in a blue box", "rating": 3})
    return rows


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, review_factory: Any) -> Path:
    root = tmp_path_factory.mktemp("cli_data")
    write_csv(root / "train.csv", _star_rows(review_factory(200, seed=31)), ["review", "rating"])
    write_csv(root / "test.csv", _star_rows(review_factory(40, seed=32), with_neutral=True),
              ["review", "rating"])
    write_csv(root / "more.csv", [{"review": t} for t in review_factory(40, seed=33).texts],
              ["review"])
    return root


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def teacher_run(files: Path, tiny_distilbert_dir: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Path, Result]:
    out = tmp_path_factory.mktemp("cli_runs") / "teacher"
    result = _invoke([
        "train", out, "--model", tiny_distilbert_dir, "--data", files,
        "--train", "train.csv", "--test", "heldout=test.csv",
        "--text-column", "review", "--label-column", "rating", "--stars", STARS,
        "--drop-label", "neu", "--batch-size", "8", "--epochs", "5", "--lr", "5e-3",
        "--val-fraction", "0.2", *FAST,
    ])
    return out, _ok(result)


def test_the_commands_are_registered() -> None:
    listed = set(main.list_commands(click.Context(main)))
    assert {"train", "distill", "evaluate", "export", "build"} <= listed
    group = click.Group("g")
    register_commands(group)
    assert {"train", "distill", "evaluate", "export", "build"} <= set(group.commands)
    from edgesent_export import cli

    assert all(isinstance(getattr(cli, name), click.Command)
               for name in ("train", "distill", "evaluate", "export", "build"))


def test_train_command(teacher_run: tuple[Path, Result]) -> None:
    out, result = teacher_run
    assert f"best model: {out / 'best'}" in result.output
    assert "validation: accuracy" in result.output
    assert "test heldout: accuracy" in result.output and "(40 reviews)" in result.output
    record = json.loads((out / "result.json").read_text("utf-8"))
    assert record["config"]["batch_size"] == 8 and record["config"]["precision"] == "fp32"
    assert record["test"]["heldout"]["n"] == 40  # the neutral row was dropped
    assert record["val"]["accuracy"] > 0.85
    assert (out / "predictions_heldout.csv").exists()


def test_evaluate_command_json(teacher_run: tuple[Path, Result], files: Path) -> None:
    out, _ = teacher_run
    result = _ok(_invoke([
        "evaluate", out / "best", files / "test.csv", "--text-column", "review",
        "--label-column", "rating", "--stars", STARS, "--drop-label", "neu",
        "--max-length", "48", "--threads", "1", "--json",
    ]))
    report = json.loads(result.stdout)
    record = json.loads((out / "result.json").read_text("utf-8"))
    assert report["n"] == 40 and report["labels"] == ["negative", "positive"]
    assert report["accuracy"] == pytest.approx(record["test"]["heldout"]["accuracy"])
    assert report["rows_dropped"] == {"label neutral dropped": 1}

    assert report["encoding"] == {"max_length": 48, "truncation": "head_tail", "head_tokens": 16}

    table = _ok(_invoke([  # no --max-length: the encoding saved with the checkpoint
        "evaluate", out / "best", "test.csv", "--data", files, "--text-column", "review",
        "--label-column", "rating", "--stars", STARS, "--drop-label", "neutral",
    ]))
    assert f"accuracy: {report['accuracy']:.4f}" in table.stdout


def test_evaluate_command_on_a_bundle(tiny_bundle: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "b.csv", [{"text": "great, love it", "label": "1"},
                                          {"text": "awful refund", "label": "0"}],
                     ["text", "label"])
    result = _ok(_invoke(["evaluate", tiny_bundle, path, "--label-map", "0:neg,1:pos",
                          "--json"]))
    report = json.loads(result.stdout)
    predicted = [p.label for p in Classifier.load(tiny_bundle, threads=1).predict(
        ["great, love it", "awful refund"])]
    truth = ["positive", "negative"]
    assert report["n"] == 2 and "encoding" not in report  # a bundle carries its own
    assert report["accuracy"] == sum(p == t for p, t in zip(predicted, truth, strict=True)) / 2
    assert sum(report["confusion_matrix"][report["labels"].index(t)][
        report["labels"].index(p)] for p, t in zip(predicted, truth, strict=True)) == 2


def test_distill_command(teacher_run: tuple[Path, Result], files: Path, tmp_path: Path) -> None:
    out, _ = teacher_run
    student = tmp_path / "student"
    result = _ok(_invoke([
        "distill", out / "best", student, "--data", files, "--train", "train.csv",
        "--test", "test.csv", "--unlabelled", files / "more.csv", "--layers", "1",
        "--text-column", "review", "--label-column", "rating", "--stars", STARS,
        "--drop-label", "neu", "--batch-size", "16", "--epochs", "1", *FAST,
    ]))
    assert "test test: accuracy" in result.output
    record = json.loads((student / "result.json").read_text("utf-8"))
    assert record["n_layers"] == 1
    assert record["distillation"]["unlabelled"] > 0


# ---------------------------------------------------------------------------- user mistakes


def test_train_with_a_missing_column(files: Path, tmp_path: Path) -> None:
    result = _invoke(["train", tmp_path / "o", "--train", files / "train.csv",
                      "--text-column", "reveiw", "--label-column", "rating", *FAST])
    one_line_error(result, "train.csv", "no text column 'reveiw'", "did you mean 'review'?")


def test_train_with_an_unknown_label(files: Path, tmp_path: Path) -> None:
    result = _invoke(["train", tmp_path / "o", "--train", files / "test.csv",
                      "--text-column", "review", "--label-column", "rating",
                      "--label-map", "1:negative,2:negative,4:positive,5:positive", *FAST])
    one_line_error(result, "test.csv: line 42", "column 'rating'", "unknown label '3'")


def test_train_with_an_unreadable_star_rule(files: Path, tmp_path: Path) -> None:
    result = _invoke(["train", tmp_path / "o", "--train", files / "train.csv",
                      "--label-column", "rating", "--stars", "1-2=neg", *FAST])
    one_line_error(result, "star rule '1-2=neg'")


def test_train_with_settings_the_machine_or_model_refuse(
    files: Path, tmp_path: Path, tiny_distilbert_dir: Path
) -> None:
    import torch

    common = ["--train", files / "train.csv", "--text-column", "review", "--label-column",
              "rating", "--stars", STARS, "--drop-label", "neu", "--quiet"]
    if not torch.cuda.is_available():
        result = _invoke(["train", tmp_path / "a", "--model", tiny_distilbert_dir, *common,
                          "--precision", "fp16"])
        one_line_error(result, "fp16 training needs a CUDA GPU")
    result = _invoke(["train", tmp_path / "b", "--model", tiny_distilbert_dir, *common,
                      "--max-length", "48"])  # head tokens 64 > 48
    one_line_error(result, "head_tokens")
    result = _invoke(["train", tmp_path / "c", "--model", tmp_path / "no_such_model", *common,
                      "--max-length", "48", "--head-tokens", "16"])
    one_line_error(result)


def test_train_without_training_data(tmp_path: Path) -> None:
    result = _invoke(["train", tmp_path / "o"])
    assert result.exit_code == 2 and "--train FILE" in result.output


def test_distill_with_more_layers_than_the_teacher(
    teacher_run: tuple[Path, Result], files: Path, tmp_path: Path
) -> None:
    out, _ = teacher_run
    result = _invoke(["distill", out / "best", tmp_path / "s", "--train", files / "train.csv",
                      "--text-column", "review", "--label-column", "rating", "--stars", STARS,
                      "--layers", "5", *FAST])
    one_line_error(result, "1..2 layers")


def test_evaluate_with_an_unknown_label_and_a_missing_column(
    tiny_bundle: Path, files: Path
) -> None:
    result = _invoke(["evaluate", tiny_bundle, files / "test.csv", "--text-column", "review",
                      "--label-column", "rating", "--stars", STARS])
    one_line_error(result, "labels ['neutral'] are not among the model's labels")
    result = _invoke(["evaluate", tiny_bundle, files / "test.csv", "--text-column", "text"])
    one_line_error(result, "no text column 'text'")


def test_training_and_predict_join_titles_alike(tmp_path: Path) -> None:
    """``--title-column`` at training (export/data.py) and at prediction (edgesent predict)
    turn a titled row into the same text: one function (edgesent.inputs.join_title)."""
    from edgesent.inputs import ReviewReader, join_title
    from edgesent_export.data import ColumnSpec, read_reviews

    rows = [{"title": "Broke in a week", "text": "Sent it back.", "label": "negative"},
            {"title": "", "text": "Works fine", "label": "positive"},
            {"title": "Great!", "text": " ", "label": "positive"},
            {"title": "  Loud  ", "text": "but it works", "label": "positive"}]
    path = write_csv(tmp_path / "titled.csv", rows, ["title", "text", "label"])
    trained = [r.text for r in read_reviews(path, ColumnSpec(title="title"))]
    with ReviewReader(path, title_column="title") as reader:
        predicted = [r.text for r in reader]
    assert trained == predicted == [join_title(r["title"], r["text"]) for r in rows]
    assert trained == ["Broke in a week. Sent it back.", "Works fine", "Great!",
                       "Loud. but it works"]
