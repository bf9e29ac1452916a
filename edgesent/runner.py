"""The one ONNX runner: texts → logits through a classifier graph, on the CPU.

Everything in edgesent that runs an ONNX classifier goes through :class:`Runner`:
:class:`edgesent.Classifier`, the server, the build half's accuracy gate and report, and
the benchmarks. It owns the session options, the batching and the feed:

1. texts are tokenized in chunks of at most :data:`CHUNK_TEXTS` texts and
   :data:`CHUNK_CHARS` characters (:func:`text_chunks`; bounded memory for huge inputs);
2. a text with no content tokens (blank, or only zero-width or control characters) is
   not sent to the model: its row of logits is NaN;
3. the rest are sorted by length and cut into batches of at most ``batch_size`` texts
   whose padded size (texts × longest text) stays within ``token_budget`` tokens
   (:func:`plan_batches`), so peak memory does not grow with the longest review;
4. each batch runs through ONNX Runtime and the logits go back in input order.

>>> from edgesent.models import DEFAULT_MODEL
>>> runner = Runner.from_bundle(DEFAULT_MODEL, threads=1)
>>> runner.logits(["Broke after a week.", "  "]).shape
(2, 2)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import operator
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgesent.bundle import Bundle, open_bundle
from edgesent.errors import BundleError
from edgesent.graph import OUTPUT_NAME, feed, output_width, signature_problems
from edgesent.tokenization import TextEncoder

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
# Padded tokens (texts × longest text) per model call: 2 reviews of 256 tokens, or 16 of
# 32. Attention holds batch × heads × length² floats, so this bounds the peak and with it
# the arena. On 3,000 real reviews budgets of 256 to 768 ran within noise of each other,
# and 1,024 held 21 MB more (examples/default_model/runtime_options.py).
DEFAULT_TOKEN_BUDGET = 512
# ONNX Runtime's arena keeps freed buffers for the next call. Bounded by the token budget
# it holds a few tens of MB, and it runs real reviews about 3x faster than handing every
# buffer back to the system (measured in the README's memory table).
DEFAULT_MEMORY_ARENA = True
MAX_DEFAULT_THREADS = 8  # more threads than this rarely helps a small model
CHUNK_TEXTS = 256  # texts tokenized together: their tokenizer output is the memory to bound
# ... and at most this many characters: 256 long reviews held 30 MB more than 64 of them.
CHUNK_CHARS = 200_000
# Blocks from this size up are mmap-ed and go back to the system when freed (glibc).
MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number

ProgressHook = Callable[[int], None]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity, not the host's count).

    >>> available_cpus() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int when it is a positive integral number (numpy ints too).

    >>> positive_int(np.int64(8), "batch_size")
    8
    >>> positive_int(0, "threads")
    Traceback (most recent call last):
    ...
    ValueError: threads must be a positive integer, got 0
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def resolve_threads(threads: Any = None) -> int:
    """Intra-op threads to use: by default the CPUs this process may use, at most 8.

    A count above those CPUs only adds contention (and threads by the thousand exhaust
    memory), so it is clamped, with a warning.

    >>> resolve_threads(1)
    1
    >>> resolve_threads(100_000) == available_cpus()
    True
    """
    cpus = available_cpus()
    if threads is None:
        return max(1, min(cpus, MAX_DEFAULT_THREADS))
    count = positive_int(threads, "threads")
    if count > cpus:
        logger.warning("threads=%d is more than the %d CPUs this process may use; using %d",
                       count, cpus, cpus)
        return cpus
    return count


def session_options(threads: int, *,
                    memory_arena: bool = DEFAULT_MEMORY_ARENA) -> ort.SessionOptions:
    """ONNX Runtime options for CPU inference on ``threads`` intra-op threads.

    With the arena on (the default) freed buffers stay in ONNX Runtime's arena for the
    next call; the token budget bounds the largest call and so the arena. No memory
    pattern is planned: batch shapes vary from call to call and each plan would hold a
    buffer of its own. ``memory_arena=False`` hands every buffer back to the system
    after each call (see :func:`return_freed_memory`): the smallest process, at about a
    third of the speed. Pool threads do not spin while waiting, so idle sessions leave
    the cores to others.

    >>> session_options(2).intra_op_num_threads
    2
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = memory_arena
    options.enable_mem_pattern = False
    if not memory_arena:
        return_freed_memory()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


