"""Reading reviews from files and stdin, and the errors bad files give."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from edgesent import InputError
from edgesent.inputs import (
    RecordReader,
    Review,
    ReviewReader,
    detect_format,
    read_reviews,
    resolve_column,
    unique_names,
)


def write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def reviews(path: Path, **kwargs: object) -> list[Review]:
    with ReviewReader(path, **kwargs) as reader:
        return list(reader)


def test_plain_text_keeps_blank_lines_and_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "r.txt", "Great value\r\n\nBroke after a week\n   \nok")
    got = reviews(path)
    assert [r.text for r in got] == ["Great value", "", "Broke after a week", "   ", "ok"]
    assert [r.line for r in got] == [1, 2, 3, 4, 5]


def test_csv_guesses_the_review_column(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", '\ufeffid,Review,stars\n1,"Great, really",5\n'
                                     '2,"Two\nlines",1\n\n3,,3\n')
    got = reviews(path)
    assert [r.text for r in got] == ["Great, really", "Two\nlines", ""]
    assert [r.line for r in got] == [2, 3, 6]


def test_tsv_and_explicit_column(tmp_path: Path) -> None:
    path = write(tmp_path / "r.tsv", "body\tsummary\nlong text one\tshort\nlong two\tbrief\n")
    assert [r.text for r in reviews(path)] == ["long text one", "long two"]
    assert [r.text for r in reviews(path, text_column="summary")] == ["short", "brief"]
    assert [r.text for r in reviews(path, text_column="SUMMARY")] == ["short", "brief"]


def test_jsonl_objects_strings_and_nulls(tmp_path: Path) -> None:
    rows = [{"id": 1, "text": "Love it"}, {"id": 2, "text": None}, {"text": "Meh", "x": 1}]
    lines = [json.dumps(row) for row in rows]
    path = write(tmp_path / "r.jsonl", "\n".join([lines[0], "", lines[1], lines[2]]) + "\n")
    got = reviews(path)
    assert [r.text for r in got] == ["Love it", "", "Meh"]
    assert [r.line for r in got] == [1, 3, 4]
    strings = write(tmp_path / "s.jsonl", '"first"\n"second"\n')
    assert [r.text for r in reviews(strings)] == ["first", "second"]


def test_stdin_stream(tmp_path: Path) -> None:
    stream = io.BytesIO(b"one\n\ntwo\n")
    with ReviewReader("-", stream=stream) as reader:
        assert reader.name == "<stdin>" and reader.format == "txt"
        assert [r.text for r in reader] == ["one", "", "two"]
        assert reader.estimate_rows() is None
    csv_stream = io.BytesIO(b"text\nhello\n")
    assert [r.text for r in ReviewReader("-", fmt="csv", stream=csv_stream)] == ["hello"]


def test_invalid_utf8_names_line_and_byte(tmp_path: Path) -> None:
    path = write(tmp_path / "r.txt", b"fine\nalso fine\ncaf\xe9 au lait\n")
    with pytest.raises(InputError) as info:
        reviews(path)
    assert str(info.value) == (f"{path}: line 3, column 4: invalid UTF-8 (byte 0xe9); "
                               "save the file as UTF-8")
    after_accents = write(tmp_path / "a.txt", "ok\nnaïve ".encode() + b"\xff\n")
    with pytest.raises(InputError, match=r"line 2, column 7: invalid UTF-8 \(byte 0xff\)"):
        reviews(after_accents)  # the column counts characters, not bytes


def test_errors_surface_lazily_after_good_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", b"text\n" + b"good\n" * 5 + b"bad \xff\n")
    reader = ReviewReader(path)  # opening reads only the header and the first row
    iterator = iter(reader)
    assert [next(iterator).text for _ in range(5)] == ["good"] * 5
    with pytest.raises(InputError, match=r"line 7, column 5"):
        next(iterator)
    reader.close()


def test_missing_column_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "id,review_text,stars\n1,nice,5\n")
    with pytest.raises(InputError) as info:
        reviews(path, text_column="review_txt")
    assert str(info.value) == (f"{path}: no column 'review_txt' (columns: id, review_text, "
                               "stars); did you mean 'review_text'?")
    with pytest.raises(InputError, match=r"no column 'zzz' \(columns: id, review_text, stars\)$"):
        reviews(path, text_column="zzz")


def test_unguessable_column(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "a,b\n1,2\n")
    with pytest.raises(InputError, match=r"cannot tell which column .* --text-column"):
        reviews(path)
    single = write(tmp_path / "s.csv", "whatever\nthe review\n")
    assert [r.text for r in reviews(single)] == ["the review"]


def test_jsonl_missing_key_on_a_later_line(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", '{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(InputError, match=r"line 2: no column 'text' .*did you mean 'txt'"):
        reviews(path)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.txt", b"", "the file is empty"),
    ("empty.csv", b"", "the file is empty"),
    ("header.csv", b"text,stars\n", "no reviews after the header row"),
    ("short.csv", b"id,stars,text\n1,5,ok\n2,4\n", "line 3: 2 field(s), but column "
                                                   "'text' is field 3"),
    ("bad.jsonl", b'{"text": "a"}\n{"text": "b",}\n', "line 2, column 14: invalid JSON"),
    ("array.json", b'[\n {"text": "a"}\n {"text": "b"}]\n', "line 3, column 2: invalid JSON: "
                                                        "expected ',' or ']'"),
    ("open.json", b'[{"text": "a"},\n', "the array is never closed"),
    ("extra.json", b'["a"]\n["b"]\n', "line 2, column 1: extra data after the JSON array"),
    ("numbers.json", b'["a", 5]', "line 1: expected a JSON object or string, got a JSON number"),
    ("deep.jsonl", b"[" * 100_000, "JSON nested too deeply"),
    ("blank.jsonl", b"\n  \n", "the input holds no reviews"),
    ("bigint.jsonl", b'{"text": "a", "n": ' + b"1" * 5000 + b"}", "line 1: invalid JSON: "
                                                                 "Exceeds the limit"),
    ("bigint.json", b'[{"text": "a", "n": ' + b"1" * 5000 + b"}]", "line 1, column 2: "
                                                                  "invalid JSON: Exceeds"),
    ("gzip.jsonl.gz", b"\x1f\x8b\x08\x00garbage", "not a valid gzip file"),
    ("utf16.txt", "no byte order mark".encode("utf-16-le"), "looks like UTF-16 without a byte "
                                                            "order mark"),
    ("surrogate.txt", b"\xff\xfeo\x00k\x00\n\x00\x00\xd8x\x00", "line 2, column 1: invalid "
                                                                   "UTF-16"),
    ("number.jsonl", b'{"text": 5}\n', "line 1: 'text' is a JSON number, expected a string"),
    ("list.jsonl", b'"a"\n["a", "b"]\n', "line 2: expected a JSON object or string, got a "
                                          "JSON array"),
    ("quote.csv", b'text\nfine\n"unterminated\nmore\n', "line 3: a quoted field opened on "
                                                       "this line is never closed"),
    ("junk.csv", b'text\n"closed"junk\n', "line 2: text after a closing quote"),
])
def test_bad_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(InputError) as info:
        reviews(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        ReviewReader(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="is a directory"):
        ReviewReader(tmp_path)


def test_empty_stdin() -> None:
    with pytest.raises(InputError, match="<stdin>: the input is empty"):
        ReviewReader("-", stream=io.BytesIO(b""))


def test_text_column_needs_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "r.txt", "a\n")
    with pytest.raises(InputError, match="plain text has no columns"):
        ReviewReader(path, text_column="text")
    with pytest.raises(InputError, match="unknown input format 'xml'"):
        ReviewReader(path, fmt="xml")


def test_long_csv_field(tmp_path: Path) -> None:
    text = "word " * 100_000  # beyond csv's default 128 KiB field limit
    path = write(tmp_path / "r.csv", f"text\n{text}\nshort\n")
    assert [len(t) for t in read_reviews(path)] == [len(text), len("short")]


def test_detect_format_and_estimate_rows(tmp_path: Path) -> None:
    assert [detect_format(n) for n in ("a.CSV", "a.tsv", "a.jsonl", "a.json", "a.txt", "a")] \
        == ["csv", "tsv", "jsonl", "json", "txt", "txt"]
    with ReviewReader(write(tmp_path / "r.csv", "text\na\nb\nc")) as reader:
        assert reader.estimate_rows() == 3
    with ReviewReader(write(tmp_path / "r.txt", "a\nb\n")) as reader:
        assert reader.estimate_rows() == 2


def test_resolve_column_prefers_known_names() -> None:
    assert resolve_column(["stars", "content", "text"], None, "x") == 2
    assert resolve_column(["Text "], "text", "x") == 0


def test_cr_only_line_endings_end_records(tmp_path: Path) -> None:
    """Old Mac files: each CR ends a line, in plain text and in CSV (issue 14, item 6)."""
    txt = write(tmp_path / "m.txt", b"Great value\rAwful product\rLove it\r")
    assert [(r.line, r.text) for r in reviews(txt)] == [
        (1, "Great value"), (2, "Awful product"), (3, "Love it")]
    csv_file = write(tmp_path / "m.csv", b'id,text\r1,"two\rlines"\r2,plain\r')
    assert [(r.line, r.text) for r in reviews(csv_file)] == [(2, "two\rlines"), (4, "plain")]
    mixed = write(tmp_path / "x.txt", b"a\r\nb\rc\nd")
    assert [r.text for r in reviews(mixed)] == ["a", "b", "c", "d"]
    with ReviewReader(txt) as reader:
        assert reader.estimate_rows() == 3


def test_cr_at_a_block_boundary(tmp_path: Path) -> None:
    first = "x" * (65536 - 1)  # the \r is the block's last byte, its \n the next block's first
    path = write(tmp_path / "b.txt", f"{first}\r\nsecond\r\n")
    assert [r.text for r in reviews(path)] == [first, "second"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32", "utf-32-be"])
def test_byte_order_marks_select_the_encoding(tmp_path: Path, encoding: str) -> None:
    """UTF-16 and UTF-32 files with a BOM read like UTF-8 ones (issue 14, item 7)."""
    text = "id,review\n1,Très bien 👍\n2,Ужасно\n"
    data = text.encode(encoding)
    if encoding.endswith("-be"):
        data = "\ufeff".encode(encoding) + data
    path = write(tmp_path / "r.csv", data)
    got = reviews(path)
    assert [r.text for r in got] == ["Très bien 👍", "Ужасно"]
    assert [r.fields["id"] for r in got] == ["1", "2"]


def test_json_array_of_objects_and_strings(tmp_path: Path) -> None:
    """edgesent's own --format json output reads back as input (issue 14, item 9)."""
    path = write(tmp_path / "r.json", '[\n  {"id": 1, "text": "Love it"},\n  "plain",\n'
                                      '  null, {"id": 3, "text": "x \\ud83d"}\n]\n')
    got = reviews(path)
    assert [r.text for r in got] == ["Love it", "plain", "", "x \ud83d"]
    assert [r.line for r in got] == [2, 3, 4, 4]
    assert dict(got[0].fields) == {"id": 1, "text": "Love it"}
    jsonl_array = write(tmp_path / "r.jsonl", '["a", "b"]')  # an array in a .jsonl file too
    assert [r.text for r in reviews(jsonl_array)] == ["a", "b"]


