"""Classify reviews with a bundle's ONNX model on the CPU.

:class:`Classifier` turns the logits of the one runner (:mod:`edgesent.runner`: length-
sorted batches under a token budget) into calibrated probabilities and predictions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from edgesent.bundle import Bundle, Manifest
from edgesent.errors import BundleError
from edgesent.inputs import join_title
from edgesent.metrics import softmax
from edgesent.runner import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MEMORY_ARENA,
    DEFAULT_TOKEN_BUDGET,
    ProgressHook,
    Runner,
)

logger = logging.getLogger(__name__)

EMPTY_TEXT = "empty text"


@dataclass(frozen=True)
class Prediction:
    """The label of one review, its probability, and every label's probability.

    A blank text gets ``label=None``, ``score=None``, empty ``scores`` and an ``error``.

    >>> Prediction("positive", 0.93, {"negative": 0.07, "positive": 0.93}).to_dict()
    {'label': 'positive', 'score': 0.93, 'scores': {'negative': 0.07, 'positive': 0.93}}
    """

    label: str | None
    score: float | None
    scores: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the text was classified."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """``{label, score, scores}``, or ``{error}`` for a text that was not classified."""
        if self.error is not None:
            return {"error": self.error}
        return {"label": self.label, "score": self.score, "scores": dict(self.scores)}


def default_bundle_path() -> Path:
    """The bundle shipped inside the package; BundleError when this install has none."""
    from edgesent.models import DEFAULT_MODEL

    if not Path(DEFAULT_MODEL).is_dir():
        raise BundleError(
            f"bundle {DEFAULT_MODEL}: this installation of edgesent ships no default model; "
            "pass the path of a model bundle (Classifier.load(PATH), or --model PATH)")
    return Path(DEFAULT_MODEL)


class Classifier:
    """A review-sentiment classifier backed by a verified model bundle.

    Long reviews are cut the way the model was trained (the bundle's ``encoding``); the
    default ``head_tail`` keeps the first ``head_tokens`` tokens and the last
    ``max_length - 2 - head_tokens`` tokens, since reviews often open with a summary and
    end with the verdict. Texts of several megabytes are fine: only their ends are
    tokenized. Texts with no content (blank, or only zero-width or control characters)
    are not sent to the model (see :class:`Prediction`); lone surrogates are read as
    U+FFFD. One instance may be shared by many threads.

    >>> clf = Classifier.load(threads=1)
    >>> clf.predict("Stopped working after a week, and support never answered.").label
    'negative'
    >>> [p.label for p in clf.predict(["Love it, works perfectly!", "\u200b"])]
    ['positive', None]
    """

    def __init__(self, bundle: Bundle, runner: Runner) -> None:
        self.bundle = bundle
        self.runner = runner
        self._labels = tuple(bundle.labels)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, threads: int | None = None, *,
             token_budget: int = DEFAULT_TOKEN_BUDGET,
             memory_arena: bool = DEFAULT_MEMORY_ARENA) -> Classifier:
        """Load and verify a bundle; ``path=None`` loads the model shipped with edgesent.

        ``threads`` defaults to the CPUs this process may use (at most 8) and is clamped
        to them. ``token_budget`` caps the padded tokens (texts × longest text) of one
        model call, which bounds peak memory. ONNX Runtime's arena keeps freed buffers for
        the next call (at most one call's worth, under the budget); ``memory_arena=False``
        hands them back to the system after each call: a smaller process, about a third
        of the speed.

        >>> Classifier.load(threads=1, token_budget=2048).runner.token_budget
        2048
        """
        if path is None:
            path = default_bundle_path()
        runner = Runner.from_bundle(path, threads, token_budget=token_budget,
                                    memory_arena=memory_arena)
        assert runner.bundle is not None
        logger.info("loaded %s (%s) on %d threads", runner.bundle.name, runner.bundle.path,
                    runner.threads)
        return cls(runner.bundle, runner)

    @property
    def labels(self) -> list[str]:
        """Labels in logit order."""
        return list(self._labels)

    @property
    def threads(self) -> int:
        """ONNX Runtime intra-op threads."""
        return self.runner.threads

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    def __repr__(self) -> str:
        return (f"Classifier(name={self.bundle.name!r}, labels={list(self._labels)}, "
                f"threads={self.threads})")

    @overload
    def predict(self, texts: str, batch_size: int = DEFAULT_BATCH_SIZE, *,  # type: ignore[overload-overlap]
                titles: str | None = None,
                on_progress: ProgressHook | None = None) -> Prediction: ...
    @overload
    def predict(self, texts: Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE, *,
                titles: Iterable[str | None] | None = None,
                on_progress: ProgressHook | None = None) -> list[Prediction]: ...

    def predict(self, texts: str | Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE, *,
                titles: str | Iterable[str | None] | None = None,
                on_progress: ProgressHook | None = None) -> Prediction | list[Prediction]:
        """Classify one text (→ a Prediction) or many (→ a list, in input order).

        ``titles`` (one per text, None where a review has none) are joined before the
        texts the way training joins them (:func:`edgesent.inputs.join_title`).
        ``on_progress(n)`` is called as batches finish, with the number of texts done.

        >>> clf = Classifier.load(threads=1)
        >>> [p.error for p in clf.predict(["Great value", "   "])]
        [None, 'empty text']
        >>> clf.predict("Sent it back the next day.", titles="Do not buy").label
        'negative'
        """
        single = isinstance(texts, str)
        probs = self.predict_proba(texts, batch_size, titles=titles, on_progress=on_progress)
        predictions = [self._prediction(row) for row in probs]
        return predictions[0] if single else predictions

    def predict_proba(self, texts: str | Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE,
                      *, titles: str | Iterable[str | None] | None = None,
                      on_progress: ProgressHook | None = None) -> np.ndarray:
        """Probabilities, shape ``(n_texts, n_labels)``, temperature applied; blank → NaN row.

        A single string counts as a list of one text; ``titles`` as in :meth:`predict`.

        >>> Classifier.load(threads=1).predict_proba(["Great value"]).sum(axis=1).round(6)
        array([1.])
        """
        logits = self.predict_logits(texts, batch_size, titles=titles, on_progress=on_progress)
        return softmax(logits, self.bundle.temperature)

    def predict_logits(self, texts: str | Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE,
                       *, titles: str | Iterable[str | None] | None = None,
                       on_progress: ProgressHook | None = None) -> np.ndarray:
        """Raw logits (no temperature), shape ``(n_texts, n_labels)``; blank → NaN row.

        >>> Classifier.load(threads=1).predict_logits(["Great value"]).shape
        (1, 2)
        """
        items = as_texts(texts)
        if titles is not None:
            items = with_titles(items, titles)
        return self.runner.logits(items, batch_size=batch_size, on_progress=on_progress)

    def _prediction(self, row: np.ndarray) -> Prediction:
        if np.isnan(row).any():
            return Prediction(label=None, score=None, scores={}, error=EMPTY_TEXT)
        best = int(np.argmax(row))
        scores = {label: float(p) for label, p in zip(self._labels, row, strict=True)}
        return Prediction(label=self._labels[best], score=float(row[best]), scores=scores)


def with_titles(texts: list[str], titles: str | Iterable[str | None]) -> list[str]:
    """Each text with its title joined before it (:func:`edgesent.inputs.join_title`).

    >>> with_titles(["Sent it back.", "Works."], ["Broke in a week", None])
    ['Broke in a week. Sent it back.', 'Works.']
    >>> with_titles(["a", "b"], ["only one"])
    Traceback (most recent call last):
    ...
    ValueError: 1 title(s) for 2 text(s): give one title (or None) per text
    """
    items: list[str | None] = [titles] if isinstance(titles, str) else list(titles)
    if len(items) != len(texts):
        raise ValueError(f"{len(items)} title(s) for {len(texts)} text(s): give one title "
                         "(or None) per text")
    for index, title in enumerate(items):
        if title is not None and not isinstance(title, str):
            raise TypeError(f"titles[{index}] is {type(title).__name__}, expected str or None")
    return [join_title(title, text) for title, text in zip(items, texts, strict=True)]


def as_texts(texts: object) -> list[str]:
    """``texts`` as a list of strings: one string, or an iterable of them.

    >>> as_texts("one review")
    ['one review']
    >>> as_texts(None)
    Traceback (most recent call last):
    ...
    TypeError: texts must be a string or an iterable of strings, not None
    """
    if isinstance(texts, str):
        return [texts]
    if texts is None or isinstance(texts, (bytes, bytearray, Mapping)) or not isinstance(
            texts, Iterable):
        kind = "None" if texts is None else f"a {type(texts).__name__}"
        if isinstance(texts, (bytes, bytearray)):
            hint = " (decode them first)"
        elif isinstance(texts, Mapping):
            hint = " (pass its keys or values)"
        else:
            hint = ""
        raise TypeError(f"texts must be a string or an iterable of strings, not {kind}{hint}")
    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
    return items
