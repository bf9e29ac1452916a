"""Read reviews from CSV, TSV, JSON Lines or plain-text files (or stdin), one at a time.

Files are read line by line as bytes and decoded strictly, so a stray Latin-1 byte is
reported with its line and byte column instead of turning into mojibake, and a file of
any size streams in constant memory.

>>> with ReviewReader("reviews.csv", text_column="review") as reader:  # doctest: +SKIP
...     for review in reader:
...         print(review.line, review.text)
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from edgesent.errors import InputError

logger = logging.getLogger(__name__)

FORMATS = ("csv", "tsv", "jsonl", "txt")
SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl",
                  ".ndjson": "jsonl", ".json": "jsonl"}
# Column names tried, in order, when no text column is given (compared case-insensitively).
TEXT_COLUMN_GUESSES = ("text", "review", "review_text", "reviewtext", "review_body", "body",
                       "content", "comment", "sentence")
STDIN = "-"
_FIELD_LIMIT = 1 << 30  # csv's default (128 KiB per field) is too small for long reviews


@dataclass(frozen=True)
class Review:
    """One review and the (1-based) line of the input where its record starts."""

    text: str
    line: int


def detect_format(path: str | os.PathLike[str]) -> str:
    """Input format from the file suffix: csv, tsv, jsonl, or txt for anything else.

    >>> detect_format("reviews.tsv"), detect_format("reviews.ndjson"), detect_format("r")
    ('tsv', 'jsonl', 'txt')
    """
    return SUFFIX_FORMATS.get(Path(path).suffix.lower(), "txt")


def resolve_column(columns: Sequence[str], wanted: str | None, where: str) -> int:
    """Index of the review column: ``wanted`` (exact, then case-insensitive) or a guess.

    >>> resolve_column(["id", "Review", "stars"], None, "r.csv")
    1
    >>> resolve_column(["id", "text"], "txt", "r.csv")
    Traceback (most recent call last):
    ...
    edgesent.errors.InputError: r.csv: no column 'txt' (columns: id, text); did you mean 'text'?
    """
    names = [str(c).strip() for c in columns]
    lowered = [n.lower() for n in names]
    listing = ", ".join(names) if names else "none"
    if wanted is not None:
        if wanted in names:
            return names.index(wanted)
        if lowered.count(wanted.lower()) == 1:
            return lowered.index(wanted.lower())
        message = f"{where}: no column {wanted!r} (columns: {listing})"
        close = difflib.get_close_matches(wanted.lower(), lowered, n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {names[lowered.index(close[0])]!r}?"
        raise InputError(message)
    for guess in TEXT_COLUMN_GUESSES:
        if guess in lowered:
            return lowered.index(guess)
    if len(names) == 1:
        return 0
    raise InputError(f"{where}: cannot tell which column holds the reviews (columns: {listing}); "
                     "name it with --text-column")


class ReviewReader:
    """Iterate over the reviews of a file or of stdin (``"-"``), validating as it goes.

    Opening checks what can be checked up front (the file exists, is not empty, has the
    text column); each record is then read and checked when iterated. ``fmt`` defaults to
    :func:`detect_format` (plain text for stdin).
    """

    def __init__(self, source: str | os.PathLike[str], *, fmt: str | None = None,
                 text_column: str | None = None, stream: BinaryIO | None = None) -> None:
        self.is_stdin = str(source) == STDIN
        self.name = "<stdin>" if self.is_stdin else str(source)
        self.format = fmt or ("txt" if self.is_stdin else detect_format(source))
        if self.format not in FORMATS:
            raise InputError(f"{self.name}: unknown input format {self.format!r} "
                             f"(choose from {', '.join(FORMATS)})")
        if text_column is not None and self.format == "txt":
            raise InputError(f"{self.name}: plain text has no columns; a text column applies "
                             "to CSV, TSV and JSONL input")
        self.text_column = text_column
        self.path = None if self.is_stdin else Path(source)
        self._fh = stream if stream is not None else self._open()
        self._owns = stream is None
        self._lines = self._decoded_lines()
        self._records = self._parse()
        try:
            self._first = next(self._records, None)  # header and first-row errors surface now
        except BaseException:
            self.close()
            raise

    def _open(self) -> BinaryIO:
        assert self.path is not None
        try:
            if self.path.is_dir():
                raise InputError(f"{self.name}: is a directory, not a file of reviews")
            if self.path.stat().st_size == 0:
                raise InputError(f"{self.name}: the file is empty")
            return open(self.path, "rb")
        except FileNotFoundError:
            raise InputError(f"{self.name}: no such file") from None
        except PermissionError:
            raise InputError(f"{self.name}: permission denied") from None

    def __iter__(self) -> Iterator[Review]:
        if self._first is None:
            return
        first, self._first = self._first, None
        yield first
        yield from self._records

    def __enter__(self) -> ReviewReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns:
            self._fh.close()

    def estimate_rows(self) -> int | None:
        """Lines in the file (records, roughly), for a progress bar; None for stdin."""
        if self.path is None:
            return None
        count, last = 0, b"\n"
        with open(self.path, "rb") as fh:
            while block := fh.read(1 << 20):
                count += block.count(b"\n")
                last = block[-1:]
        count += last != b"\n"
        return max(count - (self.format in ("csv", "tsv")), 0)

    # -- parsing -------------------------------------------------------------------------

    def _decoded_lines(self) -> Iterator[tuple[int, str]]:
        seen = False
        for number, raw in enumerate(self._fh, start=1):
            seen = True
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = raw[exc.start : exc.start + 1].hex()
                raise InputError(f"{self.name}: line {number}, byte {exc.start + 1}: invalid "
                                 f"UTF-8 (byte 0x{bad}); save the file as UTF-8") from None
        if not seen:
            raise InputError(f"{self.name}: the input is empty")

    def _parse(self) -> Iterator[Review]:
        if self.format == "txt":
            return (Review(text.rstrip("\r\n"), number) for number, text in self._lines)
        if self.format == "jsonl":
            return self._jsonl()
        return self._delimited("\t" if self.format == "tsv" else ",")

    def _delimited(self, delimiter: str) -> Iterator[Review]:
        if csv.field_size_limit() < _FIELD_LIMIT:
            csv.field_size_limit(_FIELD_LIMIT)
        reader = csv.reader((text for _, text in self._lines), delimiter=delimiter,
                            strict=True)
        column, column_name, row = -1, "", 0
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    raise InputError(f"{self.name}: line {start}: a quoted field opened on "
                                     "this line is never closed") from None
                raise InputError(f"{self.name}: line {reader.line_num}: {exc}") from None
            if column < 0:  # the header
                if not any(field.strip() for field in fields):
                    raise InputError(f"{self.name}: line {start}: no header row (the first "
                                     "line must name the columns)")
                column = resolve_column(fields, self.text_column, self.name)
                column_name = fields[column].strip()
                continue
            if not fields:  # a blank line is not a record
                continue
            row += 1
            if len(fields) <= column:
                raise InputError(f"{self.name}: line {start} (row {row}): {len(fields)} "
                                 f"field(s), but column {column_name!r} is field {column + 1}")
            yield Review(fields[column], start)
        if row == 0:
            raise InputError(f"{self.name}: no reviews after the header row")

    def _jsonl(self) -> Iterator[Review]:
        key: str | None = None
        for number, line in self._lines:
            stripped = line.strip()
            if not stripped:
                continue
            where = f"{self.name}: line {number}"
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                if number == 1 and stripped.startswith("["):
                    raise InputError(f"{where}: looks like a JSON array; edgesent reads JSON "
                                     "Lines (one object or string per line)") from None
                column = exc.colno + len(line) - len(line.lstrip())
                raise InputError(f"{where}, column {column}: invalid JSON: {exc.msg}") from None
            if isinstance(value, dict):
                names = list(value)
                if key is None:
                    key = names[resolve_column(names, self.text_column, where)]
                value = value[key if key in value else names[resolve_column(names, key, where)]]
                if value is None:
                    value = ""
                if not isinstance(value, str):
                    raise InputError(f"{where}: {key!r} is a JSON {_json_type(value)}, "
                                     "expected a string")
            elif not isinstance(value, str):
                raise InputError(f"{where}: expected a JSON object or string, got a JSON "
                                 f"{_json_type(value)} (edgesent reads JSON Lines)")
            yield Review(value, number)


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def read_reviews(source: str | os.PathLike[str], *, fmt: str | None = None,
                 text_column: str | None = None) -> Iterator[str]:
    """The review texts of a file, in order (a generator; the file closes at the end).

    >>> list(read_reviews("reviews.txt"))  # doctest: +SKIP
    ['Great value', 'Broke after a week']
    """
    with ReviewReader(source, fmt=fmt, text_column=text_column) as reader:
        for review in reader:
            yield review.text
