"""Read reviews from CSV, TSV, JSON Lines, JSON, Parquet or plain-text files (or stdin).

The one reader of review files for both halves: ``edgesent predict`` reads with
:class:`ReviewReader`, the build half reads labelled rows with :class:`RecordReader` and
:func:`resolve_column`. Both give the one :class:`Review` type.

Files stream in constant memory (a JSON array is the exception: it is parsed whole).
Bytes are decoded strictly, line by line, so a stray Latin-1 byte is reported with its
line and column instead of turning into mojibake. A byte order mark selects UTF-8,
UTF-16 or UTF-32; gzip is recognised by its magic bytes. ``\\n``, ``\\r\\n`` and a lone
``\\r`` each end a line.

>>> import io
>>> data = io.BytesIO(b"id,review\\r1,Great value\\r2,Broke after a week\\r")
>>> with ReviewReader("-", fmt="csv", stream=data) as reader:
...     [(r.line, r.text, r.fields["id"]) for r in reader]
[(2, 'Great value', '1'), (3, 'Broke after a week', '2')]
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import io
import json
import os
import stat
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

from edgesent.errors import InputError

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "txt")
SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl",
                  ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet",
                  ".txt": "txt"}
# Column names tried, in order, when no text column is given (compared case-insensitively).
TEXT_COLUMN_GUESSES = ("text", "review", "review_text", "reviewtext", "review_body", "body",
                       "content", "comment", "sentence")
STDIN = "-"
PARQUET_HINT = 'reading Parquet needs pyarrow: pip install pyarrow (or "edgesent[export]")'
_FIELD_LIMIT = 1 << 30  # csv's default (128 KiB per field) is too small for long reviews
_BLOCK = 1 << 16
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Review:
    """One review: its text, and what the file said about it.

    ``label``, ``source`` and ``domain`` are filled by the build half's labelled reader;
    ``line`` is the (1-based) line, or Parquet row, where the record starts (0 when the
    text did not come from a file); ``fields`` holds the record's columns as read, for
    writing them back beside the prediction. Neither ``line`` nor ``fields`` takes part
    in equality.

    >>> Review("Great value", "positive") == Review("Great value", "positive", line=7)
    True
    """

    text: str
    label: str | None = None
    source: str = ""
    domain: str | None = None
    line: int = field(default=0, compare=False)
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


class Record(NamedTuple):
    """One record of a file: where it starts and its value, a bare text or the columns."""

    line: int
    value: str | dict[str, Any]


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def detect_format(path: str | os.PathLike[str]) -> str:
    """Input format from the file suffix (``.gz`` looked through); txt when unknown.

    >>> [detect_format(p) for p in ("r.tsv", "r.ndjson", "r.jsonl.gz", "r.parquet", "r")]
    ['tsv', 'jsonl', 'jsonl', 'parquet', 'txt']
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return SUFFIX_FORMATS.get(suffixes[-1], "txt") if suffixes else "txt"