def test_gzip_by_magic_bytes(tmp_path: Path) -> None:
    import gzip

    data = gzip.compress(b'{"text": "zipped"}\n{"text": "two"}\n')
    path = write(tmp_path / "r.jsonl.gz", data)
    assert [r.text for r in reviews(path)] == ["zipped", "two"]
    with ReviewReader("-", fmt="jsonl", stream=io.BytesIO(data)) as reader:
        assert [r.text for r in reader] == ["zipped", "two"]
        assert reader.estimate_rows() is None


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "review": ["good", None, "bad"]}), path)
    with ReviewReader(path) as reader:
        got = list(reader)
        assert reader.estimate_rows() == 3 and reader.columns == ["id", "review"]
    assert [(r.line, r.text, r.fields["id"]) for r in got] == [
        (1, "good", 1), (2, "", 2), (3, "bad", 3)]
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(InputError, match=r"r.parquet: row 1: 'text' is a Parquet number"):
        reviews(path)
    broken = write(tmp_path / "b.parquet", b"PAR1 not really")
    with pytest.raises(InputError, match=r"b\.parquet: not a readable Parquet file"):
        reviews(broken)


def test_records_keep_every_column(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "id,text,id\n1,a,3,extra\n2,b\n")
    with RecordReader(path) as reader:
        rows = [record.value for record in reader]
        assert reader.columns == ["id", "text", "id_2"]
    assert rows == [{"id": "1", "text": "a", "id_2": "3", "column_4": "extra"},
                    {"id": "2", "text": "b"}]
    assert unique_names(["a", "a", "a_2"]) == ["a", "a_3", "a_2"]


