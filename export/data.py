"""Read labelled reviews as people have them and format them for training.

Reads CSV, TSV, JSON Lines, JSON arrays (gzip too), Parquet and plain-text files through
the run half's one reader (:mod:`edgesent.inputs`: the same decoding, line numbers and
column matching as ``edgesent predict``, the same :class:`~edgesent.inputs.Review`), and
Hugging Face datasets by name when the hub is reachable. Cleans HTML entities and tags,
control characters and stray whitespace; maps string, integer or star-rating labels;
removes duplicates, conflicting duplicates and train/test leakage; splits a stratified
validation set with a seed.

>>> spec = ColumnSpec(text="review", label="rating", stars=parse_star_rule("1-2:neg,4-5:pos"))
>>> rows = read_labelled("reviews.csv", spec)  # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
import logging
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesent.errors import InputError
from edgesent.inputs import (
    SUFFIX_FORMATS,
    RecordReader,
    Review,
    detect_format,
    join_title,
    resolve_column,
)

logger = logging.getLogger(__name__)

# Common spellings of polarity labels, mapped to the names bundles use.
LABEL_ALIASES = {
    "pos": "positive",
    "positive": "positive",
    "neg": "negative",
    "negative": "negative",
    "neu": "neutral",
    "neutral": "neutral",
}
IMBALANCE_WARNING_RATIO = 1.5
_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^<>]{0,200}>")
_SPACE = re.compile(r"\s+")


@dataclass
class ColumnSpec:
    """Which columns hold what, and how labels are read.

    >>> ColumnSpec(text="body", title="headline", label="stars").text
    'body'
    """

    text: str = "text"
    label: str | None = "label"
    title: str | None = None
    domain: str | None = None
    stars: dict[int, str] | None = None
    label_map: dict[str, str] | None = None
    drop_labels: tuple[str, ...] = ()
    where: dict[str, str] = field(default_factory=dict)


@dataclass
class DropCounts:
    """Why rows were dropped, counted."""

    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str, n: int = 1) -> None:
        if n:
            self.counts[reason] += n

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


def parse_star_rule(rule: str) -> dict[int, str]:
    """Parse ``"1-2:neg,3:neu,4-5:pos"`` into a star → label map.

    >>> parse_star_rule("1-2:neg,3:neu,4-5:pos")[2]
    'neg'
    """
    mapping: dict[int, str] = {}
    for part in filter(None, (p.strip() for p in rule.split(","))):
        stars, sep, label = part.partition(":")
        if not sep or not label.strip():
            raise InputError(f"star rule {rule!r}: {part!r} is not of the form STARS:LABEL")
        low, _, high = stars.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise InputError(f"star rule {rule!r}: {stars!r} is not a star or a range") from None
        if first > last:
            raise InputError(f"star rule {rule!r}: range {stars!r} runs backwards")
        for star in range(first, last + 1):
            if star in mapping:
                raise InputError(f"star rule {rule!r}: star {star} is mapped twice")
            mapping[star] = label.strip()
    if not mapping:
        raise InputError(f"star rule {rule!r} maps no stars")
    return mapping


def parse_label_map(rule: str) -> dict[str, str]:
    """Parse ``"0:negative,1:positive"`` into a raw label → label map."""
    mapping = {}
    for part in filter(None, (p.strip() for p in rule.split(","))):
        raw, sep, label = part.partition(":")
        if not sep or not raw.strip() or not label.strip():
            raise InputError(f"label map {rule!r}: {part!r} is not of the form RAW:LABEL")
        mapping[raw.strip()] = label.strip()
    return mapping


def clean_text(text: str) -> str:
    """Undo HTML entities and tags, drop control characters, collapse whitespace.

    >>> clean_text("Great&quot; value<br />  works&#34;!")
    'Great" value works"!'
    """
    for _ in range(2):  # some sources escape twice ("&amp;quot;")
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    text = _TAG.sub(" ", text)
    # Control characters and line/paragraph separators separate words; format characters
    # (soft hyphen, zero-width space, BOM) sit inside words, and tokenizers drop them.
    if not text.isprintable():  # the per-character pass only where it can matter
        text = "".join(
            "" if category == "Cf" else " " if category in ("Cc", "Zl", "Zp") else ch
            for ch, category in ((ch, unicodedata.category(ch)) for ch in text)
        )
    return _SPACE.sub(" ", text).strip()


def dedup_key(text: str) -> str:
    """The key under which two texts count as the same review."""
    return _SPACE.sub(" ", text.casefold()).strip()


# ---------------------------------------------------------------------------- reading


def iter_rows(path: str | Path, *, text_key: str = "text") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_or_row_number, row)`` from a CSV, TSV, JSON Lines or JSON array
    (gzip too), Parquet or plain-text file, read by the run half's one reader.

    A bare text (a line of a ``.txt`` file, a JSON string) becomes ``{text_key: text}``.
    """
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if not suffixes or suffixes[-1] not in SUFFIX_FORMATS:
        known = ", ".join(SUFFIX_FORMATS)
        raise InputError(f"{path}: unknown file type; expected one of {known} (.gz too)")
    with RecordReader(path) as reader:
        for line, value in reader:
            yield line, {text_key: value} if isinstance(value, str) else value