def resolve_column(columns: Sequence[str], wanted: str | None, where: str, *,
                   role: str = "", guess: bool = True) -> int:
    """Index of a column: ``wanted`` (exact, then case-insensitive), else a guess.

    ``role`` names the column in messages ("label" → "no label column ..."); with
    ``guess``, a ``wanted`` of None tries :data:`TEXT_COLUMN_GUESSES`, then a lone column.

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
    noun = f"{role} column" if role else "column"
    if wanted is not None:
        if wanted in columns:
            return list(columns).index(wanted)
        if wanted.strip() in names:
            return names.index(wanted.strip())
        if lowered.count(wanted.strip().lower()) == 1:
            return lowered.index(wanted.strip().lower())
        message = f"{where}: no {noun} {wanted!r} (columns: {listing})"
        close = difflib.get_close_matches(wanted.lower(), lowered, n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {names[lowered.index(close[0])]!r}?"
        raise InputError(message)
    if guess:
        for candidate in TEXT_COLUMN_GUESSES:
            if candidate in lowered:
                return lowered.index(candidate)
        if len(names) == 1:
            return 0
    raise InputError(f"{where}: cannot tell which column holds the reviews (columns: {listing}); "
                     "name it with --text-column")


def join_title(title: str | None, text: str) -> str:
    """A review's title and its text as the one text the model reads, joined the way the
    build half trains on titled sources: ``"<title>. <text>"``; the title alone when the
    text is blank, the text unchanged when there is no title.

    >>> join_title("Broke in a week", "Sent it back.")
    'Broke in a week. Sent it back.'
    >>> join_title(None, "Sent it back."), join_title(" Great ", "  ")
    ('Sent it back.', 'Great')
    """
    title = (title or "").strip()
    if not title:
        return text
    body = text.strip()
    return f"{title}. {body}" if body else title


class RecordReader:
    """The records of a file or of stdin (``"-"``), in order, validated as they are read.

    ``fmt`` defaults to :func:`detect_format` (plain text for stdin). Opening checks what
    can be checked up front (the file exists and is not empty, the encoding); a CSV
    header is read with the first record. Every problem raises :class:`InputError`
    naming the input, the line (or Parquet row) and, where it helps, the column.

    >>> import io
    >>> list(RecordReader("-", fmt="jsonl", stream=io.BytesIO(b'{"text": "ok"}\\n\\n"fine"\\n')))
    [Record(line=1, value={'text': 'ok'}), Record(line=3, value='fine')]
    """

    def __init__(self, source: str | os.PathLike[str], *, fmt: str | None = None,
                 stream: BinaryIO | None = None) -> None:
        self.is_stdin = str(source) == STDIN
        self.name = "<stdin>" if self.is_stdin else str(source)
        self.format = fmt or ("txt" if self.is_stdin else detect_format(source))
        if self.format not in FORMATS:
            raise InputError(f"{self.name}: unknown input format {self.format!r} "
                             f"(choose from {', '.join(FORMATS)})")
        self.path = None if self.is_stdin else Path(source)
        self.columns: list[str] | None = None  # a CSV/TSV header, once read
        self.gzipped = False
        self.regular = False  # a regular file (not a pipe or a device), once opened
        self.encoding = "utf-8"
        self._raw: BinaryIO = stream if stream is not None else self._open()
        self._owns = stream is None
        try:
            self._stream = self._sniff()
        except BaseException:
            self.close()
            raise

    @property
    def unit(self) -> str:
        """What a record's position counts: ``line`` (``row`` for Parquet)."""
        return "row" if self.format == "parquet" else "line"

    def where(self, line: int) -> str:
        """``"<name>: line <n>"``, the start of a message about one record."""
        return f"{self.name}: {self.unit} {line}"

    def _open(self) -> BinaryIO:
        assert self.path is not None
        try:
            info = self.path.stat()
            if stat.S_ISDIR(info.st_mode):
                raise InputError(f"{self.name}: is a directory, not a file of reviews")
            # A pipe (``-i <(zcat r.gz)``) or a device reports size 0: only a regular file
            # is known to be empty, and only a regular file may be read twice (estimate_rows).
            self.regular = stat.S_ISREG(info.st_mode)
            if self.regular and info.st_size == 0:
                raise InputError(f"{self.name}: the file is empty")
            return open(self.path, "rb")
        except FileNotFoundError:
            raise InputError(f"{self.name}: no such file") from None
        except PermissionError:
            raise InputError(f"{self.name}: permission denied") from None
        except OSError as exc:
            raise InputError(f"{self.name}: cannot read ({exc.strerror or exc})") from None

    def _sniff(self) -> _Readable:
        """The decompressed byte stream, positioned after any byte order mark."""
        if self.format == "parquet":
            return self._raw
        stream: _Readable = _Guarded(self._raw, self.name)
        head = _read_at_least(stream, 4)
        if head.startswith(_GZIP_MAGIC):
            self.gzipped = True
            unzipped = gzip.GzipFile(fileobj=_Prefixed(head, stream), mode="rb")  # type: ignore[call-overload]
            stream = _Guarded(unzipped, self.name)
            head = _read_at_least(stream, 4)
        if not head:
            raise InputError(f"{self.name}: the input is empty")
        for bom, encoding in _BOMS:
            if head.startswith(bom):
                self.encoding = encoding
                head = head[len(bom):]
                break
        else:
            if len(head) >= 4 and (head[1::2] == b"\0\0" or head[0::2] == b"\0\0"):
                raise InputError(f"{self.name}: looks like UTF-16 without a byte order mark; "
                                 "save the file as UTF-8")
        stream = _Prefixed(head, stream)
        if self.encoding != "utf-8":
            stream = _Transcoded(stream, self.encoding, self.name)
        return stream

    def __iter__(self) -> Iterator[Record]:
        if self.format == "txt":
            return (Record(n, _strip_eol(text)) for n, text in self.lines())
        if self.format in ("jsonl", "json"):
            return self._json()
        if self.format == "parquet":
            return self._parquet()
        return self._delimited("\t" if self.format == "tsv" else ",")

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns:
            self._raw.close()

    def estimate_rows(self) -> int | None:
        """About how many records the file holds, for a progress bar; None when unknown."""
        if self.path is None or self.gzipped or not self.regular:
            return None
        if self.format == "parquet":
            try:
                import pyarrow.parquet as pq

                return int(pq.ParquetFile(self.path).metadata.num_rows)
            except Exception:  # an estimate only; reading reports the real problem
                return None
        count, last = 0, b"\n"
        with open(self.path, "rb") as fh:
            while block := fh.read(1 << 20):
                count += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
                last = block[-1:]
        count += last not in (b"\n", b"\r")
        return max(count - (self.format in ("csv", "tsv")), 0)

    # -- parsing -------------------------------------------------------------------------

    def lines(self) -> Iterator[tuple[int, str]]:
        """``(line number, text with its line ending)`` for each line of a text input."""
        for number, raw in enumerate(_raw_lines(self._stream), start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                column = len(raw[: exc.start].decode("utf-8")) + 1
                bad = raw[exc.start : exc.start + 1].hex()
                raise InputError(f"{self.name}: line {number}, column {column}: invalid "
                                 f"UTF-8 (byte 0x{bad}); save the file as UTF-8") from None

    def _delimited(self, delimiter: str) -> Iterator[Record]:
        if csv.field_size_limit() < _FIELD_LIMIT:
            csv.field_size_limit(_FIELD_LIMIT)
        reader = csv.reader((text for _, text in self.lines()), delimiter=delimiter,
                            strict=True)
        names: list[str] = []
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise InputError(self._csv_message(exc, start, reader.line_num)) from None
            if self.columns is None:  # the header
                if not any(name.strip() for name in fields):
                    raise InputError(f"{self.name}: line {start}: no header row (the first "
                                     "line must name the columns)")
                self.columns = names = unique_names(fields)
                continue
            if not fields:  # a blank line is not a record
                continue
            if len(fields) > len(names):
                names = unique_names(
                    [*names, *(f"column_{i}" for i in range(len(names) + 1, len(fields) + 1))])
            yield Record(start, dict(zip(names, fields, strict=False)))
        if self.columns is None:
            raise InputError(f"{self.name}: no header row (the input holds only blank lines)")

    def _csv_message(self, exc: csv.Error, start: int, line: int) -> str:
        text = str(exc)
        if "unexpected end of data" in text:
            return f"{self.name}: line {start}: a quoted field opened on this line is never closed"
        if "expected after" in text:
            return (f"{self.name}: line {line}: text after a closing quote ({text}); quote the "
                    "whole field and double any quote inside it")
        return f"{self.name}: line {line}: malformed {self.format.upper()} ({text})"

    def _json(self) -> Iterator[Record]:
        lines = self.lines()
        for number, line in lines:
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("["):
                yield from self._json_array(number, line, lines)
                return
            yield Record(number, self._json_value(line, number))
            break
        for number, line in lines:
            if line.strip():
                yield Record(number, self._json_value(line, number))

    def _json_value(self, line: str, number: int) -> str | dict[str, Any]:
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{self.name}: line {number}, column {exc.colno}: invalid JSON: "
                             f"{exc.msg}") from None
        except ValueError as exc:  # e.g. an integer of more than 4,300 digits
            raise InputError(f"{self.name}: line {number}: invalid JSON: {exc}") from None
        except RecursionError:
            raise InputError(f"{self.name}: line {number}: JSON nested too deeply") from None
        return self._checked(value, f"{self.name}: line {number}",
                             "(edgesent reads JSON Lines: one object or string per line)")

    def _checked(self, value: Any, where: str, hint: str) -> str | dict[str, Any]:
        if value is None:
            return ""
        if isinstance(value, str | dict):
            return value
        raise InputError(f"{where}: expected a JSON object or string, got a JSON "
                         f"{type_name(value)} {hint}")

    def _json_array(self, first: int, line: str, rest: Iterator[tuple[int, str]]
                    ) -> Iterator[Record]:
        """Elements of one JSON array (edgesent's own ``--format json`` output reads back)."""
        parts, starts = [line], [0]
        for _, more in rest:
            starts.append(starts[-1] + len(parts[-1]))
            parts.append(more)
        doc = "".join(parts)
        decoder = json.JSONDecoder()

        def fail(message: str, pos: int) -> InputError:
            line_no = first + _line_index(starts, pos)
            column = pos - starts[_line_index(starts, pos)] + 1
            return InputError(f"{self.name}: line {line_no}, column {column}: {message}")

        pos = doc.index("[") + 1
        expect_value, count = True, 0
        while True:
            pos = _skip_space(doc, pos)
            if pos >= len(doc):
                raise fail("invalid JSON: the array is never closed", len(doc) - 1)
            if doc[pos] == "]" and (count == 0 or not expect_value):
                pos += 1
                break
            if not expect_value:
                if doc[pos] != ",":
                    raise fail("invalid JSON: expected ',' or ']' between array elements", pos)
                pos, expect_value = pos + 1, True
                continue
            try:
                value, end = decoder.raw_decode(doc, pos)
            except json.JSONDecodeError as exc:
                raise fail(f"invalid JSON: {exc.msg}", exc.pos) from None
            except ValueError as exc:
                raise fail(f"invalid JSON: {exc}", pos) from None
            except RecursionError:
                raise fail("JSON nested too deeply", pos) from None
            line_no = first + _line_index(starts, pos)
            yield Record(line_no, self._checked(value, f"{self.name}: line {line_no}",
                                                "(a JSON array of objects or strings)"))
            pos, expect_value, count = end, False, count + 1
        pos = _skip_space(doc, pos)
        if pos < len(doc):
            raise fail("extra data after the JSON array (one array per file, or JSON Lines)",
                       pos)

    def _parquet(self) -> Iterator[Record]:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ImportError(PARQUET_HINT) from exc
        source: Any = self.path if self.path is not None else io.BytesIO(self._raw.read())
        try:
            table = pq.ParquetFile(source)
            self.columns = list(table.schema_arrow.names)
            row = 0
            for batch in table.iter_batches(batch_size=4096):
                for values in batch.to_pylist():
                    row += 1
                    yield Record(row, values)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{self.name}: not a readable Parquet file ({exc})") from None


