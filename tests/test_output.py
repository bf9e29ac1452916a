"""Formatting predictions: table, json, jsonl, csv; one row per input, blanks included."""

from __future__ import annotations

import csv
import io
import json

import pytest

from edgesent import Prediction
from edgesent.inputs import Review
from edgesent.output import (
    FORMATS,
    format_for_path,
    make_writer,
    prediction_names,
    printable,
    render_table,
    row_dict,
    shorten,
    to_json,
)

LABELS = ["negative", "positive"]
TEXTS = ["Great value, love it", "", "Broke after a week.\nNo refund", "déçu 😞"]
PREDICTIONS = [
    Prediction("positive", 0.9712345678, {"negative": 0.0287654322, "positive": 0.9712345678}),
    Prediction(None, None, {}, "empty text"),
    Prediction("negative", 0.81, {"negative": 0.81, "positive": 0.19}),
    Prediction("negative", 0.6, {"negative": 0.6, "positive": 0.4}),
]


def format_predictions(texts: list, predictions: list[Prediction], fmt: str,
                       labels: list[str], *, width: int | None = None, **kwargs: object) -> str:
    out = io.StringIO()
    writer = make_writer(fmt, out, labels, total=len(texts), width=width, **kwargs)
    writer.write_many(texts, predictions)
    writer.close()
    return out.getvalue()


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
    assert list(rows[0]) == ["text", "label", "score", "p_negative", "p_positive", "error"]
    assert [r["text"] for r in rows] == TEXTS  # embedded newline survives quoting
    assert rows[0]["label"] == "positive" and float(rows[0]["p_positive"]) == 0.971235
    assert rows[1] == {"text": "", "label": "", "score": "", "p_negative": "",
                       "p_positive": "", "error": "empty text"}
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


def reviews_with_columns() -> list[Review]:
    rows = [{"id": "r1", "date": "2024-01-02", "text": TEXTS[0]},
            {"id": "r2", "date": "2024-01-03", "text": TEXTS[1]}]
    return [Review(row["text"], line=i + 2, fields=row) for i, row in enumerate(rows)]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_input_columns_are_carried_through(fmt: str) -> None:
    """An id or a date survives, so joining back does not rely on row order (item 12)."""
    text = format_predictions(reviews_with_columns(), PREDICTIONS[:2], fmt, LABELS)
    rows = (list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else
            json.loads(text) if fmt == "json" else [json.loads(x) for x in text.splitlines()])
    assert [r["id"] for r in rows] == ["r1", "r2"]
    assert [r["date"] for r in rows] == ["2024-01-02", "2024-01-03"]
    assert rows[0]["text"] == TEXTS[0] and rows[0]["label"] == "positive"
    assert rows[1]["error"] == "empty text"
    assert list(rows[0])[:3] == ["id", "date", "text"]  # input columns first, in order
    dropped = format_predictions(reviews_with_columns(), PREDICTIONS[:2], fmt, LABELS,
                                 input_columns=False)
    assert "r1" not in dropped and TEXTS[0] in dropped


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_prediction_columns_never_clobber_input_columns(fmt: str) -> None:
    row = {"text": "great", "label": "negative", "pred_score": "7"}
    text = format_predictions([Review("great", fields=row)], PREDICTIONS[:1], fmt, LABELS)
    got = (next(csv.DictReader(io.StringIO(text))) if fmt == "csv" else
           json.loads(text)[0] if fmt == "json" else json.loads(text))
    assert got["label"] == "negative" and got["pred_score"] == "7"  # the input's, untouched
    assert got["pred_pred_label"] == "positive"
    assert float(got["pred_pred_score"]) == 0.971235


def test_prediction_names() -> None:
    assert prediction_names([], LABELS) == {
        "label": "label", "score": "score", "scores": "scores", "error": "error",
        "p_negative": "p_negative", "p_positive": "p_positive"}
    assert prediction_names(["ERROR"], LABELS)["label"] == "pred_label"  # case-insensitive
    assert prediction_names(["p_positive"], LABELS)["error"] == "pred_error"


def test_csv_cells_of_json_values() -> None:
    row = {"text": "ok", "meta": {"a": [1]}, "n": 3, "none": None, "flag": True}
    text = format_predictions([Review("ok", fields=row)], PREDICTIONS[:1], "csv", LABELS)
    got = next(csv.DictReader(io.StringIO(text)))
    assert (got["meta"], got["n"], got["none"], got["flag"]) == ('{"a": [1]}', "3", "", "true")


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_escapes_line_separators(fmt: str) -> None:
    """U+2028, U+2029 and U+0085 are escaped so line-based readers keep one row per line."""
    texts = ["a\u2028b", "c\u2029d", "e\x85f", "g\x0bh\x0ci\x1cj"]
    out = format_predictions(texts, PREDICTIONS[:1] * 4, fmt, LABELS)
    assert len(out.splitlines()) == (4 if fmt == "jsonl" else 6)
    for ch in ("\u2028", "\u2029", "\x85"):
        assert ch not in out
    parsed = json.loads(out) if fmt == "json" else [json.loads(x) for x in out.splitlines()]
    assert [r["text"] for r in parsed] == texts


def test_lone_surrogates_are_written_not_crashed_on() -> None:
    text = "ok \ud83d"
    line = to_json({"text": text})
    assert line == '{"text": "ok \\ud83d"}' and json.loads(line)["text"] == text
    line.encode("utf-8")  # encodable
    assert "\ufffd" in format_predictions([text], PREDICTIONS[:1], "csv", LABELS)
    assert "\ufffd" in format_predictions([text], PREDICTIONS[:1], "table", LABELS, width=60)


def test_table_neutralises_control_characters() -> None:
    """Terminal escapes in a review are shown, not obeyed (item 10); machine formats keep them."""
    hostile = "nice\x1b]0;pwned\x07 \x1b[2J\u202eevil\x9b"
    table = format_predictions([hostile], PREDICTIONS[:1], "table", LABELS, width=80)
    for ch in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert ch not in table
    assert "␛]0;pwned␇" in table
    assert json.loads(format_predictions([hostile], PREDICTIONS[:1], "jsonl", LABELS))[
        "text"] == hostile
    assert printable("tab\there") == "tab␉here" and printable("ok é 😀") == "ok é 😀"


def test_format_for_path() -> None:
    assert [format_for_path(p) for p in ("a.csv", "a.JSON", "a.ndjson", "a.txt", "a")] == [
        "csv", "json", "jsonl", "table", "jsonl"]
    with pytest.raises(ValueError, match=r"scores\.xlsx from '\.xlsx'; give --format \(table, "
                                         r"json, jsonl, csv\)"):
        format_for_path("scores.xlsx")


def test_render_table() -> None:
    lines = render_table(["", "acc", "n"], [["fdu", 0.9, 1000], ["marc-long-name", 0.92, 5]],
                         indent=2)
    assert lines == ["                   acc     n",
                     "  fdu              0.9  1000",
                     "  marc-long-name  0.92     5"]
    assert render_table(["a", "b"], [["x"]], align="<<") == ["a  b", "x"]