def iter_hub_dataset(name: str, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a Hugging Face dataset by name (needs the hub and ``datasets``)."""
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("reading hub datasets needs `pip install datasets`") from exc
    dataset = datasets.load_dataset(name, split=split)
    for index, row in enumerate(dataset, start=1):
        yield index, dict(row)


# ---------------------------------------------------------------------------- labelling


def _label_of(value: Any, spec: ColumnSpec, where: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if spec.stars is not None:
        try:
            stars = int(float(value))
        except (TypeError, ValueError):
            raise InputError(f"{where}: star rating {value!r} is not a number") from None
        if stars not in spec.stars:
            raise InputError(f"{where}: star rating {stars} is not covered by the star rule")
        return normalise_label(spec.stars[stars])
    raw = str(value).strip()
    if isinstance(value, float) and value.is_integer():
        raw = str(int(value))
    if spec.label_map is not None:
        if raw not in spec.label_map:
            known = ", ".join(sorted(spec.label_map))
            raise InputError(f"{where}: unknown label {raw!r} (the label map knows {known})")
        return normalise_label(spec.label_map[raw])
    return normalise_label(raw)


def normalise_label(label: str) -> str:
    """The bundle name of a label spelling (``"pos"`` → ``"positive"``); others unchanged."""
    return LABEL_ALIASES.get(label.strip().lower(), label.strip())


def read_reviews(
    source: str | Path,
    spec: ColumnSpec,
    *,
    drops: DropCounts | None = None,
    hub_split: str = "train",
    require_labels: bool = True,
) -> list[Review]:
    """Read and clean reviews from a file (or a hub dataset name) following ``spec``.

    Rows with an empty text or no label are dropped and counted in ``drops``.

    >>> read_reviews("reviews.jsonl.gz", ColumnSpec(where={"split": "train"}))  # doctest: +SKIP
    """
    drops = drops if drops is not None else DropCounts()
    path = Path(source)
    if path.exists() or path.suffix:
        rows = iter_rows(path, text_key=spec.text)
        unit = "row" if detect_format(path) == "parquet" else "line"
    else:
        rows = iter_hub_dataset(str(source), hub_split)
        unit = "row"
    reviews: list[Review] = []
    dropped_labels = {normalise_label(label) for label in spec.drop_labels}
    names: dict[str, str] | None = None  # spec's column names → the file's
    for line_no, row in rows:
        if names is None:
            names = resolve_columns(str(source), list(row), spec, require_labels)
        if any(str(row.get(names[key])) != value for key, value in spec.where.items()):
            continue
        text = clean_text(str(row.get(names[spec.text]) or ""))
        if spec.title and row.get(names[spec.title]):
            text = join_title(clean_text(str(row[names[spec.title]])), text)
        if not text:
            drops.add("empty text")
            continue
        label = None
        if spec.label is not None:
            column = names.get(spec.label, spec.label)
            where = f"{source}: {unit} {line_no}, column {column!r}"
            label = _label_of(row.get(column), spec, where)
            if label is None and require_labels:
                drops.add("no label")
                continue
            if label in dropped_labels:
                drops.add(f"label {label} dropped")
                continue
        domain_column = names.get(spec.domain or "", "")
        domain = str(row[domain_column]) if domain_column and row.get(domain_column) else None
        reviews.append(Review(text=text, label=label, source=Path(str(source)).name,
                              domain=domain, line=line_no))
    if names is None:
        raise InputError(f"{source}: the file holds no rows")
    return reviews


def resolve_columns(source: str, columns: Sequence[str], spec: ColumnSpec,
                    need_label: bool) -> dict[str, str]:
    """The file's name for each column ``spec`` asks for, matched as ``edgesent predict``
    matches (exact, then case-insensitive) with a suggestion when one is missing.

    >>> resolve_columns("r.csv", ["Review", "Label"], ColumnSpec(text="review"), True)
    {'review': 'Review', 'label': 'Label'}
    """
    wanted = [(spec.text, "text")]
    if spec.label is not None and need_label:
        wanted.append((spec.label, "label"))
    wanted += [(c, "title") for c in [spec.title] if c]
    wanted += [(c, "filter") for c in spec.where]
    names = {column: columns[resolve_column(columns, column, source, role=role, guess=False)]
             for column, role in wanted}
    if spec.label is not None and spec.label not in names:  # unlabelled reading: optional
        names.update(_optional(columns, spec.label, source))
    if spec.domain:
        names.update(_optional(columns, spec.domain, source))
    return names


def _optional(columns: Sequence[str], column: str, source: str) -> dict[str, str]:
    try:
        return {column: columns[resolve_column(columns, column, source, guess=False)]}
    except InputError:
        return {}


# ---------------------------------------------------------------------------- formatting


def deduplicate(reviews: Sequence[Review], drops: DropCounts) -> tuple[list[Review], list[str]]:
    """Keep one of each exact duplicate; drop every copy of a text with conflicting labels.

    Returns the kept reviews and the conflicting texts (for the summary).
    """
    labels_by_key: dict[str, set[str | None]] = defaultdict(set)
    for review in reviews:
        labels_by_key[dedup_key(review.text)].add(review.label)
    conflicts = {key for key, labels in labels_by_key.items() if len(labels) > 1}
    seen: set[str] = set()
    kept = []
    for review in reviews:
        key = dedup_key(review.text)
        if key in conflicts:
            drops.add("duplicate with conflicting labels")
        elif key in seen:
            drops.add("exact duplicate")
        else:
            seen.add(key)
            kept.append(review)
    return kept, sorted(conflicts)


def remove_leakage(
    train: Sequence[Review], held_out: Iterable[Review], drops: DropCounts
) -> list[Review]:
    """Drop from ``train`` every text that also stands in a held-out (test) set."""
    test_keys = {dedup_key(r.text) for r in held_out}
    kept = [r for r in train if dedup_key(r.text) not in test_keys]
    drops.add("also in the test data (leakage)", len(train) - len(kept))
    return kept


def stratified_split(
    reviews: Sequence[Review], fraction: float, seed: int
) -> tuple[list[Review], list[Review]]:
    """Split off ``fraction`` of each label as a validation set, reproducibly.

    >>> rows = [Review(str(i), "pos" if i % 2 else "neg") for i in range(10)]
    >>> train, val = stratified_split(rows, 0.2, seed=0)
    >>> len(train), len(val)
    (8, 2)
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    by_label: dict[str | None, list[Review]] = defaultdict(list)
    for review in reviews:
        by_label[review.label].append(review)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_label, key=str):
        group = by_label[label][:]
        rng.shuffle(group)
        n_val = max(1, round(len(group) * fraction)) if len(group) > 1 else 0
        val += group[:n_val]
        train += group[n_val:]
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