class ReviewReader:
    """The reviews of a file or of stdin (``"-"``), one :class:`Review` per record.

    The text column is ``text_column`` or a guess (see :func:`resolve_column`); with
    ``title_column``, each record's title is joined before its text (:func:`join_title`;
    a record without one keeps its text). A record's columns ride along in
    :attr:`Review.fields`. Opening reads the header and the first record, so a wrong
    column or a broken first line fails at once; later records are checked as they are
    iterated.

    >>> import io
    >>> with ReviewReader("-", fmt="jsonl", stream=io.BytesIO(b'{"id": 7, "Review": "ok"}')) as r:
    ...     [(review.text, dict(review.fields)) for review in r]
    [('ok', {'id': 7, 'Review': 'ok'})]
    """

    def __init__(self, source: str | os.PathLike[str], *, fmt: str | None = None,
                 text_column: str | None = None, stream: BinaryIO | None = None,
                 title_column: str | None = None) -> None:
        self._records = RecordReader(source, fmt=fmt, stream=stream)
        self.name, self.format = self._records.name, self._records.format
        self.is_stdin, self.path = self._records.is_stdin, self._records.path
        if (text_column is not None or title_column is not None) and self.format == "txt":
            self._records.close()
            noun = "a text column" if title_column is None else "a title column"
            raise InputError(f"{self.name}: plain text has no columns; {noun} applies "
                             "to CSV, TSV, JSON and Parquet input")
        self.text_column = text_column
        self.title_column = title_column
        self.key: str | None = None  # the column that holds the text, once known
        self.title_key: str | None = None  # the column that holds the title, once known
        self._reviews = self._read()
        try:
            self._first = next(self._reviews, None)  # header and first-row errors surface now
        except BaseException:
            self.close()
            raise

    @property
    def columns(self) -> list[str] | None:
        """The header of a CSV/TSV/Parquet input (None for other formats)."""
        return self._records.columns

    def __iter__(self) -> Iterator[Review]:
        if self._first is None:
            return
        first, self._first = self._first, None
        yield first
        yield from self._reviews

    def __enter__(self) -> ReviewReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._records.close()

    def estimate_rows(self) -> int | None:
        """About how many reviews the input holds, for a progress bar; None when unknown."""
        return self._records.estimate_rows()

    def _read(self) -> Iterator[Review]:
        records = self._records
        count = 0
        for record in records:
            count += 1
            value = record.value
            if isinstance(value, str):
                yield Review(value, line=record.line)
                continue
            # A header names the columns once for the file; JSON names them per line.
            where = self.name if records.columns is not None else records.where(record.line)
            if self.key is None:
                names = records.columns or list(value)
                self.key = names[resolve_column(names, self.text_column, where)]
                if self.title_column is not None:
                    self.title_key = names[resolve_column(names, self.title_column, where,
                                                          role="title", guess=False)]
            key = self.key if self.key in value else None
            if key is None:
                names = list(value)
                try:
                    key = names[resolve_column(names, self.key, where)]
                except InputError as exc:
                    raise self._short_row(exc, record, value) from None
            text = value[key]
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise InputError(f"{records.where(record.line)}: {key!r} is a {self._kind} "
                                 f"{type_name(text)}, "
                                 "expected a string")
            if self.title_key is not None:
                title = value.get(self.title_key)
                text = join_title(None if title is None else str(title), text)
            yield Review(text, line=record.line, fields=value)
        if count == 0:
            if records.columns is not None:
                raise InputError(f"{self.name}: no reviews after the header row")
            raise InputError(f"{self.name}: the input holds no reviews")

    @property
    def _kind(self) -> str:
        return {"parquet": "Parquet", "csv": "CSV", "tsv": "TSV"}.get(self.format, "JSON")

    def _short_row(self, exc: InputError, record: Record, value: dict[str, Any]) -> InputError:
        columns = self._records.columns
        if columns is None or self.key not in columns:
            return exc
        return InputError(f"{self.name}: line {record.line}: {len(value)} field(s), but "
                          f"column {self.key!r} is field {columns.index(self.key) + 1}")


