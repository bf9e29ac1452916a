"""Write predictions as an aligned table (for people), JSON, JSON Lines or CSV.

Writers stream: each ``write`` emits one row at once, so a large file is never held in
memory. Rows align 1:1 with the inputs; a text that could not be classified (blank)
gives a row with an ``error`` field and no label.

Machine formats carry the input's columns through (an ``id``, a date) ahead of the
prediction columns ``label``, ``score``, ``scores`` (JSON) or ``p_<label>`` (CSV) and
``error``. A review that had no columns (a line of text, an argument) is written under
``text``. When an input column already bears a prediction column's name (a labelled
file's ``label``), every prediction column is prefixed with ``pred_`` (again, until no
name clashes), so an input value is never overwritten.

>>> import io
>>> out = io.StringIO()
>>> writer = make_writer("jsonl", out, ["negative", "positive"])
>>> writer.write("   ", Prediction(None, None, {}, "empty text"))
>>> writer.write(Review("ok", fields={"id": 7, "text": "ok", "label": "positive"}),
...              Prediction("positive", 0.8, {"negative": 0.2, "positive": 0.8}))
>>> writer.close()
>>> [json.loads(line) for line in out.getvalue().splitlines()]  # doctest: +NORMALIZE_WHITESPACE
[{'text': '   ', 'error': 'empty text'},
 {'id': 7, 'text': 'ok', 'label': 'positive', 'pred_label': 'positive', 'pred_score': 0.8,
  'pred_scores': {'negative': 0.2, 'positive': 0.8}}]
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from edgesent.classifier import Prediction
from edgesent.inputs import Review
from edgesent.tokenization import repair_surrogates

FORMATS = ("table", "json", "jsonl", "csv")
SUFFIX_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
                  ".txt": "table"}
DIGITS = 6  # decimals kept for probabilities in machine-readable output
PREFIX = "pred_"  # put before every prediction column when one would clash with an input's
TEXT = "text"  # the column of a review that came without columns
# Characters JSON may leave raw that line-based readers split on (str.splitlines splits on
# U+0085, U+2028, U+2029), and lone surrogates, which UTF-8 cannot encode: all escaped.
_JSON_UNSAFE = re.compile("[\u0085\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Bidirectional overrides and isolates reorder what a terminal shows.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def format_for_path(path: str | Path) -> str:
    """The output format a file name asks for; ``jsonl`` when it has no suffix.

    >>> format_for_path("scored.csv"), format_for_path("out")
    ('csv', 'jsonl')
    >>> format_for_path("scores.xlsx")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: cannot tell the output format of scores.xlsx from '.xlsx'; give --format ...
    """
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "jsonl"
    if suffix not in SUFFIX_FORMATS:
        known = ", ".join(SUFFIX_FORMATS)
        known = known[: known.rfind(", ")] + " or" + known[known.rfind(", ") + 1 :]
        raise ValueError(f"cannot tell the output format of {Path(path).name} from {suffix!r}; "
                         f"give --format ({', '.join(FORMATS)}) or name the file {known}")
    return SUFFIX_FORMATS[suffix]


def prediction_names(taken: Iterable[str], labels: Sequence[str]) -> dict[str, str]:
    """Names of the prediction columns, prefixed with ``pred_`` until none is ``taken``.

    Keys: ``label``, ``score``, ``scores``, ``error`` and ``p_<label>`` for each label.

    >>> prediction_names(["id", "Label"], ["neg", "pos"])["label"]
    'pred_label'
    >>> prediction_names(["id"], ["neg", "pos"])["p_pos"]
    'p_pos'
    """
    base = ["label", "score", "scores", "error", *(f"p_{label}" for label in labels)]
    used = {str(name).casefold() for name in taken}
    prefix = ""
    while any((prefix + name).casefold() in used for name in base):
        prefix += PREFIX
    return {name: prefix + name for name in base}


def row_dict(text: str | Review, prediction: Prediction, *, labels: Sequence[str] = (),
             input_columns: bool = True) -> dict[str, Any]:
    """The object written for one review: its columns (or ``text``), then the prediction.

    >>> row_dict("ok", Prediction("positive", 0.8, {"negative": 0.2, "positive": 0.8}))
    {'text': 'ok', 'label': 'positive', 'score': 0.8, 'scores': {'negative': 0.2, 'positive': 0.8}}
    """
    review = text if isinstance(text, Review) else Review(text)
    columns: dict[str, Any] = (
        dict(review.fields) if input_columns and review.fields else {TEXT: review.text})
    names = prediction_names(columns, labels or list(prediction.scores))
    if prediction.error is not None or prediction.score is None:
        columns[names["error"]] = prediction.error or "not classified"
        return columns
    columns[names["label"]] = prediction.label
    columns[names["score"]] = round(prediction.score, DIGITS)
    columns[names["scores"]] = {k: round(v, DIGITS) for k, v in prediction.scores.items()}
    return columns


class Writer:
    """Base writer: ``write(review, prediction)`` per review, then ``close()`` once.

    ``review`` is a :class:`~edgesent.inputs.Review` (its ``fields`` are written back
    unless ``input_columns=False``) or a bare text.
    """

    def __init__(self, stream: TextIO, labels: Sequence[str], *,
                 input_columns: bool = True) -> None:
        self.stream = stream
        self.labels = list(labels)
        self.input_columns = input_columns
        self.rows = 0

    def write(self, review: str | Review, prediction: Prediction) -> None:
        self._write(review if isinstance(review, Review) else Review(review), prediction)
        self.rows += 1

    def write_many(self, reviews: Iterable[str | Review],
                   predictions: Iterable[Prediction]) -> None:
        for review, prediction in zip(reviews, predictions, strict=True):
            self.write(review, prediction)

    def _write(self, review: Review, prediction: Prediction) -> None:
        raise NotImplementedError

    def _dict(self, review: Review, prediction: Prediction) -> dict[str, Any]:
        return row_dict(review, prediction, labels=self.labels, input_columns=self.input_columns)

    def close(self) -> None:
        """Finish the output (the stream itself stays open)."""
        self.stream.flush()


def to_json(value: Any) -> str:
    """Compact JSON on one line: non-ASCII kept, U+0085/U+2028/U+2029 and lone surrogates
    escaped, so the line splits only at its end and encodes as UTF-8.

    >>> to_json({"text": "a\\u2028b \\ud83d é"})
    '{"text": "a\\\\u2028b \\\\ud83d é"}'
    """
    text = json.dumps(value, ensure_ascii=False, default=str)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class JsonLinesWriter(Writer):
    def _write(self, review: Review, prediction: Prediction) -> None:
        self.stream.write(to_json(self._dict(review, prediction)) + "\n")


class JsonWriter(Writer):
    """A JSON array, one object per line, valid JSON even when empty."""

    def _write(self, review: Review, prediction: Prediction) -> None:
        self.stream.write("[\n  " if self.rows == 0 else ",\n  ")
        self.stream.write(to_json(self._dict(review, prediction)))

    def close(self) -> None:
        self.stream.write("[]\n" if self.rows == 0 else "\n]\n")
        super().close()


class CsvWriter(Writer):
    """The input's columns (or ``text``), then ``label``, ``score``, ``p_<label>``, ``error``.

    The header is ``columns`` when given (a CSV input's header), else the first review's
    columns; a later review's cell for a missing column is empty. Values that are not
    text are written as JSON.
    """

    def __init__(self, stream: TextIO, labels: Sequence[str], *, input_columns: bool = True,
                 columns: Sequence[str] | None = None) -> None:
        super().__init__(stream, labels, input_columns=input_columns)
        self._csv = csv.writer(stream, lineterminator="\n")
        # csv quotes only the line terminator's characters: a lone \r would end the row
        # for readers that honour it (edgesent's own), so such rows are quoted whole.
        self._quoted = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)
        self._columns: list[str] | None = (
            list(columns) if columns is not None and input_columns else None)
        self._names: dict[str, str] = {}

    def _header(self, review: Review | None) -> list[str]:
        if self._columns is None:
            fields = review.fields if review is not None and self.input_columns else {}
            self._columns = list(fields) if fields else [TEXT]
        self._names = prediction_names(self._columns, self.labels)
        names = self._names
        header = [*self._columns, names["label"], names["score"],
                  *(names[f"p_{label}"] for label in self.labels), names["error"]]
        cells = [_csv_cell(name) for name in header]
        has_cr = any("\r" in cell for cell in cells)
        (self._quoted if has_cr else self._csv).writerow(cells)
        return header

    def _write(self, review: Review, prediction: Prediction) -> None:
        if self.rows == 0:
            self._header(review)
        assert self._columns is not None
        fields = review.fields if self.input_columns and review.fields else {TEXT: review.text}
        cells = [_csv_cell(fields.get(name, "")) for name in self._columns]
        if prediction.error is not None or prediction.score is None:
            cells += ["", "", *("" for _ in self.labels), prediction.error or "not classified"]
        else:
            scores = [round(prediction.scores[x], DIGITS) if x in prediction.scores else ""
                      for x in self.labels]
            cells += [prediction.label, round(prediction.score, DIGITS), *scores, ""]
        has_cr = any(isinstance(cell, str) and "\r" in cell for cell in cells)
        (self._quoted if has_cr else self._csv).writerow(cells)

    def close(self) -> None:
        if self.rows == 0:
            self._header(None)
        super().close()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return repair_surrogates(value) if _SURROGATE.search(value) else value
    if isinstance(value, bool | dict | list):
        return to_json(value)
    return value


class TableWriter(Writer):
    """Aligned columns ``#  label  score  text``; long texts are shortened to fit.

    Control characters in the text (ESC, BEL, ...) are shown as visible symbols, never
    sent to the terminal (see :func:`printable`).
    """

    def __init__(self, stream: TextIO, labels: Sequence[str], *, total: int | None = None,
                 width: int | None = None) -> None:
        super().__init__(stream, labels, input_columns=False)
        self.labels = [printable(label) for label in self.labels]
        index_width = max(len(str(total or 0)), 3)
        label_width = max([len("label"), *map(len, self.labels)])
        columns = width or shutil.get_terminal_size((100, 24)).columns
        self._widths = [index_width, label_width, len("score")]
        used = index_width + label_width + len("score") + 6
        self._text_width = max(columns - used - 1, 20)
        self._line("#", "label", "score", "text")

    def _line(self, index: str, label: str, score: str, text: str) -> None:
        self.stream.write(format_row([index, label, score, text], [*self._widths, 0],
                                     "><><") + "\n")

    def _write(self, review: Review, prediction: Prediction) -> None:
        shown = printable(shorten(review.text, self._text_width))
        if prediction.error is not None or prediction.score is None:
            self._line(str(self.rows + 1), "-", "-",
                       f"({printable(prediction.error or '')}) {shown}".rstrip())
        else:
            self._line(str(self.rows + 1), printable(prediction.label or ""),
                       f"{prediction.score:.3f}", shown)


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: C0 controls as their Unicode symbols (ESC →
    ␛), other controls, bidirectional overrides and lone surrogates as �.

    >>> printable("red \\x1b[31mtext\\x07")
    'red ␛[31mtext␇'
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if code < 0x20:
            out.append(chr(0x2400 + code))
        elif code == 0x7F:
            out.append("\u2421")
        elif ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs"):
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters, whitespace collapsed, ``…`` when cut.

    >>> shorten("Great  value\\nfor   money", 12)
    'Great value…'
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)].rstrip() + "…"


def format_row(cells: Sequence[str], widths: Sequence[int], align: str) -> str:
    """One line of a table: each cell padded to its width, ``<`` left or ``>`` right,
    two spaces between cells, no trailing space.

    >>> format_row(["a", "1.5"], [3, 5], "<>")
    'a      1.5'
    """
    parts = [f"{cell:{how}{width}}" for cell, width, how in zip(cells, widths, align, strict=True)]
    return "  ".join(parts).rstrip()


def render_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, align: str = "",
                 indent: int = 0) -> list[str]:
    """The lines of an aligned text table; the first column is left-aligned and the rest
    right-aligned unless ``align`` (one ``<`` or ``>`` per column) says otherwise.

    >>> print("\\n".join(render_table(["class", "f1"], [["negative", 0.91], ["positive", 0.9]])))
    class       f1
    negative  0.91
    positive   0.9
    """
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    n = max(len(row) for row in cells)
    cells = [row + [""] * (n - len(row)) for row in cells]
    align = (align or "<" + ">" * (n - 1)).ljust(n, ">")
    widths = [max(len(row[i]) for row in cells) for i in range(n)]
    return [" " * indent + format_row(row, widths, align) for row in cells]


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a Markdown table (a ``|`` inside a cell is escaped).

    >>> print("\\n".join(markdown_table(["class", "f1"], [["negative", 0.91]])))
    | class | f1 |
    | --- | --- |
    | negative | 0.91 |
    """
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(r) for r in rows)]


def make_writer(fmt: str, stream: TextIO, labels: Sequence[str], *,
                total: int | None = None, width: int | None = None,
                input_columns: bool = True, columns: Sequence[str] | None = None) -> Writer:
    """A writer for ``fmt`` (table, json, jsonl or csv).

    ``total`` sizes the table's # column; ``columns`` fixes a CSV header (the input's);
    ``input_columns=False`` writes only ``text`` and the prediction.
    """
    if fmt == "table":
        return TableWriter(stream, labels, total=total, width=width)
    if fmt == "csv":
        return CsvWriter(stream, labels, input_columns=input_columns, columns=columns)
    writers: Mapping[str, type[Writer]] = {"json": JsonWriter, "jsonl": JsonLinesWriter}
    if fmt not in writers:
        raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")
    return writers[fmt](stream, labels, input_columns=input_columns)
