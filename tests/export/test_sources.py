"""Sources files: which reviews a build reads and how (export/sources.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesent.errors import InputError
from edgesent_export.sources import DATA_ENV, data_dir, load_sources


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _reviews(prefix: str, n: int = 10) -> list[dict]:
    return [
        {"text": f"{prefix} review {i}", "label": "pos" if i % 2 else "neg", "split": "train"}
        for i in range(n)
    ]


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _jsonl(root / "train.jsonl", [*_reviews("train"), {"text": "held", "label": "pos",
                                                       "split": "test"}])
    _jsonl(root / "marc.jsonl", [
        {"body": "five", "stars": 5}, {"body": "three", "stars": 3}, {"body": "one", "stars": 1},
        {"body": "train review 2", "stars": 1},
    ])
    _jsonl(root / "more.jsonl", [{"text": "no label here"}, {"text": "another one"}])
    return root


def _write_sources(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


CONFIG = {
    "labels": ["negative", "positive"],
    "train": [{"path": "train.jsonl", "where": {"split": "train"}}],
    "test": {
        "marc": {"path": "marc.jsonl", "text": "body", "label": "stars",
                 "stars": "1-2:negative,3:neutral,4-5:positive", "drop_labels": ["neutral"]},
    },
    "unlabelled": [{"path": "more.jsonl"}],
}


def test_relative_paths_resolve_against_the_data_dir(tmp_path: Path, data_root: Path) -> None:
    sources_file = _write_sources(tmp_path / "elsewhere" / "sources.json", CONFIG)
    sources = load_sources(sources_file, data_root)
    assert Path(sources.train[0].path) == data_root / "train.jsonl"
    assert Path(sources.test["marc"].path) == data_root / "marc.jsonl"
    assert Path(sources.unlabelled[0].path) == data_root / "more.jsonl"
    assert sources.labels == ["negative", "positive"]
    spec = sources.test["marc"].spec
    assert spec.stars is not None and spec.stars[3] == "neutral"
    assert spec.drop_labels == ("neutral",)
    assert sources.describe()["train"] == [
        {"path": "train.jsonl", "where": {"split": "train"}, "sample": None}
    ]


def test_without_a_data_dir_paths_are_relative_to_the_sources_file(data_root: Path) -> None:
    sources = load_sources(_write_sources(data_root / "sources.json", CONFIG))
    assert Path(sources.train[0].path) == data_root / "train.jsonl"


def test_data_dir_wins_over_a_same_named_file_in_the_working_directory(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    _jsonl(cwd / "train.jsonl", _reviews("decoy"))
    monkeypatch.chdir(cwd)
    sources = load_sources(_write_sources(tmp_path / "s.json", CONFIG), data_root)
    assert Path(sources.train[0].path) == data_root / "train.jsonl"


def test_absolute_paths_are_kept(tmp_path: Path, data_root: Path) -> None:
    config = {"train": [{"path": str(data_root / "train.jsonl")}]}
    sources = load_sources(_write_sources(tmp_path / "s.json", config), tmp_path / "unused")
    assert sources.train[0].path == str(data_root / "train.jsonl")


def test_format_reads_train_test_and_unlabelled(tmp_path: Path, data_root: Path) -> None:
    sources = load_sources(_write_sources(tmp_path / "s.json", CONFIG), data_root)
    data = sources.format(val_fraction=0.25, seed=1)
    assert data.labels == ["negative", "positive"]
    assert len(data.train) + len(data.val) == 9  # ten, one of them leaked into the test set
    assert [r.label for r in data.test["marc"]] == ["positive", "negative", "negative"]
    assert data.summary["rows_read"] == {
        "train": {str(data_root / "train.jsonl"): 10}, "test": {"marc": 3},
    }
    assert data.summary["rows_dropped"]["label neutral dropped"] == 1
    assert data.summary["rows_dropped"]["also in the test data (leakage)"] == 1
    unlabelled = sources.read_unlabelled()
    assert [(r.text, r.label) for r in unlabelled] == [("no label here", None),
                                                     ("another one", None)]


def test_limit_takes_a_reproducible_sample(tmp_path: Path, data_root: Path) -> None:
    config = {"train": [{"path": "train.jsonl", "where": {"split": "train"}, "limit": 4}]}
    sources = load_sources(_write_sources(tmp_path / "s.json", config), data_root)
    first = sources.train[0].read(drops=_drops())
    assert len(first) == 4
    assert first == sources.train[0].read(drops=_drops())
    assert {r.text for r in first} <= {row["text"] for row in _reviews("train")}
    assert sources.describe()["train"][0]["sample"] == 4


def test_star_rule_and_label_map_as_json_objects(tmp_path: Path, data_root: Path) -> None:
    _jsonl(data_root / "ints.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 1}])
    config = {
        "train": [{"path": "ints.jsonl", "label_map": {"0": "negative", "1": "positive"}}],
        "test": {"marc": {"path": "marc.jsonl", "text": "body", "label": "stars",
                          "stars": {"1": "neg", "2": "neg", "3": "neu", "4": "pos", "5": "pos"}}},
    }
    sources = load_sources(_write_sources(tmp_path / "s.json", config), data_root)
    assert [r.label for r in sources.train[0].read(drops=_drops())] == ["negative", "positive"]
    marc = sources.test["marc"].read(drops=_drops())
    assert [r.label for r in marc] == ["positive", "neutral", "negative", "negative"]


def _drops():
    from edgesent_export.data import DropCounts

    return DropCounts()


def test_data_dir_option_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert data_dir(None) is None
    monkeypatch.setenv(DATA_ENV, "/from/env")
    assert data_dir(None) == Path("/from/env")
    assert data_dir("/from/option") == Path("/from/option")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"train": [{"path": "train.jsonl", "colum": "x"}]},
         r"train\[0\]: unknown keys \['colum'\]"),
        ({"train": [{"path": "t.jsonl"}], "test": {"a": {"path": "m.jsonl", "star": "1:neg"}}},
         r"test\['a'\]: unknown keys \['star'\]"),
        ({"train": [{"text": "body"}]}, r"train\[0\]: every source needs a 'path'"),
        ({"train": []}, "needs a non-empty 'train' list"),
        ({"test": {}}, "needs a non-empty 'train' list"),
        ({"train": [{"path": "t.jsonl"}], "unlabeled": [{"path": "u.jsonl"}]},
         r"unknown keys \['unlabeled'\]"),
        ({"train": {"path": "t.jsonl"}}, "'train' must be a list"),
        ({"train": ["t.jsonl"]}, r"train\[0\]: expected an object"),
        ({"train": [{"path": "t.jsonl"}], "test": [{"path": "m.jsonl"}]},
         "'test' must be an object"),
        ([{"path": "t.jsonl"}], "expected a JSON object"),
    ],
)
def test_bad_sources_files(tmp_path: Path, config: object, message: str) -> None:
    path = _write_sources(tmp_path / "bad.json", config)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=message) as info:
        load_sources(path, tmp_path)
    assert "bad.json" in str(info.value)


def test_sources_file_that_is_not_json_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"train": [\n  {"path": "a.jsonl",}\n]}', encoding="utf-8")
    with pytest.raises(InputError, match=r"broken\.json: line 2, column 22"):
        load_sources(path)
    with pytest.raises(InputError, match="no such sources file"):
        load_sources(tmp_path / "missing.json")


def test_bad_star_rule_in_a_sources_file(tmp_path: Path) -> None:
    config = {"train": [{"path": "t.jsonl", "stars": "1-2neg"}]}
    with pytest.raises(InputError, match=r"s\.json: train\[0\]: star rule .1-2neg."):
        load_sources(_write_sources(tmp_path / "s.json", config))


def test_sources_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "sources.json"
    path.write_bytes(b'{"train": [{"path": "caf\xe9.csv"}]}')
    with pytest.raises(InputError, match=r"sources\.json: byte 25: invalid UTF-8 \(byte 0xe9\)"):
        load_sources(path)
    path.write_bytes(b'\xef\xbb\xbf{"train": [{"path": "a.csv"}]}')  # a BOM is fine
    assert load_sources(path).train[0].path.endswith("a.csv")