@functools.cache
def return_freed_memory() -> bool:
    """Make glibc hand large freed blocks back to the system; True when it applied.

    With the arena off, ONNX Runtime frees its activation buffers after each call, but
    glibc's malloc keeps them (its mmap threshold grows to the largest block freed), so a
    process stays at the size of its largest batch. A fixed threshold of
    :data:`MMAP_THRESHOLD_BYTES` returns them. Process-wide, once; a no-op off glibc.

    >>> return_freed_memory() in (True, False)
    True
    """
    name = ctypes.util.find_library("c")
    if not name or not hasattr(os, "confstr"):
        return False
    try:
        if "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""):
            return False
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, ValueError, AttributeError):
        return False


def text_chunks(texts: Sequence[str], max_texts: int = CHUNK_TEXTS,
                max_chars: int = CHUNK_CHARS) -> list[tuple[int, int]]:
    """``(start, stop)`` slices of ``texts``, each of at most ``max_texts`` texts and, but
    for a single longer text, ``max_chars`` characters.

    >>> text_chunks(["ab", "cd", "efgh", "i"], max_texts=3, max_chars=4)
    [(0, 2), (2, 3), (3, 4)]
    """
    chunks: list[tuple[int, int]] = []
    start, chars = 0, 0
    for index, text in enumerate(texts):
        size = len(text)
        if index > start and (index - start == max_texts or chars + size > max_chars):
            chunks.append((start, index))
            start, chars = index, 0
        chars += size
    if start < len(texts):
        chunks.append((start, len(texts)))
    return chunks


