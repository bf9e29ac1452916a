"""Read labelled reviews as people have them and format them for training.

Reads CSV, TSV, JSONL (gzip too) and Parquet files, and Hugging Face datasets by name
when the hub is reachable. Cleans HTML entities and tags, control characters and stray
whitespace; maps string, integer or star-rating labels; removes duplicates, conflicting
duplicates and train/test leakage; splits a stratified validation set with a seed.

>>> spec = ColumnSpec(text="review", label="rating", stars=parse_star_rule("1-2:neg,4-5:pos"))
>>> rows = read_labelled("reviews.csv", spec)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import logging
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgesent.errors import InputError

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


@dataclass(frozen=True)
class Review:
    """One labelled (or unlabelled, ``label=None``) review after cleaning."""

    text: str
    label: str | None
    source: str = ""
    domain: str | None = None


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


def iter_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_or_row_number, row)`` from a CSV, TSV, JSONL(.gz) or Parquet file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".parquet":
        yield from _iter_parquet(path)
    elif kind in (".jsonl", ".json", ".ndjson"):
        yield from _iter_jsonl(path)
    elif kind in (".csv", ".tsv", ".txt"):
        yield from _iter_delimited(path, "\t" if kind == ".tsv" else ",")
    else:
        raise InputError(f"{path}: unknown file type; expected .csv, .tsv, .jsonl or .parquet")


def _open_binary(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig: spreadsheet programs start CSV files with a byte order mark.
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", errors="strict", newline="")


def _decode_error(path: Path, line_no: int, raw: bytes, exc: UnicodeDecodeError) -> InputError:
    return InputError(
        f"{path}: line {line_no}, column {exc.start + 1}: invalid UTF-8 "
        f"(byte 0x{raw[exc.start]:02x}); re-save the file as UTF-8"
    )


def _locate_bad_utf8(path: Path) -> InputError:
    """The error for the first line that is not UTF-8 (text decoders read ahead by blocks,
    so the line they fail on is not the line at fault)."""
    with _open_binary(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return _decode_error(path, line_no, raw, exc)
    return InputError(f"{path}: invalid UTF-8; re-save the file as UTF-8")


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_binary(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise _decode_error(path, line_no, raw, exc) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{path}: line {line_no}, column {exc.colno}: invalid JSON ({exc.msg})"
                ) from None
            if not isinstance(row, dict):
                raise InputError(f"{path}: line {line_no}: expected a JSON object per line")
            yield line_no, row


def _iter_delimited(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    handle = _open_text(path)
    reader = csv.DictReader(handle, delimiter=delimiter)
    try:
        for row in reader:
            yield reader.line_num, row
    except UnicodeDecodeError:
        raise _locate_bad_utf8(path) from None
    except csv.Error as exc:
        raise InputError(f"{path}: line {reader.reader.line_num}: malformed CSV ({exc})") from None
    finally:
        handle.close()


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('reading Parquet needs pyarrow: pip install "edgesent[export]"') from exc
    table = pq.read_table(path)
    yield from enumerate(table.to_pylist(), start=1)


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


def _column_error(path: str, column: str, available: Iterable[str], role: str) -> InputError:
    import difflib

    names = list(available)
    close = difflib.get_close_matches(column, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return InputError(
        f"{path}: no {role} column {column!r} (columns: {', '.join(names)}){hint}"
    )


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
        rows = iter_rows(path)
    else:
        rows = iter_hub_dataset(str(source), hub_split)
    reviews: list[Review] = []
    dropped_labels = {normalise_label(label) for label in spec.drop_labels}
    checked_columns = False
    for line_no, row in rows:
        if not checked_columns:
            _check_columns(str(source), row, spec, require_labels)
            checked_columns = True
        if any(str(row.get(key)) != value for key, value in spec.where.items()):
            continue
        where = f"{source}: line {line_no}, column {spec.label!r}"
        text = clean_text(str(row.get(spec.text) or ""))
        if spec.title and row.get(spec.title):
            title = clean_text(str(row[spec.title]))
            text = f"{title}. {text}" if text else title
        if not text:
            drops.add("empty text")
            continue
        label = None
        if spec.label is not None:
            label = _label_of(row.get(spec.label), spec, where)
            if label is None and require_labels:
                drops.add("no label")
                continue
            if label in dropped_labels:
                drops.add(f"label {label} dropped")
                continue
        domain = str(row[spec.domain]) if spec.domain and row.get(spec.domain) else None
        reviews.append(Review(text=text, label=label, source=Path(str(source)).name, domain=domain))
    if not checked_columns:
        raise InputError(f"{source}: the file holds no rows")
    return reviews


def _check_columns(source: str, row: dict[str, Any], spec: ColumnSpec, need_label: bool) -> None:
    wanted = [(spec.text, "text")]
    if spec.label is not None and need_label:
        wanted.append((spec.label, "label"))
    wanted += [(c, "title") for c in [spec.title] if c]
    wanted += [(c, "filter") for c in spec.where]
    for column, role in wanted:
        if column not in row:
            raise _column_error(source, column, row.keys(), role)


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


def reviews_to_jsonl(reviews: Iterable[Review], path: str | Path) -> None:
    """Write reviews as JSON Lines (used for predictions and cached splits)."""
    with open(path, "w", encoding="utf-8") as handle:
        for review in reviews:
            handle.write(json.dumps(asdict(review), ensure_ascii=False) + "\n")
