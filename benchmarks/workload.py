"""The texts a run feeds the systems: labelled test sets, and reviews of exact token lengths.

Test data is read and cleaned by ``edgesent_export`` (the same formatting as ``edgesent
build``): FDU-MTL test (deduplicated, and with every text that also stands in the training
data removed) and MARC-en validation (stars 1-2 negative, 4-5 positive, 3 dropped; title
joined to the text).

>>> data = load_eval_data(Path("../shared/data/reviews"))  # doctest: +SKIP
>>> sorted(data.tests)  # doctest: +SKIP
['fdu_mtl_test', 'marc_en_val']
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LABELS = ["negative", "positive"]
MOVIE_DOMAINS = frozenset({"imdb", "MR"})
FILLERS = ("good", "the", "and", "it", "is", "a", "i", "was", "to")
# Used to build timing texts when no review data is given (written for this harness).
SYNTHETIC_REVIEWS = (
    "The blender arrived quickly and crushes ice without any trouble at all.",
    "Battery life is much shorter than advertised and the case scratches easily.",
    "I bought this kettle for the office and everyone uses it every morning.",
    "Sound quality is clear, but the headband started to crack after a month.",
    "Returned it the next day because the screen had a dead pixel in the corner.",
    "Comfortable shoes, true to size, and they still look new after long walks.",
    "The manual was confusing and setup took most of the afternoon.",
    "Great value for the price; my kids play with it all the time.",
    "Stopped charging after two weeks and customer service never replied.",
    "The fabric feels cheap and the stitching came loose after one wash.",
    "Works exactly as described and the app connects without problems.",
    "Too noisy to use at night, although it cleans the floor well enough.",
)


@dataclass
class TestSet:
    """One labelled test set; ``domains`` holds a domain per row (or None)."""

    name: str
    texts: list[str]
    labels: list[str]
    domains: list[str | None]

    def __len__(self) -> int:
        return len(self.texts)

    def order(self, seed: int) -> list[int]:
        """A fixed shuffle of the row indices; capped evaluations take its prefix."""
        rows = list(range(len(self.texts)))
        random.Random(f"{seed}:{self.name}").shuffle(rows)
        return rows

    def rows(self, cap: int | None, seed: int) -> list[int]:
        """Row indices evaluated under ``cap`` (all rows, in file order, when None)."""
        if cap is None or cap >= len(self.texts):
            return list(range(len(self.texts)))
        return sorted(self.order(seed)[:cap])


@dataclass
class EvalData:
    """Training texts (for the TF-IDF baseline and for timing texts) and test sets."""

    labels: list[str]
    train_texts: list[str]
    train_labels: list[str]
    tests: dict[str, TestSet]
    summary: dict[str, Any] = field(default_factory=dict)


def default_sources(data_dir: Path) -> Any:
    """The sources of the default build: FDU-MTL train + pycaret_amazon to train,
    FDU-MTL test and MARC-en validation to test."""
    from edgesent_export.data import ColumnSpec
    from edgesent_export.sources import Source, Sources

    def path(name: str) -> str:
        return str(data_dir / name)

    fdu, pycaret, marc = "fdu_mtl.jsonl.gz", "pycaret_amazon.jsonl.gz", "marc_en_val.jsonl.gz"
    train, test = [], {}
    if (data_dir / fdu).exists():
        train.append(Source(path(fdu), ColumnSpec(domain="domain", where={"split": "train"})))
        test["fdu_mtl_test"] = Source(
            path(fdu), ColumnSpec(domain="domain", where={"split": "test"}))
    if (data_dir / pycaret).exists():
        train.append(Source(path(pycaret), ColumnSpec()))
    if (data_dir / marc).exists():
        stars = {1: "negative", 2: "negative", 3: "neutral", 4: "positive", 5: "positive"}
        test["marc_en_val"] = Source(path(marc), ColumnSpec(
            label="stars", title="title", stars=stars, drop_labels=("neutral",)))
    return Sources(train=train, test=test, labels=list(LABELS))


def load_eval_data(data_dir: Path | None, sources_file: Path | None = None,
                   seed: int = 13) -> tuple[EvalData | None, str | None]:
    """Read and format the review data; ``(None, reason)`` when there is none to read."""
    from edgesent_export.data import DropCounts, dedup_key, format_dataset
    from edgesent_export.sources import load_sources

    if sources_file is not None:
        sources = load_sources(sources_file, data_dir)
    elif data_dir is None:
        return None, "no data directory (give --data DIR or set EDGESENT_DATA): accuracy skipped"
    elif not Path(data_dir).is_dir():
        return None, f"data directory {data_dir} does not exist: accuracy skipped"
    else:
        sources = default_sources(Path(data_dir))
    if not sources.train or not sources.test:
        return None, f"{data_dir}: no training or no test files found: accuracy skipped"
    logger.info("reading review data (%d training and %d test sources)",
                len(sources.train), len(sources.test))
    drops = DropCounts()
    train_sets = [source.read(drops) for source in sources.train]
    raw_tests = {name: source.read(drops) for name, source in sources.test.items()}
    formatter_log = logging.getLogger("edgesent_export.data")
    level = formatter_log.level
    formatter_log.setLevel(logging.ERROR)  # its advice on class weights is for training runs
    try:
        data = format_dataset(train_sets, raw_tests, val_fraction=0.05, seed=seed,
                              labels=sources.labels or LABELS, drops=drops)
    finally:
        formatter_log.setLevel(level)
    train_keys = {dedup_key(r.text) for rows in train_sets for r in rows}
    tests: dict[str, TestSet] = {}
    removed: dict[str, int] = {}
    for name, rows in data.test.items():
        kept = [r for r in rows if dedup_key(r.text) not in train_keys]
        removed[name] = len(rows) - len(kept)
        tests[name] = TestSet(name, [r.text for r in kept], [str(r.label) for r in kept],
                              [r.domain for r in kept])
    summary = {
        "sources_file": str(sources_file) if sources_file else None,
        "sources": sources.describe(),
        "rows": {"train": len(data.train), **{name: len(t) for name, t in tests.items()}},
        "test_rows_also_in_training_data_removed": removed,
        "rows_dropped": data.summary.get("rows_dropped"),
    }
    logger.info("test sets: %s", ", ".join(f"{n} ({len(t)} rows)" for n, t in tests.items()))
    return EvalData(list(data.labels), [r.text for r in data.train],
                    [str(r.label) for r in data.train], tests, summary), None


def eval_groups(test: TestSet, rows: list[int]) -> dict[str, list[int]]:
    """Positions (into ``rows``) of each reported group: the whole set, its product
    domains without the movie domains (when it has both), and each domain."""
    groups: dict[str, list[int]] = {test.name: list(range(len(rows)))}
    domains = [test.domains[i] for i in rows]
    present = {d for d in domains if d is not None}
    if present & MOVIE_DOMAINS and present - MOVIE_DOMAINS:
        groups[f"{test.name}:products"] = [
            k for k, d in enumerate(domains) if d is not None and d not in MOVIE_DOMAINS]
    for domain in sorted(present):
        groups[f"{test.name}:{domain}"] = [k for k, d in enumerate(domains) if d == domain]
    return groups


# ---------------------------------------------------------------------------- timing texts


def review_words(data: EvalData | None, limit: int = 4000) -> list[list[str]]:
    """Words of real reviews (training texts) or, without data, of built-in sentences."""
    texts = data.train_texts[:limit] if data is not None and data.train_texts else []
    if not texts:
        texts = [" ".join(SYNTHETIC_REVIEWS[i:] + SYNTHETIC_REVIEWS[:i])
                 for i in range(len(SYNTHETIC_REVIEWS))]
    return [text.split() for text in texts if text.split()]


def exact_length_text(tokenizer: Any, words: list[str], target: int, fillers: list[str]) -> str:
    """A text of ``words`` (cut or padded with one-token fillers) that ``tokenizer``
    encodes into exactly ``target`` tokens, special tokens included."""
    specials = len(tokenizer.encode("", add_special_tokens=True).ids)
    budget = target - specials
    counts = [len(e.ids) for e in tokenizer.encode_batch(words, add_special_tokens=False)]
    chosen: list[str] = []
    total = 0
    for word, count in zip(words, counts, strict=True):
        if count == 0:
            continue
        if total + count > budget:
            break
        chosen.append(word)
        total += count
    chosen += [fillers[i % len(fillers)] for i in range(max(budget - total, 0))]
    for _ in range(4 * target):  # tokenizers that are not additive per word: adjust
        n = len(tokenizer.encode(" ".join(chosen), add_special_tokens=True).ids)
        if n == target:
            return " ".join(chosen)
        if n > target and chosen:
            chosen.pop()
        else:
            chosen.append(fillers[len(chosen) % len(fillers)])
    raise ValueError(f"cannot build a text of exactly {target} tokens with this tokenizer")


def one_token_fillers(tokenizer: Any) -> list[str]:
    fillers = [w for w in FILLERS
               if len(tokenizer.encode(w, add_special_tokens=False).ids) == 1]
    if not fillers:
        raise ValueError("the tokenizer has no one-token filler word among " + ", ".join(FILLERS))
    return fillers


def length_texts(tokenizer_file: Path, data: EvalData | None, lengths: tuple[int, ...],
                 variants: int = 8, seed: int = 13) -> dict[int, list[str]]:
    """``variants`` texts of exactly each length (as ``tokenizer_file`` counts tokens),
    made of consecutive words of real reviews."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    fillers = one_token_fillers(tokenizer)
    reviews = review_words(data)
    rng = random.Random(seed)
    out: dict[int, list[str]] = {}
    for target in lengths:
        texts = []
        for _ in range(variants):
            start = rng.randrange(len(reviews))
            words: list[str] = []
            k = start
            while len(words) < 2 * target:  # a word is at least one token
                words += reviews[k % len(reviews)]
                k += 1
            texts.append(exact_length_text(tokenizer, words, target, fillers))
        out[target] = texts
    return out


def rss_texts(data: EvalData | None, lengths: dict[int, list[str]], n: int) -> list[str]:
    """``n`` reviews for the memory workload: the test texts, cycled to ``n``; without
    data, the timing texts of every length, cycled."""
    pool = [t for test in data.tests.values() for t in test.texts] if data else []
    if not pool:
        pool = [t for texts in lengths.values() for t in texts]
    return [pool[i % len(pool)] for i in range(n)]