def plan_batches(lengths: Sequence[int], batch_size: int = DEFAULT_BATCH_SIZE,
                 token_budget: int = DEFAULT_TOKEN_BUDGET) -> list[list[int]]:
    """Indices of ``lengths`` sorted by length, cut into batches of at most ``batch_size``
    whose padded size (count × longest) stays within ``token_budget``.

    A single text longer than the budget still gets a batch of its own.

    >>> plan_batches([5, 1, 4, 2], batch_size=3, token_budget=100)
    [[1, 3, 2], [0]]
    >>> plan_batches([10, 10, 10], batch_size=32, token_budget=20)
    [[0, 1], [2]]
    """
    batch_size = positive_int(batch_size, "batch_size")
    token_budget = positive_int(token_budget, "token_budget")
    batches: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if current and (len(current) == batch_size
                        or (len(current) + 1) * lengths[index] > token_budget):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class Runner:
    """An ONNX classifier graph with its text encoder: ``texts → logits``.

    Safe to share between threads: ONNX Runtime sessions run concurrently and the
    tokenizer is only read.

    >>> from edgesent.models import DEFAULT_MODEL
    >>> runner = Runner.from_bundle(DEFAULT_MODEL, threads=1, token_budget=512)
    >>> runner.token_budget, runner.threads
    (512, 1)
    """

    def __init__(self, session: ort.InferenceSession, encoder: TextEncoder, *,
                 threads: int, name: str, bundle: Bundle | None = None,
                 token_budget: int = DEFAULT_TOKEN_BUDGET) -> None:
        if problems := signature_problems(session):
            raise BundleError(f"{name}: {problems[0]}")
        self.session = session
        self.encoder = encoder
        self.threads = threads
        self.name = name
        self.bundle = bundle
        self.token_budget = positive_int(token_budget, "token_budget")
        self.width = output_width(session)

    @classmethod
    def from_bundle(cls, path: str | os.PathLike[str], threads: Any = None, *,
                    token_budget: int = DEFAULT_TOKEN_BUDGET,
                    memory_arena: bool = DEFAULT_MEMORY_ARENA) -> Runner:
        """Verify a bundle and open its graph (see :func:`edgesent.bundle.open_bundle`)."""
        count = resolve_threads(threads)
        options = session_options(count, memory_arena=memory_arena)
        bundle, session, tokenizer = open_bundle(path, session_options=options)
        encoder = TextEncoder(tokenizer, bundle.encoding)
        runner = cls(session, encoder, threads=count, bundle=bundle,
                     name=f"bundle {bundle.path}: {bundle.model_path.name}",
                     token_budget=token_budget)
        runner.width = len(bundle.labels)  # open_bundle checked a static width against it
        return runner

    @classmethod
    def from_onnx(cls, onnx_path: str | os.PathLike[str], encoder: TextEncoder,
                  threads: Any = None, *, token_budget: int = DEFAULT_TOKEN_BUDGET,
                  memory_arena: bool = DEFAULT_MEMORY_ARENA) -> Runner:
        """Open a bare ONNX graph (no bundle) that reads text through ``encoder``."""
        count = resolve_threads(threads)
        try:
            session = ort.InferenceSession(
                str(onnx_path), sess_options=session_options(count, memory_arena=memory_arena),
                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several private exception types
            raise BundleError(f"{onnx_path}: not an ONNX model onnxruntime can load "
                              f"({str(exc).strip().splitlines()[0][:300]})") from exc
        return cls(session, encoder, threads=count, name=str(Path(onnx_path)),
                   token_budget=token_budget)

    def __repr__(self) -> str:
        return (f"Runner({self.name!r}, threads={self.threads}, "
                f"token_budget={self.token_budget})")

    def logits(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE,
               token_budget: int | None = None,
               on_progress: ProgressHook | None = None) -> np.ndarray:
        """Logits of each text, shape ``(len(texts), labels)``, in input order.

        Texts with no content tokens get a row of NaN. ``on_progress(n)`` is called
        after each batch with the number of texts it finished.
        """
        budget = self.token_budget if token_budget is None else token_budget
        batch_size = positive_int(batch_size, "batch_size")
        out: np.ndarray | None = None if self.width is None else self._empty(len(texts))
        frame = self.encoder.frame_length
        for start, stop in text_chunks(texts):
            seqs = self.encoder.token_ids(texts[start:stop])
            live = [k for k, seq in enumerate(seqs) if len(seq) > frame]
            if on_progress is not None and len(live) < len(seqs):
                on_progress(len(seqs) - len(live))
            for batch in plan_batches([len(seqs[k]) for k in live], batch_size, budget):
                rows = [live[k] for k in batch]
                logits = self.run(*self.encoder.pad([seqs[k] for k in rows]))
                if out is None:
                    self.width = logits.shape[1]
                    out = self._empty(len(texts))
                out[[start + k for k in rows]] = logits
                if on_progress is not None:
                    on_progress(len(rows))
        return out if out is not None else self._empty(len(texts))

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Logits of one padded batch; a failure names the model and the batch shape."""
        try:
            logits = self.session.run([OUTPUT_NAME], feed(self.session, ids, mask))[0]
        except Exception as exc:  # onnxruntime raises several private exception types
            raise BundleError(f"{self.name}: the model failed on a batch of shape "
                              f"{ids.shape}: {str(exc).strip().splitlines()[0][:300]}") from exc
        if logits.ndim != 2 or len(logits) != len(ids) or (
                self.width is not None and logits.shape[1] != self.width):
            expected = "" if self.bundle is None else (
                f", but the manifest lists {len(self.bundle.labels)} labels "
                f"({', '.join(self.bundle.labels)})")
            raise BundleError(f"{self.name}: the model returned logits of shape "
                              f"{logits.shape} for {len(ids)} texts{expected}")
        return np.asarray(logits, dtype=np.float32)

    def _empty(self, n: int) -> np.ndarray:
        return np.full((n, self.width or 0), np.nan, dtype=np.float32)
