"""Formatting predictions: table, json, jsonl, csv; one row per input, blanks included."""

from __future__ import annotations

import csv
import io
import json

import pytest

from edgesent import Prediction
from edgesent.output import FORMATS, format_predictions, make_writer, row_dict, shorten

LABELS = ["negative", "positive"]
TEXTS = ["Great value, love it", "", "Broke after a week.\nNo refund", "déçu 😞"]
PREDICTIONS = [
    Prediction("positive", 0.9712345678, {"negative": 0.0287654322, "positive": 0.9712345678}),
    Prediction(None, None, {}, "empty text"),
    Prediction("negative", 0.81, {"negative": 0.81, "positive": 0.19}),
    Prediction("negative", 0.6, {"negative": 0.6, "positive": 0.4}),
]


def render(fmt: str, width: int | None = 80) -> str:
    return format_predictions(TEXTS, PREDICTIONS, fmt, LABELS, width=width)


def test_row_dict() -> None:
    assert row_dict("x", PREDICTIONS[0]) == {
        "text": "x", "label": "positive", "score": 0.971235,
        "scores": {"negative": 0.028765, "positive": 0.971235}}
    assert row_dict("", PREDICTIONS[1]) == {"text": "", "error": "empty text"}


def test_jsonl_one_object_per_input() -> None:
    rows = [json.loads(line) for line in render("jsonl").splitlines()]
    assert [r["text"] for r in rows] == TEXTS
    assert [r.get("label") for r in rows] == ["positive", None, "negative", "negative"]
    assert rows[1] == {"text": "", "error": "empty text"}
    assert "label" not in rows[1]
    assert "😞" in render("jsonl")  # not escaped


def test_json_is_one_valid_list() -> None:
    rows = json.loads(render("json"))
    assert isinstance(rows, list) and len(rows) == len(TEXTS)
    assert rows[0]["scores"]["positive"] == 0.971235
    assert rows[1] == {"text": "", "error": "empty text"}
    assert json.loads(format_predictions([], [], "json", LABELS)) == []


def test_csv_columns_and_error_rows() -> None:
    rows = list(csv.DictReader(io.StringIO(render("csv"))))
    assert list(rows[0]) == ["text", "label", "score", "score_negative", "score_positive",
                             "error"]
    assert [r["text"] for r in rows] == TEXTS  # embedded newline survives quoting
    assert rows[0]["label"] == "positive" and float(rows[0]["score_positive"]) == 0.971235
    assert rows[1] == {"text": "", "label": "", "score": "", "score_negative": "",
                       "score_positive": "", "error": "empty text"}
    assert rows[2]["error"] == ""


def test_table_is_aligned_and_fits() -> None:
    lines = render("table", width=60).splitlines()
    assert len(lines) == 1 + len(TEXTS)
    assert lines[0].split() == ["#", "label", "score", "text"]
    text_at = lines[0].index("text")
    for line in lines[1:]:
        assert len(line) <= 60
    assert lines[1][text_at:] == "Great value, love it"
    assert lines[2].split() == ["2", "-", "-", "(empty", "text)"]
    assert lines[3][text_at:] == "Broke after a week. No refund"  # one line per row
    assert "0.971" in lines[1] and lines[1].index("0.971") < text_at


def test_table_shortens_long_text() -> None:
    table = format_predictions(["word " * 100], PREDICTIONS[:1], "table", LABELS, width=50)
    row = table.splitlines()[1]
    assert len(row) <= 50 and row.endswith("…")


def test_shorten() -> None:
    assert shorten("a  b\n c", 10) == "a b c"
    assert shorten("abcdefghij", 5) == "abcd…"


def test_writer_streams_rows_as_written() -> None:
    out = io.StringIO()
    writer = make_writer("jsonl", out, LABELS)
    writer.write("one", PREDICTIONS[0])
    assert out.getvalue().count("\n") == 1
    writer.write("two", PREDICTIONS[2])
    writer.close()
    assert writer.rows == 2


def test_unknown_format() -> None:
    assert set(FORMATS) == {"table", "json", "jsonl", "csv"}
    with pytest.raises(ValueError, match="unknown output format 'xml'"):
        make_writer("xml", io.StringIO(), LABELS)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        format_predictions(TEXTS, PREDICTIONS[:2], "jsonl", LABELS)
