"""The command line, end to end on the tiny bundle: every input kind, format and error."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def test_title_column(run: Callable[..., Result], tiny_bundle: Path, tmp_path: Path) -> None:
    from edgesent import Classifier
    from edgesent.inputs import join_title

    path = tmp_path / "r.jsonl"
    rows = [{"id": 1, "title": "terrible, awful", "text": "love it"},
            {"id": 2, "title": "", "text": "awful refund"},
            {"id": 3, "text": "great"},  # no title at all
            {"id": 4, "title": "great", "text": "   "}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    titled = rows_of(run("predict", "-i", str(path), "--title-column", "title"), "jsonl")
    plain = rows_of(run("predict", "-i", str(path)), "jsonl")
    assert [r["text"] for r in titled] == [r["text"] for r in rows]  # the input, as it was
    joined = [join_title(r.get("title"), r["text"]) for r in rows]
    assert joined == ["terrible, awful. love it", "awful refund", "great", "great"]
    expected = Classifier.load(tiny_bundle, threads=1).predict(joined)
    assert [r["score"] for r in titled] == pytest.approx([p.score for p in expected])
    assert [r["label"] for r in titled] == [p.label for p in expected]
    assert titled[0]["label"] == "negative" and plain[0]["label"] == "positive"
    assert titled[1:3] == plain[1:3]  # no title: the same answer
    assert titled[3]["label"] == "positive" and plain[3]["error"] == "empty text"


def test_title_column_mistakes(run: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("text,title\nawful refund,great\n", encoding="utf-8")
    assert_one_line_error(run("predict", "-i", str(path), "--title-column", "titel"),
                          "no title column 'titel'", "did you mean 'title'?")
    txt = tmp_path / "r.txt"
    txt.write_text("awful refund\n", encoding="utf-8")
    assert_one_line_error(run("predict", "-i", str(txt), "--title-column", "title"),
                          "plain text has no columns; a title column applies")
    result = run("predict", "great", "--title-column", "title")
    assert result.exit_code == 2 and "--title-column" in result.stderr


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
                     "WordPiece", "lowercase", "int8", "size and sha256 of model.onnx",
                     "labels, temperature, encoding match the graph", "uncalibrated",
                     "Provenance", "tiny-random", "train=400", "Metrics", "accuracy", "0.9100"):
        assert fragment in out, fragment


def test_info_json(run: Callable[..., Result], tiny_bundle: Path) -> None:
    result = run("info", "--json")
    assert result.exit_code == 0
    on_disk = json.loads((tiny_bundle / "edgesent.json").read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == on_disk


# -- issue 14: hostile input and output paths ---------------------------------------------


def cli_process(tiny_bundle: Path, *args: str, stdin: bytes = b"",
                cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """The real command in its own process (file descriptors and /proc are real there)."""
    return subprocess.run([sys.executable, "-m", "edgesent.cli", *args, "--model",
                           str(tiny_bundle)], input=stdin, capture_output=True, cwd=cwd,
                          timeout=120, check=False)


def test_output_symlink_to_a_file_replaces_the_target_and_keeps_its_mode(
        run: Callable[..., Result], tmp_path: Path) -> None:
    target = tmp_path / "real.jsonl"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o600)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert run("predict", "love it", "-o", str(link)).exit_code == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text(encoding="utf-8"))["label"] == "positive"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_output_to_a_new_file_follows_the_umask(run: Callable[..., Result],
                                                tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        assert run("predict", "love it", "-o", str(tmp_path / "new.csv")).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == 0o640


def test_output_to_a_fifo_is_written_through(tiny_bundle: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    result = cli_process(tiny_bundle, "predict", "love it", "awful", "-o", str(fifo))
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still a FIFO, not a regular file
    assert [json.loads(x)["text"] for x in got[0].splitlines()] == ["love it", "awful"]


def test_output_to_proc_self_fd_and_dev_null(tiny_bundle: Path, tmp_path: Path) -> None:
    link = tmp_path / "out"
    link.symlink_to("/proc/self/fd/1")
    result = cli_process(tiny_bundle, "predict", "love it", "-o", str(link))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"] == "love it"  # reached the real stdout
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    result = cli_process(tiny_bundle, "predict", "love it", "-o", "/dev/null")
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_output_to_dev_stdout_appends_to_a_redirected_file(tiny_bundle: Path,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text('{"earlier": true}\n', encoding="utf-8")
    with log.open("ab") as fh:  # like `>> log.jsonl`
        done = subprocess.run([sys.executable, "-m", "edgesent.cli", "predict", "love it",
                               "-o", "/dev/stdout", "--model", str(tiny_bundle)],
                              stdout=fh, stderr=subprocess.PIPE, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = log.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"earlier": True} and json.loads(lines[1])["text"] == "love it"


def test_unknown_output_extension_is_an_error(run: Callable[..., Result],
                                              tmp_path: Path) -> None:
    out = tmp_path / "scores.xlsx"
    result = run("predict", "love it", "-o", str(out))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "table, json, jsonl, csv" in result.stderr and ".xlsx" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert run("predict", "love it", "-o", str(out), "-f", "csv").exit_code == 0


def test_read_only_output_file_is_refused(run: Callable[..., Result], tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write any file")
    out = tmp_path / "ro.jsonl"
    out.write_text("keep\n", encoding="utf-8")
    out.chmod(0o444)
    assert_one_line_error(run("predict", "love it", "-o", str(out)), "permission denied")
    assert out.read_text(encoding="utf-8") == "keep\n"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_input_columns_carried_and_clashes_prefixed(run: Callable[..., Result], tmp_path: Path,
                                                    fmt: str) -> None:
    path = tmp_path / "labelled.csv"
    path.write_text("id,date,text,label\n7,2024-05-01,love it,negative\n8,2024-05-02,,x\n",
                    encoding="utf-8")
    rows = rows_of(run("predict", "-i", str(path), "-f", fmt), fmt)
    assert [r["id"] for r in rows] == ["7", "8"] and rows[0]["date"] == "2024-05-01"
    assert [r["label"] for r in rows] == ["negative", "x"]  # the input's labels, untouched
    assert rows[0]["pred_label"] == "positive" and rows[1]["pred_error"] == "empty text"
    bare = rows_of(run("predict", "-i", str(path), "-f", fmt, "--no-input-columns"), fmt)
    assert set(bare[0]) <= {"text", "label", "score", "scores", "p_negative", "p_positive",
                            "error"}
    assert bare[0]["text"] == "love it" and bare[0]["label"] == "positive"


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_output_reads_back_as_input(run: Callable[..., Result], tmp_path: Path,
                                    fmt: str) -> None:
    """--format json (and jsonl, csv) output is valid input (item 9): a round trip."""
    texts = [*TEXTS, "a\u2028b", 'quote " and, comma', "line\nbreak", "x\r"]
    first = run("predict", *texts, "-f", fmt)
    path = tmp_path / f"scored.{fmt}"
    path.write_text(first.stdout, encoding="utf-8")
    again = rows_of(run("predict", "-i", str(path), "-f", fmt), fmt)
    assert len(again) == len(texts)
    assert [r["text"] or "" for r in again] == texts
    assert [r.get("pred_label") for r in again] == [r.get("label") for r in rows_of(first, fmt)]


def test_cr_only_text_file(run: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "m.txt"
    path.write_bytes(b"Great value\rAwful product\rLove it\r")
    rows = rows_of(run("predict", "-i", str(path)), "jsonl")
    assert [r["text"] for r in rows] == ["Great value", "Awful product", "Love it"]
    csv_path = tmp_path / "m.csv"
    csv_path.write_bytes(b"text\rGreat value\rAwful product\r")
    assert len(rows_of(run("predict", "-i", str(csv_path)), "jsonl")) == 2


def test_utf16_input_with_a_bom(run: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes("text\nlove it\nawful\n".encode("utf-16"))
    rows = rows_of(run("predict", "-i", str(path)), "jsonl")
    assert [r["label"] for r in rows] == ["positive", "negative"]


def test_lone_surrogate_gets_a_row_and_the_rest_are_classified(run: Callable[..., Result],
                                                               tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "love it"}\n{"text": "ok \\ud83d"}\n{"text": "awful"}\n',
                    encoding="utf-8")
    for fmt in ("jsonl", "json", "csv", "table"):
        result = run("predict", "-i", str(path), "-f", fmt)
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    rows = rows_of(run("predict", "-i", str(path)), "jsonl")
    assert len(rows) == 3 and rows[1]["text"] == "ok \ud83d"
    assert rows[0]["label"] == "positive" and rows[2]["label"] == "negative"


def test_table_output_neutralises_terminal_escapes(run: Callable[..., Result]) -> None:
    result = run("predict", "love it \x1b]0;owned\x07\x1b[2J", "-f", "table")
    assert result.exit_code == 0
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "␛]0;owned␇" in result.stdout
    machine = rows_of(run("predict", "love it \x1b[2J", "-f", "jsonl"), "jsonl")
    assert machine[0]["text"] == "love it \x1b[2J"  # machine formats keep the text exactly


def test_jsonl_output_splits_only_at_line_ends(run: Callable[..., Result]) -> None:
    result = run("predict", "a\u2028b", "c\u2029d\x85e", "-f", "jsonl")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 2


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_progress_moves_every_batch(run: Callable[..., Result], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """Item 14: at least every few hundred rows, for files and for stdin."""
    steps: list[int] = []
    original = edgesent.cli._Progress.update

    def record(self: Any, n: int) -> None:
        steps.append(n)
        original(self, n)

    monkeypatch.setattr(edgesent.cli._Progress, "update", record)
    lines = "\n".join(f"great review {i}" if i % 50 else "" for i in range(2000)) + "\n"
    if source == "file":
        path = tmp_path / "many.txt"
        path.write_text(lines, encoding="utf-8")
        result = run("predict", "-i", str(path), "--progress", "-o", str(tmp_path / "o.jsonl"))
    else:
        result = run("predict", "-", "--progress", input=lines)
    assert result.exit_code == 0, result.output
    assert sum(steps) == 2000 and max(steps) <= 256
    assert len(steps) >= 2000 // 256
    if source == "stdin":
        assert "Classified 2,000 reviews" in result.stderr


def test_runner_options(run: Callable[..., Result]) -> None:
    rows = rows_of(run("predict", "love it", "awful", "--token-budget", "16", "--no-memory-arena",
                       "-t", "1", "-b", "1"), "jsonl")
    assert [r["label"] for r in rows] == ["positive", "negative"]
    for bad in (["--token-budget", "0"], ["--threads", "0"], ["--token-budget", "x"]):
        result = run("predict", "love it", *bad)
        assert result.exit_code == 2 and "Traceback" not in result.output


def test_build_commands_are_listed_without_importing_them() -> None:
    """`edgesent --help` lists every command; the build half loads only when used."""
    code = ("import sys; from click.testing import CliRunner; import edgesent.cli as c; "
            "heavy = {'torch', 'transformers', 'optimum', 'edgesent_export', 'fastapi'}; "
            "assert not heavy & set(sys.modules), heavy & set(sys.modules); "
            "out = CliRunner().invoke(c.main, ['--help']).stdout; print(out); "
            "assert not {'torch', 'transformers', 'optimum'} & set(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    for name in ("build", "distill", "evaluate", "export", "info", "predict", "serve", "train"):
        assert re.search(rf"^\s+{name}\s", done.stdout, re.M), name
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0 and "--train" in result.stdout, result.output


def test_a_broken_lazy_command_does_not_break_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(edgesent.cli.LAZY_COMMANDS, "broken", "edgesent.no_such_module")
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0 and "broken" in out.stdout and "predict" in out.stdout
    assert_one_line_error(CliRunner().invoke(main, ["broken", "x"]), "edgesent broken is "
                          "unavailable", "No module named 'edgesent.no_such_module'")


def test_missing_optional_module_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path, tiny_bundle: Path) -> None:
    """Errors map to messages in one place: a missing pyarrow names the pip command."""
    path = tmp_path / "r.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    result = CliRunner().invoke(main, ["predict", "-i", str(path), "--model", str(tiny_bundle)])
    assert_one_line_error(result, "pip install pyarrow")


def test_info_sizes_agree_with_the_readme_units(run: Callable[..., Result],
                                                tiny_bundle: Path) -> None:
    out = run("info").stdout
    total = sum(p.stat().st_size for p in tiny_bundle.iterdir())
    assert f"{total / 1000:.1f} kB in" in out or f"{total} B in" in out
    assert "MiB" not in out and "KiB" not in out


def test_machine_output_is_utf8_whatever_the_locale(tiny_bundle: Path) -> None:
    """A C/ASCII locale must not turn an accented review into a UnicodeEncodeError."""
    runner = CliRunner(charset="ascii")
    result = runner.invoke(main, ["predict", "très bien 😀", "--model", str(tiny_bundle)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout_bytes.decode("utf-8"))["text"] == "très bien 😀"
    table = runner.invoke(main, ["predict", "très bien", "-f", "table", "--model",
                                 str(tiny_bundle)])
    assert table.exit_code == 0 and "tr?s bien" in table.stdout_bytes.decode("ascii")


def test_a_failed_model_load_leaves_the_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    out.write_text("yesterday's scores\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["predict", "love it", "-o", str(out), "--model",
                                       str(tmp_path / "no-bundle")])
    assert_one_line_error(result, "no such directory")
    assert out.read_text(encoding="utf-8") == "yesterday's scores\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.jsonl"]


def test_output_to_dev_stdout_shares_the_shells_file_offset(tiny_bundle: Path,
                                                            tmp_path: Path) -> None:
    """`{ echo a; edgesent ... -o /dev/stdout; echo b; } > file`: nothing overwritten."""
    out = tmp_path / "all.txt"
    edgesent = f"{sys.executable} -m edgesent.cli predict 'love it' --model {tiny_bundle}"
    script = (f"{{ echo before; {edgesent} -o /dev/stdout; {edgesent} -o /proc/self/fd/1; "
              f"echo after; }} > {out}")
    done = subprocess.run(["bash", "-c", script], capture_output=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "before" and lines[-1] == "after" and len(lines) == 4
    assert [json.loads(x)["text"] for x in lines[1:3]] == ["love it", "love it"]