def test_one_review_type_for_both_halves() -> None:
    """Line and fields are where a review came from, not what it is."""
    assert Review("ok", "positive", line=3, fields={"id": 1}) == Review("ok", "positive")
    assert hash(Review("ok", line=3, fields={"id": [1]})) == hash(Review("ok"))
    assert Review("ok", "positive") != Review("ok", "negative")


def test_column_roles_and_exact_names() -> None:
    with pytest.raises(InputError, match=r"x: no label column 'lable' .*did you mean 'label'"):
        resolve_column(["text", "label"], "lable", "x", role="label")
    with pytest.raises(InputError, match="cannot tell"):
        resolve_column(["a"], None, "x", guess=False)
    assert resolve_column(["Label", "label"], "label", "x") == 1  # an exact match wins


def test_a_pipe_is_read_once_and_not_called_empty(tmp_path: Path) -> None:
    """`edgesent predict -i <(zcat r.csv.gz)`: a FIFO reports size 0 and cannot be reread."""
    import os
    import threading

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(b"text\na\nb\n",))
    writer.start()
    with ReviewReader(fifo) as reader:
        assert reader.estimate_rows() is None  # counting would swallow the pipe
        assert [r.text for r in reader] == ["a", "b"]
    writer.join(timeout=10)
    with pytest.raises(InputError, match="/dev/null: the input is empty"):
        ReviewReader("/dev/null")
