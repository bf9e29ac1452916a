"""Distil a fine-tuned teacher into a smaller DistilBERT student.

The student learns the teacher's softened outputs (KL divergence at a temperature, scaled
by its square as in Hinton et al.) on every review, labelled or not, plus cross-entropy
on the hard labels where there are some. Teacher and student each read the text through
their own tokenizer, so the teacher may be wider or of another family (MPNet-base, whose
ids are not BERT's) while the student starts from a same-width encoder
(``student_init``). The teacher's logits are computed once, by PyTorch or by the
teacher's int8 ONNX graph, and cached in the run directory keyed to the teacher, so a
resumed run does not pay for them again. Under ``torchrun`` rank 0 computes and caches
them while the other ranks wait, then they read its cache; the student then trains
data-parallel as fine-tuning does, and only rank 0 writes.

>>> result = distill("runs/mpnet/best", data, "runs/student",  # doctest: +SKIP
...                  student_init="runs/minilm/best", logits_from="onnx-int8",
...                  unlabelled=read_reviews("more.jsonl", ColumnSpec(label=None)))
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgesent.errors import InputError
from edgesent.tokenization import EncodingSettings, TextEncoder

from .data import FormattedData, Review, dedup_key
from .distributed import main_process_first, main_process_only
from .student import make_student
from .teacher_record import LOGITS_FILE as TEACHER_LOGITS_FILE
from .teacher_record import (
    logits_fingerprint,
    recorded_logits,
    reusable_logits,
    teacher_identity,
)
from .torch_data import IGNORE_LABEL, EncodedSet, predict_logits
from .training import LossFn, TrainConfig
from .training_run import (
    TrainingResult,
    encode_reviews,
    start_run,
    train_and_report,
)

logger = logging.getLogger(__name__)

# Where a teacher's logits come from: its PyTorch model, or its int8 ONNX graph.
TEACHER_LOGITS = ("torch", "onnx-int8")
# Where, in a student's run directory, the teacher's int8 graph is made.
TEACHER_ONNX_DIR = "teacher-onnx"
# Texts per saved chunk of teacher logits (minutes of a big teacher on a CPU).
LOGIT_CHUNK = 4096
# What early stopping on validation may watch (see early_stop_monitor).
EARLY_STOP = ("loss", "kl", "agreement")


@dataclass(frozen=True)
class DistillSettings:
    """The student's depth (None: half its initialisation's), the distillation loss,
    what initialises the student (None: the teacher), where the teacher's logits come
    from (one of :data:`TEACHER_LOGITS`) and how many tokens the teacher reads (None: as
    many as the student; fewer lets a student read longer reviews than a teacher's
    cached logits were computed on) and a record of the teacher at a shorter length
    whose logits it reuses for the texts that length did not cut (None: none).

    >>> DistillSettings(alpha=2.0)
    Traceback (most recent call last):
    ...
    ValueError: alpha must lie in [0, 1], got 2.0
    """

    layers: int | None = None
    temperature: float = 2.0
    alpha: float = 0.5
    student_init: Path | None = None
    teacher_logits: str = "torch"
    early_stop: str = "loss"
    ffn: int | None = None  # feed-forward units per layer (None: the initialisation's)
    teacher_max_length: int | None = None
    reuse_logits: Path | None = None

    def __post_init__(self) -> None:
        if self.early_stop not in EARLY_STOP:
            raise ValueError(f"early stopping on {self.early_stop!r}: expected one of "
                             f"{EARLY_STOP}")
        if self.teacher_logits not in TEACHER_LOGITS:
            raise ValueError(f"teacher logits from {self.teacher_logits!r}: expected one of "
                             f"{TEACHER_LOGITS}")
        if not self.temperature > 0:
            raise ValueError(f"the distillation temperature must be positive, "
                             f"got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.layers is not None and self.layers < 1:
            raise ValueError(f"the student needs at least 1 layer, got {self.layers}")
        if self.ffn is not None and self.ffn < 1:
            raise ValueError(f"the student's feed-forward blocks need at least 1 unit, "
                             f"got {self.ffn}")
        if self.teacher_max_length is not None and self.teacher_max_length < 4:
            raise ValueError(f"the teacher needs at least 4 tokens, got {self.teacher_max_length}")

    def teacher_encoding(self, encoding: EncodingSettings) -> EncodingSettings:
        """What the teacher reads: ``encoding``, cut to :attr:`teacher_max_length`.

        >>> DistillSettings(teacher_max_length=128).teacher_encoding(
        ...     EncodingSettings(256, "head_tail", 32))
        EncodingSettings(max_length=128, truncation='head_tail', head_tokens=32)
        """
        if self.teacher_max_length is None:
            return encoding
        return replace(encoding, max_length=self.teacher_max_length,
                       head_tokens=min(encoding.head_tokens, self.teacher_max_length))


def distillation_loss(temperature: float = DistillSettings.temperature,
                      alpha: float = DistillSettings.alpha) -> LossFn:
    """``alpha`` · T² · KL(teacher‖student at T) + (1 − ``alpha``) · CE(hard labels).

    Rows without a label (``-100``) contribute only the KL term; rows without teacher
    logits (NaN) only the cross-entropy.
    """
    import torch
    import torch.nn.functional as F

    DistillSettings(temperature=temperature, alpha=alpha)  # checks both

    def loss_fn(logits: Any, batch: dict[str, Any]) -> Any:
        teacher = batch["teacher_logits"]
        known = torch.isfinite(teacher).all(dim=-1)  # NaN: no content tokens for the teacher
        kd = F.kl_div(
            F.log_softmax(logits[known] / temperature, dim=-1),
            F.log_softmax(teacher[known] / temperature, dim=-1),
            reduction="sum",
            log_target=True,
        ) * (temperature**2) / max(1, int(known.sum()))
        labelled = batch["labels"] != IGNORE_LABEL
        if alpha < 1 and bool(labelled.any()):
            ce = F.cross_entropy(logits[labelled], batch["labels"][labelled])
            return alpha * kd + (1 - alpha) * ce
        return kd if alpha > 0 else torch.zeros((), device=logits.device, requires_grad=True)

    return loss_fn


def teacher_logits(
    teacher: str | Path,
    texts: Sequence[str],
    encoding: EncodingSettings,
    *,
    source: str = "torch",
    cache: Path | None = None,
    work_dir: Path | None = None,
    threads: int | None = None,
    progress: bool = True,
    reuse: Path | None = None,
) -> np.ndarray:
    """The teacher's logits over ``texts``, each read through the teacher's own tokenizer
    (so a teacher whose vocabulary differs from the student's, MPNet's say, sees its own
    ids); row ``i`` belongs to ``texts[i]``. ``source`` is ``"torch"`` (the fp32 model) or
    ``"onnx-int8"`` (its int8 ONNX export, made once in ``work_dir``, run through
    :class:`edgesent.runner.Runner`). Read from ``cache`` when the teacher
    (:func:`teacher_identity`), the source, the encoding and the texts are the ones it was
    written for; computed :data:`LOGIT_CHUNK` texts at a time, each chunk saved beside the
    cache, so a run killed half way (a session's end) resumes at its last chunk. A text
    with no content tokens for the teacher gets a NaN row. ``reuse``, a record of this
    teacher at a shorter reading length, gives the rows of the texts that length did not
    cut (:func:`~edgesent_export.teacher_record.reusable_logits`); the teacher reads the
    others."""
    from .logits import onnx_logits, torch_logits
    from .training_run import load_tokenizer, make_encoder

    if source not in TEACHER_LOGITS:
        raise ValueError(f"teacher logits from {source!r}: expected one of {TEACHER_LOGITS}")
    identity = teacher_identity(teacher)
    digest = logits_fingerprint(texts, identity, source, encoding)
    about = {"teacher": identity, "source": source, "texts": len(texts),
             "encoding": asdict(encoding)}
    recorded = recorded_logits(teacher, digest)  # a teacher record: its logits, or an error
    if recorded is not None:
        return cached_logits(cache, digest, lambda: recorded, about)

    @functools.cache
    def encoder() -> TextEncoder:  # the teacher's tokenizer, loaded once and only if needed
        return make_encoder(load_tokenizer(teacher), encoding)

    def run(part: Sequence[str]) -> np.ndarray:
        count = threads or _torch_threads()
        if source == "torch":
            return torch_logits(teacher, encoder(), part, threads=count, progress=progress)
        onnx = teacher_int8(teacher, work_dir or Path(teacher) / "onnx", identity)
        return onnx_logits(onnx, encoder(), part, threads=count, progress=progress)

    def in_chunks(todo: Sequence[str], key: str) -> np.ndarray:
        if cache is None:
            return run(todo)
        parts = cache.with_name(cache.stem + ".parts")  # a killed run keeps its chunks
        parts.mkdir(exist_ok=True)
        chunks = []
        for number, start in enumerate(range(0, len(todo), LOGIT_CHUNK)):
            path = parts / f"{key[:16]}-{number:05d}.npy"
            if path.is_file():
                chunks.append(np.load(path, allow_pickle=False))
                continue
            chunks.append(run(todo[start:start + LOGIT_CHUNK]))
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as handle:
                np.save(handle, chunks[-1], allow_pickle=False)
            tmp.rename(path)
        logits = np.concatenate(chunks) if chunks else run(todo)
        shutil.rmtree(parts, ignore_errors=True)
        return logits

    def compute() -> np.ndarray:
        if reuse is None:
            return in_chunks(texts, digest)
        logits, cut = reusable_logits(reuse, texts, identity, source, encoder())
        logger.info("teacher logits: %d of %d texts from %s, %d read again at %d tokens",
                    len(texts) - len(cut), len(texts), reuse, len(cut), encoding.max_length)
        about["reused"] = {"record": str(reuse), "read_again": len(cut)}
        todo = [texts[i] for i in cut]
        if todo:
            logits[cut] = in_chunks(todo, logits_fingerprint(todo, identity, source, encoding))
        return logits

    return cached_logits(cache, digest, compute, about)


def cached_logits(cache: Path | None, fingerprint: str, compute: Any,
                  about: dict[str, Any] | None = None) -> np.ndarray:
    """``compute()``, or what ``cache`` holds when it was written for ``fingerprint``;
    ``about`` (the teacher, source, text count) is written beside the fingerprint."""
    if cache is not None and cache.exists():
        meta = cache.with_suffix(".json")
        if meta.exists() and json.loads(meta.read_text()).get("fingerprint") == fingerprint:
            logger.info("teacher logits read from %s", cache)
            return np.load(cache, allow_pickle=False)
    logits = compute()
    if cache is not None:
        np.save(cache, logits, allow_pickle=False)
        stamp = {"fingerprint": fingerprint, **(about or {})}
        cache.with_suffix(".json").write_text(json.dumps(stamp))
    return logits


def teacher_int8(teacher: str | Path, work_dir: Path, identity: str | None = None) -> Path:
    """The teacher's int8 ONNX graph (Optimum export, then
    :func:`~edgesent_export.quantize.quantize` with the default settings), made once in
    ``work_dir`` and remade when the teacher changes."""
    from edgesent.bundle import MODEL_FILE

    from .onnx_export import export_onnx
    from .quantize import quantize

    identity = identity or teacher_identity(teacher)
    int8, stamp = work_dir / "int8" / MODEL_FILE, work_dir / "teacher.json"
    if int8.is_file() and stamp.is_file() and \
            json.loads(stamp.read_text()).get("teacher") == identity:
        return int8
    fp32 = export_onnx(teacher, work_dir / "fp32", validate=False)
    quantize(fp32, work_dir / "int8")
    shutil.rmtree(work_dir / "fp32", ignore_errors=True)  # 438 MB for MPNet-base
    stamp.write_text(json.dumps({"teacher": identity}))
    return int8


def compare_teacher_sources(teacher: str | Path, texts: Sequence[str],
                            encoding: EncodingSettings, work_dir: Path,
                            threads: int = 1) -> dict[str, float]:
    """The teacher's logits on ``texts`` from PyTorch and from its int8 ONNX graph: the
    seconds each took (the one-off export and quantization apart), how often their
    argmax agrees, the mean KL(torch ‖ int8) and the largest logit difference.

    >>> compare_teacher_sources("runs/mpnet/best", texts, EncodingSettings(128),  # doctest: +SKIP
    ...                         Path("runs/mpnet/onnx"))["agreement"]
    0.998
    """
    import time

    start = time.perf_counter()
    teacher_int8(teacher, work_dir)
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    fp32 = teacher_logits(teacher, texts, encoding, threads=threads, progress=False)
    torch_s = time.perf_counter() - start
    start = time.perf_counter()
    int8 = teacher_logits(teacher, texts, encoding, source="onnx-int8", work_dir=work_dir,
                          threads=threads, progress=False)
    onnx_s = time.perf_counter() - start
    close = teacher_agreement(int8, fp32)
    known = np.isfinite(fp32).all(axis=1)
    return {"texts": len(texts), "threads": threads, "export_seconds": round(export_s, 2),
            "torch_seconds": round(torch_s, 3), "onnx_int8_seconds": round(onnx_s, 3),
            "speedup": round(torch_s / onnx_s, 2), "agreement": close["agreement"],
            "kl": close["kl"],
            "max_abs_diff": float(np.abs(int8[known] - fp32[known]).max(initial=0.0))}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def teacher_agreement(student: np.ndarray, teacher: np.ndarray,
                      temperature: float = 1.0) -> dict[str, float]:
    """How close the student's outputs are to the teacher's: the share of rows where
    their argmax agrees, and the mean KL(teacher ‖ student); rows the teacher has no
    logits for (NaN) are left out.

    >>> close = teacher_agreement(np.array([[2.0, 0.0], [0.0, 1.0]]),
    ...                           np.array([[1.0, 0.0], [1.0, 0.0]]))
    >>> close["agreement"], round(close["kl"], 4)
    (0.5, 0.2724)
    """
    from edgesent.metrics import softmax

    known = np.isfinite(teacher).all(axis=1)
    student, teacher = student[known], teacher[known]
    if not len(teacher):
        return {"agreement": float("nan"), "kl": float("nan")}
    p_teacher = softmax(teacher, temperature)
    p_student = softmax(student, temperature)
    eps = 1e-12
    kl = np.sum(p_teacher * (np.log(p_teacher + eps) - np.log(p_student + eps)), axis=1)
    agree = np.mean(student.argmax(axis=1) == teacher.argmax(axis=1))
    return {"agreement": float(agree), "kl": float(np.mean(kl))}


def early_stop_monitor(kind: str, teacher: np.ndarray, temperature: float = 1.0
                       ) -> Callable[[np.ndarray], dict[str, float]] | None:
    """What validation early stopping watches, as a function of the student's validation
    logits: ``"loss"`` (the trainer's own hard-label NLL: None), ``"kl"`` (KL to the
    teacher's ``teacher`` logits at ``temperature``) or ``"agreement"`` (argmax agreement
    with the teacher). The function returns ``monitor`` (lower is better) beside
    ``val_teacher_kl`` and ``val_teacher_agreement``, for ``history.json``.

    It is the ``monitor`` of :class:`~edgesent_export.training.Trainer`: it replaces the
    validation loss for the best weights and the patience.

    >>> watch = early_stop_monitor("agreement", np.array([[2.0, 0.0], [0.0, 2.0]]))
    >>> watch(np.array([[1.0, 0.0], [1.0, 0.0]]))["monitor"]
    0.5
    """
    if kind not in EARLY_STOP:
        raise ValueError(f"early stopping on {kind!r}: expected one of {EARLY_STOP}")
    if kind == "loss":
        return None

    def watch(logits: np.ndarray) -> dict[str, float]:
        close = teacher_agreement(logits, teacher, temperature)
        score = close["kl"] if kind == "kl" else 1.0 - close["agreement"]
        return {"monitor": score, "val_teacher_kl": close["kl"],
                "val_teacher_agreement": close["agreement"]}

    return watch


def kl_to_teacher(student: Any, data: EncodedSet, pad_id: int, temperature: float = 1.0) -> float:
    """Mean KL divergence from the teacher's (cached) distribution to the student's."""
    assert data.teacher_logits is not None
    logits = predict_logits(student, data, pad_id)
    return teacher_agreement(logits, data.teacher_logits, temperature)["kl"]


def distill(
    teacher: str | Path,
    data: FormattedData,
    out_dir: str | Path,
    *,
    student_init: str | Path | None = None,
    unlabelled: Sequence[Review] = (),
    n_layers: int | None = None,
    ffn: int | None = None,
    config: TrainConfig | None = None,
    encoding: EncodingSettings | None = None,
    temperature: float = DistillSettings.temperature,
    alpha: float = DistillSettings.alpha,
    logits_from: str = "torch",
    early_stop: str = "loss",
    teacher_max_length: int | None = None,
    reuse_logits: Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainingResult:
    """Distil ``teacher`` (a fine-tuned model directory) into a DistilBERT student.

    The student starts from ``student_init`` (default: the teacher), every other layer;
    the teacher may be any width and architecture transformers classifies with (MPNet,
    BERT, DistilBERT), since only its logits are used, each computed on the text through
    the teacher's own tokenizer (``logits_from``: see :func:`teacher_logits`). ``ffn``
    prunes the student's feed-forward blocks (:func:`~edgesent_export.student.prune_ffn`).
    ``early_stop`` picks what validation watches (:func:`early_stop_monitor`);
    ``teacher_max_length`` lets the teacher read fewer tokens than the student;
    ``reuse_logits`` (a record of the teacher at a shorter length) spares it the texts
    that length did not cut.
    """
    settings = DistillSettings(n_layers, temperature, alpha, teacher_logits=logits_from,
                               early_stop=early_stop, ffn=ffn,
                               teacher_max_length=teacher_max_length, reuse_logits=reuse_logits)
    config = config or TrainConfig()
    encoding = encoding or EncodingSettings()
    init = Path(student_init) if student_init is not None else teacher
    _check_labels(teacher, data.labels, "teacher")
    out, started, tokenizer, encoder = start_run(init, out_dir, encoding)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    train_rows, texts = distillation_texts(data, unlabelled)
    extra = train_rows[len(data.train):]
    with main_process_first():  # rank 0 computes and caches them; the others read the cache
        logits = teacher_logits(teacher, texts, settings.teacher_encoding(encoding),
                                source=logits_from,
                                cache=out / TEACHER_LOGITS_FILE, work_dir=out / TEACHER_ONNX_DIR,
                                threads=config.threads, progress=progress, reuse=reuse_logits)
    train_set = encode_reviews(encoder, train_rows, data.labels)
    train_set.teacher_logits = logits[: len(train_rows)]
    val_set = encode_reviews(encoder, data.val, data.labels)
    val_set.teacher_logits = logits[len(train_rows):]
    missing = int((~np.isfinite(logits).all(axis=1)).sum())
    if missing:
        logger.warning("%d review(s) have no content tokens for the teacher; they train on "
                       "their labels only", missing)
    logger.info(
        "distilling over %d labelled and %d unlabelled reviews", len(data.train), len(extra)
    )
    student = make_student(_student_source(init, data.labels), n_layers=settings.layers,
                           ffn=settings.ffn)
    result = train_and_report(
        student, tokenizer, encoder, data, out, config, train_set=train_set, val_set=val_set,
        loss_fn=distillation_loss(settings.temperature, settings.alpha), started=started,
        resume=resume, progress=progress,
        monitor=early_stop_monitor(early_stop, val_set.teacher_logits, settings.temperature),
        record={
            "base_model": str(init),
            "teacher": str(teacher),
            "student_init": str(init),
            "n_layers": student.config.n_layers,
            "ffn": student.config.hidden_dim,
            "distillation": {"temperature": settings.temperature, "alpha": settings.alpha,
                             "labelled": len(data.train), "unlabelled": len(extra),
                             "teacher_logits": logits_from, "early_stop": early_stop,
                             "teacher_max_length": settings.teacher_encoding(encoding).max_length,
                             "reused_logits": str(reuse_logits) if reuse_logits else None},
        },
    )
    if result.finished:
        _record_agreement(result, val_set, data.labels, encoder.pad_id, settings.temperature)
    return result


def _record_agreement(result: TrainingResult, val_set: EncodedSet, labels: Sequence[str],
                      pad_id: int, temperature: float) -> None:
    """Add the best student's agreement with the teacher on validation (argmax agreement,
    and KL at the distillation temperature) to ``result.json`` (rank 0 scores and writes)
    and to the result's metrics (on every rank)."""
    close = main_process_only(_write_agreement, result.model_dir, result.out_dir, val_set,
                              labels, pad_id, temperature)
    result.val_metrics["teacher_agreement"] = close["agreement"]
    result.val_metrics["teacher_kl"] = close["kl"]


