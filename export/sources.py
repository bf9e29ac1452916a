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
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesent.errors import InputError
from edgesent.inputs import Review

from .data import (
    ColumnSpec,
    DropCounts,
    FormattedData,
    format_dataset,
    parse_label_map,
    parse_star_rule,
    read_reviews,
)

DATA_ENV = "EDGESENT_DATA"
LIMIT_SEED = 0
_SOURCE_KEYS = {
    "path", "text", "label", "title", "domain", "stars", "label_map", "drop_labels", "where",
    "limit",
}
_TOP_KEYS = {"labels", "train", "test", "unlabelled"}


@dataclass
class Source:
    """One file (or hub dataset) and how to read it."""

    path: str
    spec: ColumnSpec
    limit: int | None = None

    def read(self, drops: DropCounts, require_labels: bool = True) -> list[Review]:
        rows = read_reviews(self.path, self.spec, drops=drops, require_labels=require_labels)
        if self.limit and len(rows) > self.limit:
            # A seeded random sample: files are often grouped by domain or date.
            keep = sorted(random.Random(LIMIT_SEED).sample(range(len(rows)), self.limit))
            rows = [rows[i] for i in keep]
        return rows

    def describe(self) -> dict[str, Any]:
        return {
            "path": Path(self.path).name,
            "where": self.spec.where or None,
            "sample": self.limit,
        }


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
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object with a 'path', got {entry!r}")
    unknown = set(entry) - _SOURCE_KEYS
    if unknown:
        raise InputError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_SOURCE_KEYS)}")
    if "path" not in entry:
        raise InputError(f"{where}: every source needs a 'path'")
    path = Path(entry["path"])
    # The data directory first; a path that only exists from the working directory still works.
    if base is not None and not path.is_absolute() and (
        (base / path).exists() or not path.exists()
    ):
        path = base / path
    stars = entry.get("stars")
    label_map = entry.get("label_map")
    try:
        if isinstance(stars, str):
            stars = parse_star_rule(stars)
        elif isinstance(stars, dict):  # JSON object keys are strings
            stars = {int(star): str(label) for star, label in stars.items()}
        if isinstance(label_map, str):
            label_map = parse_label_map(label_map)
        elif isinstance(label_map, dict):
            label_map = {str(raw): str(label) for raw, label in label_map.items()}
    except (InputError, ValueError) as exc:
        raise InputError(f"{where}: {exc}") from None
    spec = ColumnSpec(
        text=entry.get("text", "text"),
        label=entry.get("label", "label"),
        title=entry.get("title"),
        domain=entry.get("domain"),
        stars=stars,
        label_map=label_map,
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
        config = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: byte {exc.start + 1}: invalid UTF-8 (byte "
                         f"0x{exc.object[exc.start]:02x}); save the file as UTF-8") from None
    base = data_dir or path.parent
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a JSON object with 'train', 'test', 'unlabelled'")
    unknown = set(config) - _TOP_KEYS
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    if not config.get("train"):
        raise InputError(f"{path}: needs a non-empty 'train' list")
    for key, kind in (("train", list), ("unlabelled", list), ("test", dict)):
        if not isinstance(config.get(key, kind()), kind):
            noun = "a list" if kind is list else "an object of named sources"
            raise InputError(f"{path}: '{key}' must be {noun}")
    train = [
        source_from_dict(e, base, f"{path}: train[{i}]") for i, e in enumerate(config["train"])
    ]
    test = {
        name: source_from_dict(e, base, f"{path}: test[{name!r}]")
        for name, e in config.get("test", {}).items()
    }
    unlabelled = [
        source_from_dict(
            {"label": None, **e} if isinstance(e, dict) else e, base, f"{path}: unlabelled[{i}]"
        )
        for i, e in enumerate(config.get("unlabelled", []))
    ]
    return Sources(train, test, unlabelled, config.get("labels"))