def class_balance(reviews: Iterable[Review]) -> dict[str, int]:
    return dict(sorted(Counter(str(r.label) for r in reviews).items()))


def imbalance_ratio(balance: dict[str, int]) -> float:
    counts = [n for n in balance.values() if n]
    return max(counts) / min(counts) if counts else 1.0


def class_weights(reviews: Sequence[Review], labels: Sequence[str]) -> list[float]:
    """Inverse-frequency weights, normalised so a balanced set gets all ones."""
    counts = Counter(r.label for r in reviews)
    total = sum(counts[label] for label in labels)
    return [total / (len(labels) * max(counts[label], 1)) for label in labels]


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    """Summary of token lengths: mean and percentiles."""
    if not lengths:
        return {}
    ordered = sorted(lengths)

    def pct(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": ordered[-1],
    }


@dataclass
class FormattedData:
    """Train, validation and test splits plus what happened on the way."""

    labels: list[str]
    train: list[Review]
    val: list[Review]
    test: dict[str, list[Review]]
    summary: dict[str, Any]

    def save_summary(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.summary, indent=2) + "\n", encoding="utf-8")


def format_dataset(
    train_sets: Sequence[list[Review]],
    test_sets: dict[str, list[Review]],
    *,
    val_fraction: float = 0.05,
    seed: int = 13,
    labels: Sequence[str] | None = None,
    drops: DropCounts | None = None,
    rows_read: int | None = None,
) -> FormattedData:
    """Deduplicate, remove leakage, split validation, and summarise.

    Test sets are deduplicated too (a conflicting test text has no right answer) and every
    text in any test set is removed from the training data.
    """
    drops = drops if drops is not None else DropCounts()
    pooled = [review for group in train_sets for review in group]
    if not pooled:
        raise InputError("the training data holds no usable rows")
    train, conflicts = deduplicate(pooled, drops)
    tests: dict[str, list[Review]] = {}
    for name, rows in test_sets.items():
        test_drops = DropCounts()
        tests[name], _ = deduplicate(rows, test_drops)
        for reason, n in test_drops.counts.items():
            drops.add(f"test {name}: {reason}", n)
    train = remove_leakage(train, (r for rows in tests.values() for r in rows), drops)
    found = sorted({r.label for r in train if r.label is not None})
    if labels is None:
        labels = found
    unknown = sorted(set(found) - set(labels))
    if unknown:
        raise InputError(f"labels {unknown} are not among the expected labels {list(labels)}")
    for name, rows in tests.items():
        unknown = sorted({str(r.label) for r in rows} - set(labels))
        if unknown:
            raise InputError(
                f"test set {name!r}: labels {unknown} are not among the training labels "
                f"{list(labels)}; map or drop them (--stars, --label-map, --drop-label)"
            )
    if len(labels) < 2:
        raise InputError(f"need at least two classes to train, found {list(labels)}")
    train, val = stratified_split(train, val_fraction, seed)
    balance = {"train": class_balance(train), "val": class_balance(val)}
    balance.update({f"test:{name}": class_balance(rows) for name, rows in tests.items()})
    ratio = imbalance_ratio(balance["train"])
    if ratio >= IMBALANCE_WARNING_RATIO:
        logger.warning(
            "classes are imbalanced in the training data (largest/smallest = %.2f); "
            "consider --class-weights auto",
            ratio,
        )
    summary = {
        "rows_read": rows_read,
        "rows_dropped": drops.as_dict(),
        "conflicting_duplicates": len(conflicts),
        "conflicting_examples": conflicts[:10],
        "labels": list(labels),
        "rows": {
            "train": len(train),
            "val": len(val),
            **{f"test:{k}": len(v) for k, v in tests.items()},
        },
        "class_balance": balance,
        "imbalance_ratio": round(ratio, 3),
        "seed": seed,
        "val_fraction": val_fraction,
    }
    return FormattedData(list(labels), train, val, tests, summary)