def read_reviews(source: str | os.PathLike[str], *, fmt: str | None = None,
                 text_column: str | None = None) -> Iterator[str]:
    """The review texts of a file, in order (a generator; the file closes at the end).

    >>> list(read_reviews("reviews.txt"))  # doctest: +SKIP
    ['Great value', 'Broke after a week']
    """
    with ReviewReader(source, fmt=fmt, text_column=text_column) as reader:
        for review in reader:
            yield review.text


def unique_names(names: Sequence[str]) -> list[str]:
    """Column names with repeats made unique (``a, a`` → ``a, a_2``), order kept.

    >>> unique_names(["id", "text", "id", "id_2"])
    ['id', 'text', 'id_3', 'id_2']
    """
    taken = set(names)
    seen: set[str] = set()
    out = []
    for name in names:
        if name in seen:
            n = 2
            while f"{name}_{n}" in taken:
                n += 1
            name = f"{name}_{n}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


def type_name(value: object) -> str:
    """The JSON name of a value's type (``number``, ``array``, ...), else its Python name."""
    names = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object",
             type(None): "null"}
    return names.get(type(value), type(value).__name__)


# -- bytes to lines -------------------------------------------------------------------------


def _raw_lines(stream: _Readable) -> Iterator[bytes]:
    """Lines of a byte stream with their endings; ``\n``, ``\r\n`` and a lone ``\r`` end one."""
    parts: list[bytes] = []  # an unfinished line, or one ending in \r (half of \r\n?)
    while block := stream.read(_BLOCK):
        if b"\n" not in block and b"\r" not in block:
            parts.append(block)  # no line ends here: no copying of a long line
            continue
        if parts:
            parts.append(block)
            block = b"".join(parts)
        lines = block.splitlines(keepends=True)  # bytes split at \n, \r\n and \r only
        parts = [] if lines[-1].endswith(b"\n") else [lines.pop()]
        yield from lines
    if parts:
        yield from b"".join(parts).splitlines(keepends=True)


