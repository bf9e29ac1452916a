"""The command line, end to end on the tiny bundle: every input kind, format and error."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import edgesent.cli
import edgesent.models
from edgesent import __version__
from edgesent.cli import main

TEXTS = ["Great product, love it", "", "awful, it broke after a week", "the box arrived"]
LABELS = ["positive", None, "negative"]  # the last one may go either way


@pytest.fixture
def run(tiny_bundle: Path) -> Callable[..., Result]:
    def invoke(*args: str, input: str | bytes | None = None, model: bool = True) -> Result:
        argv = list(args) + (["--model", str(tiny_bundle)] if model else [])
        return CliRunner().invoke(main, argv, input=input)

    return invoke


def rows_of(result: Result, fmt: str) -> list[dict]:
    assert result.exit_code == 0, result.output
    return parse(result.stdout, fmt)


def parse(text: str, fmt: str) -> list[dict]:
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    if fmt == "json":
        return json.loads(text)
    if fmt == "csv":
        return [{k: v or None for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]
    raise AssertionError(fmt)


def assert_one_line_error(result: Result, *fragments: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"edgesent {__version__}"


@pytest.mark.parametrize("command", [[], ["predict"], ["info"]])
def test_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.stdout and "Examples:" in result.stdout
    assert "edgesent " in result.stdout


def test_main_help_lists_commands() -> None:
    out = CliRunner().invoke(main, ["--help"]).stdout
    assert "predict" in out and "info" in out


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_predict_arguments_in_each_format(run: Callable[..., Result], fmt: str) -> None:
    rows = rows_of(run("predict", *TEXTS, "--format", fmt), fmt)
    assert [r["text"] or "" for r in rows] == TEXTS
    assert [r.get("label") for r in rows[:3]] == LABELS
    assert rows[1]["error"] == "empty text"
    assert rows[3]["label"] in ("negative", "positive") and rows[3].get("error") is None


def test_default_format_is_jsonl_in_a_pipe(run: Callable[..., Result]) -> None:
    assert len(rows_of(run("predict", "love it"), "jsonl")) == 1


def test_default_format_is_a_table_on_a_terminal(run: Callable[..., Result],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edgesent.cli, "_isatty", lambda stream: True)
    result = run("predict", *TEXTS)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["#", "label", "score", "text"] and len(lines) == 5
    assert "positive" in lines[1] and "(empty text)" in lines[2]


def test_table_format(run: Callable[..., Result]) -> None:
    result = run("predict", *TEXTS, "-f", "table")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1 + len(TEXTS)


@pytest.mark.parametrize("args", [["-"], []])
def test_stdin_one_review_per_line(run: Callable[..., Result], args: list[str]) -> None:
    rows = rows_of(run("predict", *args, input="\n".join(TEXTS) + "\n"), "jsonl")
    assert [r["text"] for r in rows] == TEXTS
    assert [r.get("label") for r in rows[:3]] == LABELS


def make_input(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"reviews.{kind}"
    if kind == "csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "review", "stars"])
            writer.writerows([i, text, 3] for i, text in enumerate(TEXTS))
    elif kind == "tsv":
        lines = ["id\treview"] + [f"{i}\t{text}" for i, text in enumerate(TEXTS)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif kind == "jsonl":
        lines = [json.dumps({"id": i, "review": text}) for i, text in enumerate(TEXTS)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "txt"])
def test_input_files_align_with_output(run: Callable[..., Result], tmp_path: Path,
                                       kind: str) -> None:
    path = make_input(tmp_path, kind)
    rows = rows_of(run("predict", "--input", str(path), "--format", "json"), "json")
    column = "text" if kind == "txt" else "review"  # the input's own column is carried
    assert [r[column] for r in rows] == TEXTS
    assert [r.get("label") for r in rows[:3]] == LABELS
    assert "label" not in rows[1] and rows[1]["error"] == "empty text"
    if kind != "txt":
        assert [str(r["id"]) for r in rows] == ["0", "1", "2", "3"]


def test_text_column(run: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("text,title\nawful refund,great\nlove it,terrible\n", encoding="utf-8")
    by_default = rows_of(run("predict", "-i", str(path)), "jsonl")
    by_title = rows_of(run("predict", "-i", str(path), "--text-column", "title"), "jsonl")
    assert [r["text"] for r in by_default] == ["awful refund", "love it"]
    assert [(r["text"], r["title"]) for r in by_title] == [("awful refund", "great"),
                                                          ("love it", "terrible")]
    assert [r["label"] for r in by_title] == ["positive", "negative"]  # from the titles
    assert [r["label"] for r in by_default] == ["negative", "positive"]


def test_input_format_option(run: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "reviews.data"
    path.write_text('{"text": "love it"}\n', encoding="utf-8")
    rows = rows_of(run("predict", "-i", str(path), "--input-format", "jsonl"), "jsonl")
    assert rows[0]["text"] == "love it"


def test_many_rows_stream_in_chunks(run: Callable[..., Result], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edgesent.cli, "CHUNK_TEXTS", 7)
    texts = [TEXTS[i % len(TEXTS)] + f" {i}" * (i % 3) for i in range(60)]
    path = tmp_path / "many.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    rows = rows_of(run("predict", "-i", str(path), "--progress", "-b", "3"), "jsonl")
    assert [r["text"] for r in rows] == texts


@pytest.mark.parametrize(("name", "fmt"), [("out.csv", "csv"), ("out.json", "json"),
                                           ("out.jsonl", "jsonl"), ("out", "jsonl")])
def test_output_file(run: Callable[..., Result], tmp_path: Path, name: str, fmt: str) -> None:
    out = tmp_path / name
    result = run("predict", *TEXTS, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"Wrote 4 prediction(s) to {out}" in result.stderr
    assert [r["text"] or "" for r in parse(out.read_text(encoding="utf-8"), fmt)] == TEXTS


def test_output_explicit_format_wins(run: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    assert run("predict", "love it", "-o", str(out), "-f", "csv").exit_code == 0
    assert out.read_text(encoding="utf-8").startswith("text,label,score")


def test_failed_run_leaves_no_output_file(run: Callable[..., Result], tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"great\n" * 3 + b"bad \xff byte\n")
    out = tmp_path / "out.jsonl"
    assert_one_line_error(run("predict", "-i", str(src), "-o", str(out)), "line 4, column 5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


@pytest.mark.parametrize(("content", "extra", "fragments"), [
    (b"text\nok\ncaf\xe9\n", [], ["reviews.csv: line 3, column 4: invalid UTF-8"]),
    (b"id,review_txt\n1,ok\n", ["--text-column", "review_text"],
     ["no column 'review_text'", "did you mean 'review_txt'?"]),
    (b"", [], ["reviews.csv: the file is empty"]),
    (b"text\n", [], ["no reviews after the header row"]),
])
def test_bad_input_files(run: Callable[..., Result], tmp_path: Path, content: bytes,
                         extra: list[str], fragments: list[str]) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(content)
    assert_one_line_error(run("predict", "--input", str(path), *extra), *fragments)


def test_nonexistent_input(run: Callable[..., Result], tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    assert_one_line_error(run("predict", "--input", str(missing)), f"{missing}: no such file")


def test_empty_stdin(run: Callable[..., Result]) -> None:
    assert_one_line_error(run("predict", "-", input=""), "<stdin>: the input is empty")


def test_corrupt_bundle(bundle_copy: Path) -> None:
    (bundle_copy / "model.onnx").write_bytes(b"not a model at all")
    for args in (["predict", "great"], ["info"]):
        result = CliRunner().invoke(main, [*args, "--model", str(bundle_copy)])
        assert_one_line_error(result, str(bundle_copy), "model.onnx")


def test_missing_bundle_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["predict", "great", "--model", str(tmp_path / "none")])
    assert_one_line_error(result, "no such directory")


def test_no_default_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(edgesent.models, "DEFAULT_MODEL", tmp_path / "absent")
    assert_one_line_error(CliRunner().invoke(main, ["predict", "great"]), "ships no default model")
    assert_one_line_error(CliRunner().invoke(main, ["info"]), "ships no default model")


def test_model_from_environment(tiny_bundle: Path) -> None:
    result = CliRunner().invoke(main, ["predict", "love it"],
                                env={"EDGESENT_MODEL": str(tiny_bundle)})
    assert result.exit_code == 0 and json.loads(result.stdout)["label"] == "positive"


@pytest.mark.parametrize("args", [
    ["predict", "a", "--input", "x.csv"],
    ["predict", "a", "--text-column", "text"],
    ["predict", "a", "--format", "xml"],
    ["predict", "a", "--batch-size", "0"],
])
def test_usage_errors_exit_2(run: Callable[..., Result], args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error: " in result.stderr


def test_info(run: Callable[..., Result], tiny_bundle: Path) -> None:
    result = run("info")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"tiny-test  ({tiny_bundle})")
    for fragment in ("negative, positive", "32 tokens max, head_tail (first 8 + last 22",
                     "WordPiece", "lowercase", "int8", "checksums verified", "uncalibrated",
                     "Provenance", "tiny-random", "train=400", "Metrics", "accuracy", "0.9100"):
        assert fragment in out, fragment


def test_info_json(run: Callable[..., Result], tiny_bundle: Path) -> None:
    result = run("info", "--json")
    assert result.exit_code == 0
    on_disk = json.loads((tiny_bundle / "edgesent.json").read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == on_disk
