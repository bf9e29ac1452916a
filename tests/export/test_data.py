"""Reading, cleaning, labelling and formatting labelled reviews (export/data.py)."""

from __future__ import annotations

import csv
import gzip
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from edgesent.errors import InputError
from edgesent_export.data import (
    ColumnSpec,
    DropCounts,
    Review,
    class_weights,
    clean_text,
    deduplicate,
    format_dataset,
    length_stats,
    parse_label_map,
    parse_star_rule,
    read_reviews,
    remove_leakage,
    stratified_split,
)

ROWS = [
    {"title": "Lovely", "review": "Great kettle, boils fast", "rating": "pos"},
    {"title": "", "review": "Broke after a week", "rating": "neg"},
    {"title": "Meh", "review": "", "rating": "pos"},
]


# ---------------------------------------------------------------------------- writers


def _write_delimited(path: Path, rows: list[dict], delimiter: str) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    data = "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _write_parquet(path: Path, rows: list[dict]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


WRITERS: dict[str, Callable[[Path, list[dict]], Path]] = {
    "reviews.csv": lambda p, rows: _write_delimited(p, rows, ","),
    "reviews.tsv": lambda p, rows: _write_delimited(p, rows, "\t"),
    "reviews.jsonl": _write_jsonl,
    "reviews.jsonl.gz": _write_jsonl,
    "reviews.parquet": _write_parquet,
}


def _write(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    return WRITERS[name](tmp_path / name, rows)


# ---------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_format_reads_the_same_reviews(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, ROWS)
    drops = DropCounts()
    spec = ColumnSpec(text="review", label="rating", title="title")
    reviews = read_reviews(path, spec, drops=drops)
    assert reviews == [
        Review("Lovely. Great kettle, boils fast", "positive", name),
        Review("Broke after a week", "negative", name),
        Review("Meh", "positive", name),  # title alone when the body is empty
    ]
    assert drops.as_dict() == {}


def test_csv_with_a_byte_order_mark_finds_its_first_column(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\r\nGood value,pos\r\n")
    assert read_reviews(path, ColumnSpec()) == [Review("Good value", "positive", "excel.csv")]


def test_jsonl_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "Fine", "label": "neg"}\n')
    assert [r.label for r in read_reviews(path, ColumnSpec())] == ["negative"]


def test_domain_column_and_where_filter(tmp_path: Path) -> None:
    rows = [
        {"text": "good one", "label": "pos", "split": "train", "domain": "books"},
        {"text": "bad one", "label": "neg", "split": "test", "domain": "dvd"},
        {"text": "fine one", "label": "pos", "split": "train", "domain": None},
    ]
    path = _write_jsonl(tmp_path / "mixed.jsonl", rows)
    reviews = read_reviews(path, ColumnSpec(domain="domain", where={"split": "train"}))
    assert [(r.text, r.domain) for r in reviews] == [("good one", "books"), ("fine one", None)]


def test_string_labels_are_normalised(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": raw} for i, raw in enumerate(["POS", "Negative", "neu"])]
    reviews = read_reviews(_write_jsonl(tmp_path / "l.jsonl", rows), ColumnSpec())
    assert [r.label for r in reviews] == ["positive", "negative", "neutral"]


# ---------------------------------------------------------------------------- labels


@pytest.mark.parametrize("name", ["ints.jsonl", "ints.csv", "ints.parquet"])
def test_integer_labels_through_a_label_map(tmp_path: Path, name: str) -> None:
    rows = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}]
    path = tmp_path / name
    if name.endswith(".csv"):
        _write_delimited(path, rows, ",")
    elif name.endswith(".parquet"):
        _write_parquet(path, rows)
    else:
        _write_jsonl(path, rows)
    spec = ColumnSpec(label_map=parse_label_map("0:negative, 1:positive"))
    assert [r.label for r in read_reviews(path, spec)] == ["positive", "negative"]


def test_float_labels_that_are_integers_match_the_label_map(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "f.jsonl", [{"text": "good", "label": 1.0}])
    spec = ColumnSpec(label_map={"0": "negative", "1": "positive"})
    assert read_reviews(path, spec)[0].label == "positive"


def test_label_map_targets_use_the_same_aliases_as_star_rules(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "a.jsonl", [{"text": "good", "label": 1}])
    spec = ColumnSpec(label_map=parse_label_map("0:neg,1:pos"))
    assert read_reviews(path, spec)[0].label == "positive"


