"""Property tests of every input reader and of the CLI's round trips (issue 14).

Invariants, over arbitrary bytes, arbitrary Unicode (lone surrogates, controls,
zero-width and combining marks, U+2028/U+0085, very long strings), random CSV quoting and
line endings:

- reading raises nothing but :class:`edgesent.InputError` (the documented error);
- a well-formed file gives exactly one record per record written, texts unchanged;
- what ``edgesent predict --format json|jsonl|csv`` writes reads back as its input, one
  row per row, texts unchanged.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from edgesent import InputError
from edgesent.cli import main
from edgesent.inputs import FORMATS, RecordReader, ReviewReader
from edgesent.output import to_json
from edgesent.tokenization import repair_surrogates
from edgesent_export.data import ColumnSpec, read_reviews

# EDGESENT_FUZZ=10 runs ten times as many cases (a longer hunt than CI's).
SCALE = int(os.environ.get("EDGESENT_FUZZ", "1"))
READ = settings(max_examples=150 * SCALE, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CLI = settings(max_examples=25 * SCALE, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])
SUFFIXES = [".txt", ".csv", ".tsv", ".jsonl", ".json", ".parquet", ".jsonl.gz", ".csv.gz"]
LINE_ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])

# Characters that break naive readers, mixed into ordinary text.
HOSTILE = st.sampled_from([
    "\ud83d", "\udfff", "\x00", "\x1b[2J", "\x07", "\u200b", "\ufeff", "\u2028", "\u2029",
    "\x85", "\x0b", "\x0c", "\x1c", "e\u0301", "\u202e", "\"", "'", ",", "\t", "\\", "[", "{",
    "😀", "\U0010ffff", "ß", "İ",
])
TEXT = st.lists(st.one_of(st.text(max_size=20), HOSTILE), max_size=8).map("".join)
LONG_TEXT = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=5),
                      st.integers(1, 20_000))
ANY_TEXT = st.one_of(TEXT, LONG_TEXT)
NO_SURROGATES = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


def read_all(path: Path, **kwargs: object) -> list:
    with ReviewReader(path, **kwargs) as reader:  # type: ignore[arg-type]
        return list(reader)


# -- arbitrary bytes: only InputError, never another exception ------------------------------


@READ
@given(data=st.binary(max_size=2000), suffix=st.sampled_from(SUFFIXES),
       prefix=st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff",
                               b"\xff\xfe\x00\x00", b"\x1f\x8b", b"text\n", b"[", b"PAR1"]))
@example(data=b"\x00" * 8, suffix=".txt", prefix=b"")
@example(data=b"1" * 5000 + b"}", suffix=".jsonl", prefix=b'{"text": "a", "n": ')
def test_arbitrary_bytes_raise_only_input_error(data: bytes, suffix: str, prefix: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"r{suffix}"
        path.write_bytes(prefix + data)
        for read in (lambda: read_all(path), lambda: list(RecordReader(path)),
                     lambda: read_reviews(path, ColumnSpec(label=None))):
            try:
                read()
            except InputError as exc:
                assert str(exc).startswith(str(path)), exc  # says where
                assert "\n" not in str(exc)


@READ
@given(data=st.binary(max_size=500), fmt=st.sampled_from([f for f in FORMATS
                                                          if f != "parquet"]))
def test_arbitrary_bytes_on_stdin(data: bytes, fmt: str) -> None:
    try:
        with ReviewReader("-", fmt=fmt, stream=io.BytesIO(data)) as reader:
            list(reader)
    except InputError as exc:
        assert str(exc).startswith("<stdin>: ")


@READ
@given(data=st.binary(max_size=500))
def test_arbitrary_gzip_payloads(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.jsonl.gz"
        path.write_bytes(gzip.compress(data))
        with contextlib.suppress(InputError):
            read_all(path)


# -- well-formed files: one record per record, texts unchanged ------------------------------


def looks_like_utf16(head: bytes) -> bool:
    """What the reader takes for UTF-16 without a byte order mark (NULs alternating)."""
    return len(head) >= 4 and (head[1:4:2] == b"\0\0" or head[0:4:2] == b"\0\0")


def no_line_breaks(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


@READ
@given(lines=st.lists(ANY_TEXT.map(no_line_breaks), min_size=1, max_size=30),
       eol=LINE_ENDINGS, encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]),
       last_eol=st.booleans())
def test_plain_text_one_record_per_line(lines: list[str], eol: str, encoding: str,
                                        last_eol: bool) -> None:
    if lines[0].startswith("\ufeff"):  # a leading U+FEFF is a byte order mark, not text
        lines[0] = "x" + lines[0]
    if encoding == "utf-16" and lines[0].startswith("\x00"):
        lines[0] = "x" + lines[0]  # FF FE 00 00 is UTF-32's byte order mark, as the spec says
    if encoding != "utf-8" or any("\ud800" <= ch <= "\udfff" for ch in "".join(lines)):
        lines = [_no_surrogates(line) for line in lines]
    if encoding == "utf-8" and lines[0].startswith("\ufeff"):
        lines[0] = "x" + lines[0]
    body = eol.join(lines) + (eol if last_eol else "")
    if not body:
        return
    assume(not looks_like_utf16(body.encode(encoding)[:4]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.txt"
        path.write_bytes(body.encode(encoding))
        got = read_all(path)
    expected = lines if last_eol or lines[-1] or len(lines) == 1 else lines[:-1]
    assert [r.text for r in got] == expected
    assert [r.line for r in got] == list(range(1, len(expected) + 1))


def _no_surrogates(text: str) -> str:
    return repair_surrogates(text)


@READ
@given(rows=st.lists(st.tuples(ANY_TEXT, NO_SURROGATES), min_size=1, max_size=20),
       eol=LINE_ENDINGS, delimiter=st.sampled_from([",", "\t", ";"]),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_csv_one_review_per_row(rows: list[tuple[str, str]], eol: str, delimiter: str,
                                quoting: int, encoding: str) -> None:
    """Any CSV a careful writer produces (quotes around a field holding a line break)."""
    rows = [(_no_surrogates(text), other) for text, other in rows]
    out = io.StringIO(newline="")
    plain = csv.writer(out, delimiter=delimiter, lineterminator=eol, quoting=quoting)
    quoted = csv.writer(out, delimiter=delimiter, lineterminator=eol, quoting=csv.QUOTE_ALL)
    plain.writerow(["id", "text", "other"])
    for i, (text, other) in enumerate(rows):
        breaks = any(ch in cell for cell in (text, other) for ch in "\r\n")
        (quoted if breaks else plain).writerow([str(i), text, other])
    fmt = "tsv" if delimiter == "\t" else "csv"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.data"
        path.write_bytes(out.getvalue().encode(encoding))
        if delimiter == ";":  # not a delimiter edgesent reads: one column, read as such
            with pytest.raises(InputError):
                read_all(path, fmt=fmt, text_column="text")
            return
        got = read_all(path, fmt=fmt, text_column="text")
    assert [r.text for r in got] == [text for text, _ in rows]
    assert [r.fields["id"] for r in got] == [str(i) for i in range(len(rows))]
    assert [r.fields["other"] for r in got] == [other for _, other in rows]


@READ
@given(values=st.lists(st.one_of(ANY_TEXT, st.dictionaries(
           st.sampled_from(["id", "stars", "when", "meta"]), st.one_of(
               st.integers(), st.floats(allow_nan=False), st.none(), NO_SURROGATES,
               st.lists(st.integers(), max_size=3)), max_size=3).flatmap(
           lambda extra: ANY_TEXT.map(lambda t: {**extra, "text": t}))), min_size=1, max_size=20),
       eol=LINE_ENDINGS, blank_lines=st.booleans(), ascii_only=st.booleans(),
       array=st.booleans(), indent=st.sampled_from([None, 0, 2]))
def test_json_lines_and_arrays_one_record_per_value(values: list, eol: str, blank_lines: bool,
                                                    ascii_only: bool, array: bool,
                                                    indent: int | None) -> None:
    def dump(value: object, **kwargs: object) -> str:
        text = json.dumps(value, ensure_ascii=ascii_only, **kwargs)  # type: ignore[arg-type]
        # Raw lone surrogates cannot be UTF-8: a real writer escapes them.
        return "".join(f"\\u{ord(ch):04x}" if "\ud800" <= ch <= "\udfff" else ch for ch in text)

    if array:
        body = dump(values, indent=indent).replace("\n", eol)
    else:
        body = (eol + (eol if blank_lines else "")).join(dump(v) for v in values) + eol
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("r.json" if array else "r.jsonl")
        path.write_bytes(body.encode("utf-8"))
        got = read_all(path)
    # Two adjacent escaped lone surrogates read back as the one character they spell.
    values = [json.loads(dump(v)) for v in values]
    expected = [v if isinstance(v, str) else v["text"] for v in values]
    assert [r.text for r in got] == expected
    assert [dict(r.fields) for r in got] == [v if isinstance(v, dict) else {} for v in values]


# -- the CLI: round trips through its own output ----------------------------------------------


@pytest.fixture(scope="module")
def predict(tiny_bundle: Path) -> Callable[..., tuple[list[dict], str]]:
    """``edgesent predict ARGS -f FMT``: the rows it wrote, and the text itself."""

    def run(args: list[str], stdin: str | None = None,
            fmt: str = "jsonl") -> tuple[list[dict], str]:
        result = CliRunner().invoke(main, ["predict", "-f", fmt, "--model", str(tiny_bundle),
                                           *args], input=stdin)
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        text = result.stdout_bytes.decode("utf-8")  # .stdout turns "\r\n" into "\n"
        if fmt == "json":
            return json.loads(text), text
        if fmt == "csv":
            return list(csv.DictReader(io.StringIO(text, newline=""))), text
        return [json.loads(line) for line in text.split("\n") if line], text

    return run


@CLI
@given(texts=st.lists(ANY_TEXT, min_size=1, max_size=12),
       fmt=st.sampled_from(["json", "jsonl", "csv"]))
@example(texts=["ok \ud83d", "\u200b", "\x1b[2J", "a\u2028b", "x\r", "", "-"], fmt="csv")
def test_cli_output_reads_back_as_input(predict: Callable[..., tuple[list[dict], str]],
                                        texts: list[str], fmt: str) -> None:
    assume(texts != ["-"])  # a lone '-' means: read stdin
    first, written = predict(["--", *texts], fmt=fmt)
    assert len(first) == len(texts)
    # CSV cannot hold a lone surrogate (it becomes U+FFFD); JSON escapes it, and two
    # adjacent escapes read back as the one character they spell, as JSON defines.
    expected = [_no_surrogates(t) if fmt == "csv" else json.loads(to_json(t)) for t in texts]
    assert [r["text"] or "" for r in first] == expected
    for row in first:
        assert row.get("error") or row["label"] in ("negative", "positive")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"scored.{fmt}"
        path.write_bytes(written.encode("utf-8"))  # the output, byte for byte, as input
        again, _ = predict(["-i", str(path)], fmt=fmt)
    assert len(again) == len(texts)
    assert [r["text"] or "" for r in again] == expected
    labels = [r.get("label") or None for r in first]
    assert [r.get("pred_label") or None for r in again] == labels


@CLI
@given(lines=st.lists(ANY_TEXT.map(no_line_breaks).map(_no_surrogates), min_size=1,
                      max_size=12), eol=LINE_ENDINGS)
def test_cli_stdin_one_row_per_line(predict: Callable[..., tuple[list[dict], str]],
                                    lines: list[str], eol: str) -> None:
    if lines[0].startswith("\ufeff"):
        lines[0] = "x" + lines[0]
    body = eol.join(lines) + eol
    assume(not looks_like_utf16(body.encode("utf-8")[:4]))
    rows, _ = predict(["-"], stdin=body)
    assert [r["text"] for r in rows] == lines
