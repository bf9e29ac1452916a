"""Write predictions as an aligned table (for people), JSON, JSON Lines or CSV.

Writers stream: each ``write`` emits one row at once, so a large file is never held in
memory. Rows align 1:1 with the inputs; a text that could not be classified (blank)
gives a row with an ``error`` field and no label.

>>> import io
>>> out = io.StringIO()
>>> writer = make_writer("jsonl", out, ["negative", "positive"])
>>> writer.write("   ", Prediction(None, None, {}, "empty text"))
>>> writer.close()
>>> out.getvalue()
'{"text": "   ", "error": "empty text"}\\n'
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from edgesent.classifier import Prediction

FORMATS = ("table", "json", "jsonl", "csv")
SUFFIX_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
                  ".txt": "table"}
DIGITS = 6  # decimals kept for probabilities in machine-readable output


def row_dict(text: str, prediction: Prediction) -> dict[str, Any]:
    """The object written for one review: text, label, score, scores (or text, error).

    >>> row_dict("ok", Prediction("positive", 0.8, {"negative": 0.2, "positive": 0.8}))
    {'text': 'ok', 'label': 'positive', 'score': 0.8, 'scores': {'negative': 0.2, 'positive': 0.8}}
    """
    if prediction.error is not None or prediction.score is None:
        return {"text": text, "error": prediction.error or "not classified"}
    return {"text": text, "label": prediction.label, "score": round(prediction.score, DIGITS),
            "scores": {k: round(v, DIGITS) for k, v in prediction.scores.items()}}


class Writer:
    """Base writer: ``write(text, prediction)`` per review, then ``close()`` once."""

    def __init__(self, stream: TextIO, labels: Sequence[str]) -> None:
        self.stream = stream
        self.labels = list(labels)
        self.rows = 0

    def write(self, text: str, prediction: Prediction) -> None:
        self._write(text, prediction)
        self.rows += 1

    def write_many(self, texts: Iterable[str], predictions: Iterable[Prediction]) -> None:
        for text, prediction in zip(texts, predictions, strict=True):
            self.write(text, prediction)

    def _write(self, text: str, prediction: Prediction) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output (the stream itself stays open)."""
        self.stream.flush()


class JsonLinesWriter(Writer):
    def _write(self, text: str, prediction: Prediction) -> None:
        self.stream.write(json.dumps(row_dict(text, prediction), ensure_ascii=False) + "\n")


class JsonWriter(Writer):
    """A JSON array, one object per line, valid JSON even when empty."""

    def _write(self, text: str, prediction: Prediction) -> None:
        self.stream.write("[\n  " if self.rows == 0 else ",\n  ")
        self.stream.write(json.dumps(row_dict(text, prediction), ensure_ascii=False))

    def close(self) -> None:
        self.stream.write("[]\n" if self.rows == 0 else "\n]\n")
        super().close()


class CsvWriter(Writer):
    """Columns: text, label, score, score_<label> for each label, error."""

    def __init__(self, stream: TextIO, labels: Sequence[str]) -> None:
        super().__init__(stream, labels)
        self._csv = csv.writer(stream, lineterminator="\n")
        self._csv.writerow(["text", "label", "score", *[f"score_{x}" for x in self.labels],
                            "error"])

    def _write(self, text: str, prediction: Prediction) -> None:
        row = row_dict(text, prediction)
        if "error" in row:
            self._csv.writerow([text, "", "", *["" for _ in self.labels], row["error"]])
            return
        scores = [row["scores"].get(label, "") for label in self.labels]
        self._csv.writerow([text, row["label"], row["score"], *scores, ""])


class TableWriter(Writer):
    """Aligned columns ``#  label  score  text``; long texts are shortened to fit."""

    def __init__(self, stream: TextIO, labels: Sequence[str], *, total: int | None = None,
                 width: int | None = None) -> None:
        super().__init__(stream, labels)
        self._index_width = max(len(str(total or 0)), 3)
        self._label_width = max([len("label"), *map(len, self.labels)])
        columns = width or shutil.get_terminal_size((100, 24)).columns
        used = self._index_width + self._label_width + len("score") + 6
        self._text_width = max(columns - used - 1, 20)
        self._line("#", "label", "score", "text")

    def _line(self, index: str, label: str, score: str, text: str) -> None:
        self.stream.write(f"{index:>{self._index_width}}  {label:<{self._label_width}}  "
                          f"{score:>5}  {text}".rstrip() + "\n")

    def _write(self, text: str, prediction: Prediction) -> None:
        shown = shorten(text, self._text_width)
        if prediction.error is not None or prediction.score is None:
            self._line(str(self.rows + 1), "-", "-", f"({prediction.error}) {shown}".rstrip())
        else:
            self._line(str(self.rows + 1), prediction.label or "", f"{prediction.score:.3f}",
                       shown)


def shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters, whitespace collapsed, ``…`` when cut.

    >>> shorten("Great  value\\nfor   money", 12)
    'Great value…'
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)].rstrip() + "…"


def make_writer(fmt: str, stream: TextIO, labels: Sequence[str], *,
                total: int | None = None, width: int | None = None) -> Writer:
    """A writer for ``fmt`` (table, json, jsonl or csv); ``total`` sizes the table's # column."""
    if fmt == "table":
        return TableWriter(stream, labels, total=total, width=width)
    writers = {"json": JsonWriter, "jsonl": JsonLinesWriter, "csv": CsvWriter}
    if fmt not in writers:
        raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")
    return writers[fmt](stream, labels)


def format_predictions(texts: Sequence[str], predictions: Sequence[Prediction], fmt: str,
                       labels: Sequence[str], *, width: int | None = None) -> str:
    """All rows at once, as a string.

    >>> print(format_predictions(["meh"], [Prediction("negative", 0.61,
    ...     {"negative": 0.61, "positive": 0.39})], "csv", ["negative", "positive"]))
    text,label,score,score_negative,score_positive,error
    meh,negative,0.61,0.61,0.39,
    <BLANKLINE>
    """
    import io

    buffer = io.StringIO()
    writer = make_writer(fmt, buffer, labels, total=len(texts), width=width)
    writer.write_many(texts, predictions)
    writer.close()
    return buffer.getvalue()
