"""Classify reviews with a bundle's ONNX model on the CPU.

Texts are tokenized, sorted by token length, cut into batches padded only to their own
longest text (dynamic padding), run through ONNX Runtime, and put back in input order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from edgesent.bundle import OUTPUT_NAME, Bundle, Manifest, model_feed, open_bundle
from edgesent.errors import BundleError
from edgesent.tokenization import TextEncoder

logger = logging.getLogger(__name__)

EMPTY_TEXT = "empty text"
MAX_DEFAULT_THREADS = 8  # more threads than this rarely helps a small model
CHUNK_TEXTS = 2048  # texts tokenized together; bounds memory for long inputs


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


def default_threads() -> int:
    """CPUs this process may run on (its affinity, not the host's count), at most 8."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        available = os.cpu_count() or 1
    return max(1, min(available, MAX_DEFAULT_THREADS))


def session_options(threads: int) -> ort.SessionOptions:
    """ONNX Runtime options for low-latency CPU inference on ``threads`` threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, stable for large logits.

    >>> softmax(np.array([[0.0, 0.0], [1000.0, 0.0]])).round(3).tolist()
    [[0.5, 0.5], [1.0, 0.0]]
    """
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


class Classifier:
    """A review-sentiment classifier backed by a verified model bundle.

    Long reviews are cut the way the model was trained (the bundle's ``encoding``); the
    default ``head_tail`` keeps the first ``head_tokens`` tokens and the last
    ``max_length - 2 - head_tokens`` tokens, since reviews often open with a summary and
    end with the verdict. Texts of several megabytes are fine: only their ends are
    tokenized. Blank texts are not sent to the model (see :class:`Prediction`).

    One instance may be shared by many threads: ONNX Runtime sessions run concurrently
    and the tokenizer is only read.

    >>> clf = Classifier.load("models/edgesent-reviews-en")  # doctest: +SKIP
    >>> clf.predict("Stopped working after a week.").label  # doctest: +SKIP
    'negative'
    >>> [p.label for p in clf.predict(["Love it", "Meh"], batch_size=16)]  # doctest: +SKIP
    ['positive', 'negative']
    """

    def __init__(self, bundle: Bundle, session: ort.InferenceSession, tokenizer: Tokenizer,
                 threads: int) -> None:
        self.bundle = bundle
        self.session = session
        self.threads = threads
        self.encoder = TextEncoder(tokenizer, bundle.encoding)
        self._labels = tuple(bundle.labels)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None,
             threads: int | None = None) -> Classifier:
        """Load and verify a bundle; ``path=None`` loads the model shipped with edgesent.

        ``threads`` defaults to the CPUs this process may use (at most 8).

        >>> clf = Classifier.load("models/edgesent-reviews-en", threads=2)  # doctest: +SKIP
        """
        if path is None:
            path = default_bundle_path()
        if threads is None:
            threads = default_threads()
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        bundle, session, tokenizer = open_bundle(path, session_options=session_options(threads))
        logger.info("loaded %s (%s) on %d threads", bundle.name, bundle.path, threads)
        return cls(bundle, session, tokenizer, threads)

    @property
    def labels(self) -> list[str]:
        """Labels in logit order."""
        return list(self._labels)

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    def __repr__(self) -> str:
        return (f"Classifier(name={self.bundle.name!r}, labels={list(self._labels)}, "
                f"threads={self.threads})")

    @overload
    def predict(self, texts: str, batch_size: int = 32) -> Prediction: ...
    @overload
    def predict(self, texts: Iterable[str], batch_size: int = 32) -> list[Prediction]: ...

    def predict(self, texts: str | Iterable[str], batch_size: int = 32
                ) -> Prediction | list[Prediction]:
        """Classify one text (→ a Prediction) or many (→ a list, in input order).

        >>> clf.predict(["Great value", "   "])  # doctest: +SKIP
        [Prediction(label='positive', ...), Prediction(label=None, ..., error='empty text')]
        """
        single = isinstance(texts, str)
        items = _as_texts([texts] if single else texts)
        probs = softmax(self._logits(items, batch_size), self.bundle.temperature)
        predictions = [self._prediction(row) if text.strip() else _blank()
                       for text, row in zip(items, probs, strict=True)]
        return predictions[0] if single else predictions

    def predict_proba(self, texts: str | Iterable[str], batch_size: int = 32) -> np.ndarray:
        """Probabilities, shape ``(n_texts, n_labels)``, temperature applied; blank → NaN row.

        A single string counts as a list of one text.

        >>> clf.predict_proba(["Great value"]).sum(axis=1)  # doctest: +SKIP
        array([1.])
        """
        items = _as_texts([texts] if isinstance(texts, str) else texts)
        return softmax(self._logits(items, batch_size), self.bundle.temperature)

    def predict_logits(self, texts: str | Iterable[str], batch_size: int = 32) -> np.ndarray:
        """Raw logits (no temperature), shape ``(n_texts, n_labels)``; blank → NaN row.

        >>> clf.predict_logits(["Great value"]).shape  # doctest: +SKIP
        (1, 2)
        """
        items = _as_texts([texts] if isinstance(texts, str) else texts)
        return self._logits(items, batch_size)

    # -- internals -----------------------------------------------------------------------

    def _logits(self, items: list[str], batch_size: int) -> np.ndarray:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        out = np.full((len(items), len(self._labels)), np.nan, dtype=np.float32)
        live = [i for i, text in enumerate(items) if text.strip()]
        for start in range(0, len(live), CHUNK_TEXTS):
            rows = live[start : start + CHUNK_TEXTS]
            seqs = self.encoder.token_ids([items[i] for i in rows])
            order = sorted(range(len(rows)), key=lambda k: len(seqs[k]))
            for first in range(0, len(order), batch_size):
                batch = order[first : first + batch_size]
                ids, mask = self.encoder.pad([seqs[k] for k in batch])
                out[[rows[k] for k in batch]] = self._run(ids, mask)
        return out

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        where = f"bundle {self.bundle.path}: {self.bundle.model_path.name}"
        try:
            logits = self.session.run([OUTPUT_NAME], model_feed(self.session, ids, mask))[0]
        except Exception as exc:  # onnxruntime raises several private exception types
            raise BundleError(f"{where}: the model failed on a batch of shape {ids.shape}: "
                              f"{str(exc).strip().splitlines()[0][:300]}") from exc
        if logits.shape != (len(ids), len(self._labels)):
            raise BundleError(f"{where}: the model returned logits of shape {logits.shape} "
                              f"for {len(ids)} texts, but the manifest lists "
                              f"{len(self._labels)} labels ({', '.join(self._labels)})")
        return logits

    def _prediction(self, row: np.ndarray) -> Prediction:
        best = int(np.argmax(row))
        scores = {label: float(p) for label, p in zip(self._labels, row, strict=True)}
        return Prediction(label=self._labels[best], score=float(row[best]), scores=scores)


def _blank() -> Prediction:
    return Prediction(label=None, score=None, scores={}, error=EMPTY_TEXT)


def _as_texts(texts: Iterable[str]) -> list[str]:
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError("texts must be str or an iterable of str, not bytes; decode them first")
    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
    return items
