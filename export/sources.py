"""Where the reviews of a build come from: a small JSON file, or CLI flags for one file.

A sources file names the training, test and unlabelled files and how to read each::

    {
      "labels": ["negative", "positive"],
      "train": [{"path": "fdu_mtl.jsonl.gz", "where": {"split": "train"}, "domain": "domain"},
                {"path": "pycaret_amazon.jsonl.gz"}],
      "test": {"marc": {"path": "marc_en_val.jsonl.gz", "label": "stars", "title": "title",
                        "stars": "1-2:negative,3:neutral,4-5:positive",
                        "drop_labels": ["neutral"]}},
      "unlabelled": [{"path": "fdu_mtl.jsonl.gz", "where": {"split": "unlabel"}}]
    }

Relative paths are resolved against the data directory (``--data`` or ``EDGESENT_DATA``).

>>> sources = load_sources("sources.json", data_dir="../shared/data/reviews")  # doctest: +SKIP
>>> data = sources.format(val_fraction=0.05, seed=13)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesent.errors import InputError

from .data import (
    ColumnSpec,
    DropCounts,
    FormattedData,
    Review,
    format_dataset,
    parse_label_map,
    parse_star_rule,
    read_reviews,
)

DATA_ENV = "EDGESENT_DATA"
_SOURCE_KEYS = {
    "path", "text", "label", "title", "domain", "stars", "label_map", "drop_labels", "where",
    "limit",
}


@dataclass
class Source:
    """One file (or hub dataset) and how to read it."""

    path: str
    spec: ColumnSpec
    limit: int | None = None

    def read(self, drops: DropCounts, require_labels: bool = True) -> list[Review]:
        rows = read_reviews(self.path, self.spec, drops=drops, require_labels=require_labels)
        return rows[: self.limit] if self.limit else rows

    def describe(self) -> dict[str, Any]:
        return {"path": Path(self.path).name, "where": self.spec.where or None}


@dataclass
class Sources:
    """Training, test and unlabelled sources of one build."""

    train: list[Source]
    test: dict[str, Source] = field(default_factory=dict)
    unlabelled: list[Source] = field(default_factory=list)
    labels: list[str] | None = None

    def format(self, *, val_fraction: float = 0.05, seed: int = 13) -> FormattedData:
        """Read every labelled source and format train, validation and test splits."""
        drops = DropCounts()
        train_sets = [source.read(drops) for source in self.train]
        tests = {name: source.read(drops) for name, source in self.test.items()}
        data = format_dataset(
            train_sets, tests, val_fraction=val_fraction, seed=seed, labels=self.labels,
            drops=drops,
        )
        data.summary["rows_read"] = {
            "train": {s.path: len(rows) for s, rows in zip(self.train, train_sets, strict=True)},
            "test": {name: len(rows) for name, rows in tests.items()},
        }
        return data

    def read_unlabelled(self) -> list[Review]:
        drops = DropCounts()
        return [r for source in self.unlabelled for r in source.read(drops, require_labels=False)]

    def describe(self) -> dict[str, Any]:
        return {
            "train": [s.describe() for s in self.train],
            "test": {name: s.describe() for name, s in self.test.items()},
            "unlabelled": [s.describe() for s in self.unlabelled],
        }


def data_dir(option: str | None) -> Path | None:
    """The data directory from ``--data`` or the ``EDGESENT_DATA`` environment variable."""
    value = option or os.environ.get(DATA_ENV)
    return Path(value) if value else None


def source_from_dict(entry: dict[str, Any], base: Path | None, where: str) -> Source:
    """A :class:`Source` from one entry of a sources file."""
    unknown = set(entry) - _SOURCE_KEYS
    if unknown:
        raise InputError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_SOURCE_KEYS)}")
    if "path" not in entry:
        raise InputError(f"{where}: every source needs a 'path'")
    path = Path(entry["path"])
    if base is not None and not path.is_absolute() and not path.exists():
        path = base / path
    stars = entry.get("stars")
    label_map = entry.get("label_map")
    spec = ColumnSpec(
        text=entry.get("text", "text"),
        label=entry.get("label", "label"),
        title=entry.get("title"),
        domain=entry.get("domain"),
        stars=parse_star_rule(stars) if isinstance(stars, str) else stars,
        label_map=parse_label_map(label_map) if isinstance(label_map, str) else label_map,
        drop_labels=tuple(entry.get("drop_labels", ())),
        where={str(k): str(v) for k, v in entry.get("where", {}).items()},
    )
    return Source(str(path), spec, entry.get("limit"))


def load_sources(path: str | Path, data_dir: Path | None = None) -> Sources:
    """Read a sources JSON file (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such sources file")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    base = data_dir or path.parent
    if not config.get("train"):
        raise InputError(f"{path}: needs a non-empty 'train' list")
    train = [
        source_from_dict(e, base, f"{path}: train[{i}]") for i, e in enumerate(config["train"])
    ]
    test = {
        name: source_from_dict(e, base, f"{path}: test[{name!r}]")
        for name, e in config.get("test", {}).items()
    }
    unlabelled = [
        source_from_dict({"label": None, **e}, base, f"{path}: unlabelled[{i}]")
        for i, e in enumerate(config.get("unlabelled", []))
    ]
    return Sources(train, test, unlabelled, config.get("labels"))