def _write_agreement(model_dir: Path, out_dir: Path, val_set: EncodedSet,
                     labels: Sequence[str], pad_id: int, temperature: float) -> dict[str, float]:
    from .training_run import RESULT_FILE, load_classifier

    assert val_set.teacher_logits is not None
    logits = predict_logits(load_classifier(model_dir, labels), val_set, pad_id)
    close = teacher_agreement(logits, val_set.teacher_logits, temperature)
    path = out_dir / RESULT_FILE
    record = json.loads(path.read_text("utf-8"))
    record["val_teacher"] = {**close, "temperature": temperature}
    path.write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    return close


def model_labels(model: str | Path) -> list[str] | None:
    """The labels a model directory's config names (None for a hub id, or when it names
    only transformers' placeholders ``LABEL_0``, ``LABEL_1``, …)."""
    config = Path(model) / "config.json"
    if not config.is_file():
        return None
    id2label = json.loads(config.read_text("utf-8")).get("id2label") or {}
    labels = [id2label[k] for k in sorted(id2label, key=int)]
    if not labels or labels == [f"LABEL_{i}" for i in range(len(labels))]:
        return None
    return labels


def _check_labels(model: str | Path, labels: Sequence[str], role: str) -> None:
    named = model_labels(model)
    if role == "teacher" and named is None and Path(model, "config.json").is_file():
        raise InputError(f"{model}: the teacher names no labels (only LABEL_0, LABEL_1, …): "
                         "fine-tune it first (edgesent train), then distil it")
    if named is not None and named != list(labels):
        raise InputError(
            f"{model}: the {role}'s labels {named} differ from the data's labels "
            f"{list(labels)}; distil on data with the labels the {role} was trained on"
        )