@pytest.mark.parametrize(
    ("rule", "bad_part"), [("0negative", "0negative"), ("0:", "0:"), (":negative", ":negative"),
                           ("0:neg,,1", "1")],
)
def test_malformed_label_map(rule: str, bad_part: str) -> None:
    with pytest.raises(InputError, match=f"label map.*'{bad_part}' is not of the form RAW:LABEL"):
        parse_label_map(rule)


def test_star_rule_parses_ranges() -> None:
    assert parse_star_rule("1-2:neg, 3:neu ,4-5:pos") == {
        1: "neg", 2: "neg", 3: "neu", 4: "pos", 5: "pos",
    }


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("1-2", "not of the form STARS:LABEL"),
        ("1-2:", "not of the form STARS:LABEL"),
        ("a-b:neg", "'a-b' is not a star or a range"),
        ("5-4:pos", "runs backwards"),
        ("1-3:neg,3-5:pos", "star 3 is mapped twice"),
        (" , ", "maps no stars"),
    ],
)
def test_unreadable_star_rules(rule: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_star_rule(rule)
    assert repr(rule) in str(info.value)  # the message quotes the rule


def _star_file(tmp_path: Path) -> Path:
    stars = [1, 2, 3, 4, 5, "4.0"]
    rows = [{"body": f"review number {i}", "stars": s} for i, s in enumerate(stars)]
    return _write_jsonl(tmp_path / "stars.jsonl", rows)


def test_star_rule_maps_stars_to_labels(tmp_path: Path) -> None:
    spec = ColumnSpec(text="body", label="stars", stars=parse_star_rule("1-2:neg,3:neu,4-5:pos"))
    labels = [r.label for r in read_reviews(_star_file(tmp_path), spec)]
    assert labels == ["negative", "negative", "neutral", "positive", "positive", "positive"]


@pytest.mark.parametrize("dropped", ["neutral", "neu"])
def test_dropping_a_class_counts_the_rows(tmp_path: Path, dropped: str) -> None:
    spec = ColumnSpec(
        text="body", label="stars", stars=parse_star_rule("1-2:neg,3:neu,4-5:pos"),
        drop_labels=(dropped,),
    )
    drops = DropCounts()
    reviews = read_reviews(_star_file(tmp_path), spec, drops=drops)
    assert "neutral" not in {r.label for r in reviews}
    assert len(reviews) == 5
    assert drops.as_dict() == {"label neutral dropped": 1}


def test_star_outside_the_rule_names_file_line_and_column(tmp_path: Path) -> None:
    spec = ColumnSpec(text="body", label="stars", stars=parse_star_rule("1-2:neg,4-5:pos"))
    with pytest.raises(InputError) as info:
        read_reviews(_star_file(tmp_path), spec)
    message = str(info.value)
    assert "stars.jsonl" in message and "line 3" in message and "'stars'" in message
    assert "star rating 3 is not covered" in message


def test_star_that_is_not_a_number(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "s.jsonl", [{"text": "x", "stars": "five"}])
    spec = ColumnSpec(label="stars", stars={5: "pos"})
    with pytest.raises(InputError, match=r"s\.jsonl: line 1.*'five' is not a number"):
        read_reviews(path, spec)


# ---------------------------------------------------------------------------- cleaning


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("He said &quot;great&quot;", 'He said "great"'),
        ("5 &#34;stars&#34;", '5 "stars"'),
        ("double &amp;quot;escaped&amp;quot;", 'double "escaped"'),
        ("line one<br />line two<br/>three< br >four", "line one line two three four"),
        ("<p>para</p><b>bold</b>", "para bold"),
        ("I <3 it & so 1<2", "I <3 it & so 1<2"),
        ("next\u0085line", "next line"),
        ("  tabs\tand\nnew\r\nlines\u00a0nbsp  ", "tabs and new lines nbsp"),
        ("awe\u00adsome zero\u200bwidth", "awesome zerowidth"),
        ("ctrl\x00\x07chars", "ctrl chars"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_cleaning_happens_on_read_and_empty_texts_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = [
        {"text": "Works&quot;well&quot;<br /><br />Recommended\u0085", "label": "pos"},
        {"text": "", "label": "pos"},
        {"text": "   \t ", "label": "neg"},
        {"text": "<br />", "label": "neg"},
        {"text": "No label here", "label": ""},
        {"text": "Null label", "label": None},
    ]
    drops = DropCounts()
    reviews = read_reviews(_write_jsonl(tmp_path / "c.jsonl", rows), ColumnSpec(), drops=drops)
    assert [r.text for r in reviews] == ['Works"well" Recommended']
    assert drops.as_dict() == {"empty text": 3, "no label": 2}


def test_unlabelled_rows_are_kept_when_labels_are_not_required(tmp_path: Path) -> None:
    rows = [{"text": "a review", "label": None}, {"text": "another", "label": "pos"}]
    path = _write_jsonl(tmp_path / "u.jsonl", rows)
    reviews = read_reviews(path, ColumnSpec(), require_labels=False)
    assert [r.label for r in reviews] == [None, "positive"]
    no_label_column = read_reviews(path, ColumnSpec(label=None))
    assert [r.label for r in no_label_column] == [None, None]


# ---------------------------------------------------------------------------- bad input


def test_missing_column_names_the_file_the_columns_and_a_guess(tmp_path: Path) -> None:
    path = _write(tmp_path, "reviews.csv", ROWS)
    with pytest.raises(InputError) as info:
        read_reviews(path, ColumnSpec(text="reveiw", label="rating"))
    message = str(info.value)
    assert str(path) in message
    assert "no text column 'reveiw'" in message
    assert "columns: title, review, rating" in message
    assert "did you mean 'review'?" in message


def test_missing_label_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "reviews.jsonl", ROWS)
    with pytest.raises(InputError, match=r"reviews\.jsonl: no label column 'label' \(columns"):
        read_reviews(path, ColumnSpec(text="review"))


def test_unknown_label_with_a_label_map(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": "0"}, {"text": "b", "label": "1"}, {"text": "c", "label": "2"}]
    path = _write_delimited(tmp_path / "ints.csv", rows, ",")
    with pytest.raises(InputError) as info:
        read_reviews(path, ColumnSpec(label_map={"0": "negative", "1": "positive"}))
    message = str(info.value)
    # header is line 1, so the third data row stands on line 4
    assert "ints.csv: line 4" in message
    assert "column 'label'" in message
    assert "unknown label '2'" in message and "knows 0, 1" in message


@pytest.mark.parametrize("name", ["empty.csv", "header_only.csv", "empty.jsonl", "blank.jsonl"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(
        {"header_only.csv": "text,label\n", "blank.jsonl": "\n  \n"}.get(name, ""),
        encoding="utf-8",
    )
    message = "is empty" if name.startswith("empty") else "holds no rows"
    with pytest.raises(InputError, match=f"{name}: the file {message}"):
        read_reviews(path, ColumnSpec())


@pytest.mark.parametrize("name", ["bad.csv", "bad.tsv", "bad.csv.gz"])
def test_invalid_utf8_in_delimited_files_names_the_line(tmp_path: Path, name: str) -> None:
    sep = b"\t" if name.endswith(".tsv") else b","
    data = (
        b"text" + sep + b"label\n"
        + b"fine one" + sep + b"pos\n"
        + b"another" + sep + b"neg\n"
        + b"caf\xe9 latin-1" + sep + b"pos\n"
        + b"last" + sep + b"neg\n"
    )
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(InputError) as info:
        read_reviews(path, ColumnSpec())
    message = str(info.value)
    assert name in message and "line 4" in message
    assert "invalid UTF-8" in message and "0xe9" in message


def test_invalid_utf8_on_a_late_line_of_a_large_csv(tmp_path: Path) -> None:
    lines = [b"text,label"] + [b"review %d is fine,pos" % i for i in range(3000)]
    lines[2500] = b"broken \xff byte,neg"
    path = tmp_path / "big.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InputError, match=r"big\.csv: line 2501.*invalid UTF-8"):
        read_reviews(path, ColumnSpec())


@pytest.mark.parametrize("name", ["bad.jsonl", "bad.jsonl.gz"])
def test_invalid_utf8_in_jsonl_names_the_line(tmp_path: Path, name: str) -> None:
    data = b'{"text": "ok", "label": "pos"}\n{"text": "ok too", "label": "neg"}\n'
    data += b'{"text": "caf\xe9", "label": "pos"}\n'
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(InputError, match=rf"{name}: line 3, column 14: invalid UTF-8"):
        read_reviews(path, ColumnSpec())


def test_malformed_json_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "ok", "label": "pos"}\n{"text": "oops", "label": }\n', "utf-8")
    with pytest.raises(InputError, match=r"broken\.jsonl: line 2, column 27: invalid JSON"):
        read_reviews(path, ColumnSpec())


def test_json_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('{"text": "ok", "label": "pos"}\n["text", "pos"]\n', "utf-8")
    with pytest.raises(InputError, match=r"list\.jsonl: line 2: expected a JSON object"):
        read_reviews(path, ColumnSpec())


def test_malformed_csv_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "quotes.csv"
    path.write_text('text,label\nfine,pos\n"quoted"then text,neg\n', "utf-8")
    with pytest.raises(InputError, match=r"quotes\.csv: line 3: text after a closing quote"):
        read_reviews(path, ColumnSpec())
    unclosed = tmp_path / "open.csv"
    unclosed.write_text('text,label\nfine,pos\n"never closed,neg\nmore,pos\n', "utf-8")
    with pytest.raises(InputError, match=r"open\.csv: line 3: a quoted field .* never closed"):
        read_reviews(unclosed, ColumnSpec())


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: no such file"):
        read_reviews(tmp_path / "nope.csv", ColumnSpec())
    sheet = tmp_path / "reviews.xlsx"
    sheet.write_bytes(b"PK")
    with pytest.raises(InputError, match="unknown file type"):
        read_reviews(sheet, ColumnSpec())


# ---------------------------------------------------------------------------- formatting


def _r(text: str, label: str | None = "positive") -> Review:
    return Review(text, label, "t")


def test_exact_duplicates_keep_one_copy() -> None:
    drops = DropCounts()
    kept, conflicts = deduplicate(
        [_r("Good buy"), _r("good  BUY "), _r("Other"), _r("Good buy")], drops
    )
    assert [r.text for r in kept] == ["Good buy", "Other"]
    assert conflicts == []
    assert drops.as_dict() == {"exact duplicate": 2}


def test_conflicting_duplicates_drop_every_copy() -> None:
    drops = DropCounts()
    rows = [_r("It is ok"), _r("it is OK", "negative"), _r("Keep me"), _r("It is ok")]
    kept, conflicts = deduplicate(rows, drops)
    assert [r.text for r in kept] == ["Keep me"]
    assert conflicts == ["it is ok"]
    assert drops.as_dict() == {"duplicate with conflicting labels": 3}


def test_leakage_removal_takes_test_texts_out_of_train() -> None:
    drops = DropCounts()
    train = [_r("Shared text"), _r("Only in train")]
    kept = remove_leakage(train, [_r("shared   TEXT", "negative")], drops)
    assert [r.text for r in kept] == ["Only in train"]
    assert drops.as_dict() == {"also in the test data (leakage)": 1}


def _balanced(n_pos: int, n_neg: int, prefix: str = "r") -> list[Review]:
    return [_r(f"{prefix} pos {i}") for i in range(n_pos)] + [
        _r(f"{prefix} neg {i}", "negative") for i in range(n_neg)
    ]


def test_stratified_split_is_reproducible_and_keeps_ratios() -> None:
    rows = _balanced(200, 100)
    train, val = stratified_split(rows, 0.1, seed=7)
    again_train, again_val = stratified_split(rows, 0.1, seed=7)
    assert (train, val) == (again_train, again_val)
    other_train, _ = stratified_split(rows, 0.1, seed=8)
    assert other_train != train
    assert sorted(r.text for r in train + val) == sorted(r.text for r in rows)
    assert not {r.text for r in train} & {r.text for r in val}
    assert sum(r.label == "positive" for r in val) == 20
    assert sum(r.label == "negative" for r in val) == 10
    assert sum(r.label == "positive" for r in train) == 180


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_stratified_split_rejects_bad_fractions(fraction: float) -> None:
    with pytest.raises(ValueError, match="validation fraction"):
        stratified_split(_balanced(4, 4), fraction, seed=0)


def test_format_dataset_summary(tmp_path: Path) -> None:
    drops = DropCounts()
    drops.add("empty text", 2)
    train = [
        *_balanced(30, 30),
        _r("r pos 0"),  # exact duplicate
        _r("Mixed feelings"), _r("mixed feelings", "negative"),  # conflict
        _r("In the test too"),  # leakage
    ]
    test = [_r("in the test TOO"), _r("a test review", "negative"), _r("a test review", "negative")]
    data = format_dataset([train], {"heldout": test}, val_fraction=0.2, seed=3, drops=drops,
                          rows_read=65)
    summary = data.summary
    assert data.labels == ["negative", "positive"]
    assert summary["rows_read"] == 65
    assert summary["rows_dropped"] == {
        "also in the test data (leakage)": 1,
        "duplicate with conflicting labels": 2,
        "empty text": 2,
        "exact duplicate": 1,
        "test heldout: exact duplicate": 1,
    }
    assert summary["conflicting_duplicates"] == 1
    assert summary["conflicting_examples"] == ["mixed feelings"]
    assert summary["rows"] == {"train": 48, "val": 12, "test:heldout": 2}
    assert summary["class_balance"]["val"] == {"negative": 6, "positive": 6}
    assert summary["class_balance"]["test:heldout"] == {"negative": 1, "positive": 1}
    assert summary["imbalance_ratio"] == 1.0
    assert (summary["seed"], summary["val_fraction"]) == (3, 0.2)
    assert "in the test too" not in {r.text.lower() for r in data.train + data.val}
    data.save_summary(tmp_path / "summary.json")
    assert json.loads((tmp_path / "summary.json").read_text("utf-8")) == summary


def test_imbalance_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgesent_export.data"):
        format_dataset([_balanced(20, 20)], {}, val_fraction=0.1, seed=0)
    assert not [r for r in caplog.records if "imbalanced" in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger="edgesent_export.data"):
        data = format_dataset([_balanced(60, 20)], {}, val_fraction=0.1, seed=0)
    warnings = [r for r in caplog.records if "imbalanced" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "3.00" in warnings[0].getMessage() and "--class-weights auto" in warnings[0].getMessage()
    assert data.summary["imbalance_ratio"] == 3.0


def test_class_weights_balance_the_classes() -> None:
    rows = _balanced(30, 10)
    weights = class_weights(rows, ["negative", "positive"])
    assert weights == pytest.approx([2.0, 2 / 3])
    assert weights[0] * 10 == pytest.approx(weights[1] * 30)
    assert class_weights(_balanced(5, 5), ["negative", "positive"]) == [1.0, 1.0]


def test_format_dataset_errors() -> None:
    with pytest.raises(InputError, match="no usable rows"):
        format_dataset([[]], {})
    with pytest.raises(InputError, match="at least two classes"):
        format_dataset([[_r("a"), _r("b")]], {})
    with pytest.raises(InputError, match=r"labels \['neutral'\] are not among"):
        format_dataset([[*_balanced(3, 3), _r("so so", "neutral")]], {},
                       labels=["negative", "positive"])


def test_test_set_labels_outside_the_training_labels_are_an_input_error() -> None:
    with pytest.raises(InputError, match=r"test set 'marc'.*\['neutral'\]"):
        format_dataset([_balanced(5, 5)], {"marc": [_r("meh", "neutral")]}, val_fraction=0.2)


def test_jsonl_round_trip_and_length_stats(tmp_path: Path) -> None:
    rows = [{"text": "ünïcode text", "label": "positive", "domain": "books"},
            {"text": "plain", "label": None, "domain": None}]
    (tmp_path / "out.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    back = read_reviews(tmp_path / "out.jsonl", ColumnSpec(domain="domain"), require_labels=False)
    assert [(r.text, r.label, r.domain) for r in back] == [
        ("ünïcode text", "positive", "books"), ("plain", None, None)
    ]
    stats = length_stats(list(range(1, 101)))
    assert stats == {"mean": 50.5, "p50": 51, "p90": 91, "p99": 100, "max": 100}
    assert length_stats([]) == {}


def test_build_half_reads_like_predict(tmp_path: Path) -> None:
    """One reader (issue 10): CR line endings, UTF-16, JSON arrays, case-insensitive columns
    and the line each review came from, as `edgesent predict` reads them."""
    cr = tmp_path / "mac.csv"
    cr.write_bytes(b"Text,Label\rGreat value,pos\rAwful,neg\r")
    got = read_reviews(cr, ColumnSpec())
    assert [(r.text, r.label, r.line) for r in got] == [("Great value", "positive", 2),
                                                       ("Awful", "negative", 3)]
    utf16 = tmp_path / "wide.tsv"
    utf16.write_bytes("text\tlabel\nTrès bien\tpos\n".encode("utf-16"))
    assert [r.text for r in read_reviews(utf16, ColumnSpec())] == ["Très bien"]
    array = tmp_path / "scored.json"
    array.write_text(json.dumps([{"text": "ok", "label": "pos"}, "unlabelled"]), "utf-8")
    assert [(r.text, r.label) for r in read_reviews(array, ColumnSpec(), require_labels=False)
            ] == [("ok", "positive"), ("unlabelled", None)]
    plain = tmp_path / "more.txt"
    plain.write_text("one review\nanother\n", "utf-8")
    assert [r.text for r in read_reviews(plain, ColumnSpec(label=None))] == ["one review",
                                                                            "another"]


def test_review_is_the_run_half_type() -> None:
    import edgesent.inputs

    assert Review is edgesent.inputs.Review
