"""The formatter on the real review data (skipped where the data directory is absent).

The data lives outside the repository; point ``EDGESENT_DATA`` at it (CI does).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from edgesent_export.data import ColumnSpec, DropCounts, dedup_key, read_reviews
from edgesent_export.sources import load_sources

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("EDGESENT_DATA", REPO.parent / "shared" / "data" / "reviews"))
SOURCES = REPO / "examples" / "default_model" / "sources.json"

pytestmark = pytest.mark.skipif(
    not (DATA / "fdu_mtl.jsonl.gz").exists(),
    reason=f"review data not found at {DATA} (set EDGESENT_DATA)",
)


@pytest.fixture(scope="module")
def formatted():
    return load_sources(SOURCES, DATA).format(val_fraction=0.05, seed=13)


def test_leakage_and_duplicates_are_removed(formatted) -> None:
    dropped = formatted.summary["rows_dropped"]
    assert dropped["also in the test data (leakage)"] > 0
    assert dropped["exact duplicate"] > 0
    train_keys = {dedup_key(r.text) for r in formatted.train + formatted.val}
    test_keys = {dedup_key(r.text) for rows in formatted.test.values() for r in rows}
    assert not train_keys & test_keys


def test_labels_and_splits(formatted) -> None:
    assert formatted.labels == ["negative", "positive"]
    assert set(formatted.test) == {"fdu_mtl_test", "marc_en_val"}
    marc = formatted.test["marc_en_val"]
    assert {r.label for r in marc} == {"negative", "positive"}  # 3 stars dropped
    assert len(marc) == 4000
    domains = {r.domain for r in formatted.test["fdu_mtl_test"]}
    assert len(domains) == 16 and {"imdb", "MR"} <= domains


def test_html_entities_and_control_characters_are_cleaned() -> None:
    reviews = read_reviews(DATA / "pycaret_amazon.jsonl.gz", ColumnSpec(), drops=DropCounts())
    assert not any(re.search(r"&(quot|amp|#\d+);", r.text) for r in reviews)
    imdb = read_reviews(
        DATA / "fdu_mtl.jsonl.gz",
        ColumnSpec(domain="domain", where={"split": "train", "domain": "imdb"}),
        drops=DropCounts(),
    )
    assert imdb and not any("\x85" in r.text for r in imdb)
