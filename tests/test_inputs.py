"""Reading reviews from files and stdin, and the errors bad files give."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from edgesent import InputError
from edgesent.inputs import Review, ReviewReader, detect_format, read_reviews, resolve_column


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
    assert reviews(path) == [Review("Great value", 1), Review("", 2),
                             Review("Broke after a week", 3), Review("   ", 4), Review("ok", 5)]


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
    assert str(info.value) == (f"{path}: line 3, byte 4: invalid UTF-8 (byte 0xe9); "
                               "save the file as UTF-8")


def test_errors_surface_lazily_after_good_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", b"text\n" + b"good\n" * 5 + b"bad \xff\n")
    reader = ReviewReader(path)  # opening reads only the header and the first row
    iterator = iter(reader)
    assert [next(iterator).text for _ in range(5)] == ["good"] * 5
    with pytest.raises(InputError, match=r"line 7, byte 5"):
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
    ("short.csv", b"id,stars,text\n1,5,ok\n2,4\n", "line 3 (row 2): 2 field(s), but column "
                                                   "'text' is field 3"),
    ("bad.jsonl", b'{"text": "a"}\n{"text": "b",}\n', "line 2, column 14: invalid JSON"),
    ("array.json", b'[\n {"text": "a"}\n]\n', "line 1: looks like a JSON array"),
    ("number.jsonl", b'{"text": 5}\n', "line 1: 'text' is a JSON number, expected a string"),
    ("list.jsonl", b'["a", "b"]\n', "line 1: expected a JSON object or string, got a JSON array"),
    ("quote.csv", b'text\nfine\n"unterminated\nmore\n', "line 3: a quoted field opened on "
                                                       "this line is never closed"),
    ("junk.csv", b'text\n"closed"junk\n', "line 2: ',' expected after '\"'"),
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
        == ["csv", "tsv", "jsonl", "jsonl", "txt", "txt"]
    with ReviewReader(write(tmp_path / "r.csv", "text\na\nb\nc")) as reader:
        assert reader.estimate_rows() == 3
    with ReviewReader(write(tmp_path / "r.txt", "a\nb\n")) as reader:
        assert reader.estimate_rows() == 2


def test_resolve_column_prefers_known_names() -> None:
    assert resolve_column(["stars", "content", "text"], None, "x") == 2
    assert resolve_column(["Text "], "text", "x") == 0