def _student_source(init: str | Path, labels: Sequence[str]) -> Any:
    """The model the student is cut from, its head sized for ``labels`` (a fresh head when
    ``init`` is an encoder that was never fine-tuned on them)."""
    from .training_run import load_classifier

    _check_labels(init, labels, "student initialisation")
    return load_classifier(init, labels)


def distillation_texts(data: FormattedData, unlabelled: Sequence[Review]
                       ) -> tuple[list[Review], list[str]]:
    """The rows a student trains on (the labelled ones, then the new unlabelled ones) and
    the texts the teacher's logits cover: those rows, then the validation rows."""
    train_rows = [*data.train, *_new_unlabelled(data, unlabelled)]
    return train_rows, [r.text for r in [*train_rows, *data.val]]


def _new_unlabelled(data: FormattedData, unlabelled: Sequence[Review]) -> list[Review]:
    """Unlabelled reviews not already in the data: text labelled here adds nothing, and
    text of a test set must not leak into training."""
    held = [*data.train, *data.val, *(r for rows in data.test.values() for r in rows)]
    known = {dedup_key(r.text) for r in held}
    extra, seen = [], set()
    for review in unlabelled:
        key = dedup_key(review.text)
        if key not in known and key not in seen:
            seen.add(key)
            extra.append(Review(review.text, None, review.source, review.domain))
    return extra