def _strip_eol(text: str) -> str:
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text[-1:] in "\r\n" else text


def _line_index(starts: list[int], pos: int) -> int:
    import bisect

    return max(bisect.bisect_right(starts, pos) - 1, 0)


def _skip_space(doc: str, pos: int) -> int:
    while pos < len(doc) and doc[pos] in " \t\r\n":
        pos += 1
    return pos


def _read_at_least(stream: _Readable, n: int) -> bytes:
    data = b""
    while len(data) < n and (more := stream.read(n - len(data))):
        data += more
    return data


class _Prefixed:
    """A byte stream with ``head`` (bytes already read from it) put back in front."""

    def __init__(self, head: bytes, stream: _Readable) -> None:
        self.head, self.stream = head, stream

    def read(self, size: int = -1, /) -> bytes:
        if self.head:
            if size < 0:
                out, self.head = self.head + self.stream.read(), b""
                return out
            out, self.head = self.head[:size], self.head[size:]
            return out
        return self.stream.read(size)


class _Guarded:
    """Reads that turn a broken gzip stream or a read failure into an InputError."""

    def __init__(self, stream: _Readable, name: str) -> None:
        self.stream, self.name = stream, name

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self.stream.read(size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise InputError(f"{self.name}: not a valid gzip file ({exc or 'truncated'})") from None
        except OSError as exc:
            raise InputError(f"{self.name}: cannot read ({exc.strerror or exc})") from None


class _Transcoded:
    """UTF-16/UTF-32 bytes re-encoded as UTF-8, bad code units reported by line and column."""

    def __init__(self, stream: _Readable, encoding: str, name: str) -> None:
        self.stream, self.encoding, self.name = stream, encoding, name
        self.decoder = codecs.getincrementaldecoder(encoding)("strict")
        self.line, self.column = 1, 1  # where the next decoded character sits

    def read(self, size: int = -1, /) -> bytes:
        while True:
            block = self.stream.read(size if size > 0 else _BLOCK)
            try:
                text = self.decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                good = bytes(exc.object[: exc.start]).decode(self.encoding, "replace")
                self._advance(good)
                name = self.encoding.upper().replace("-LE", "").replace("-BE", "")
                raise InputError(f"{self.name}: line {self.line}, column {self.column}: invalid "
                                 f"{name} ({exc.reason}); save the file as UTF-8") from None
            self._advance(text)
            if text or not block:
                return text.encode("utf-8", "surrogatepass")

    def _advance(self, text: str) -> None:
        breaks = text.count("\n") + text.count("\r") - text.count("\r\n")
        if breaks:
            self.line += breaks
            self.column = len(text) - max(text.rfind("\n"), text.rfind("\r"))
        else:
            self.column += len(text)
