"""Distil a fine-tuned teacher into a smaller DistilBERT student.

The student learns the teacher's softened outputs (KL divergence at a temperature, scaled
by its square as in Hinton et al.) on every review, labelled or not, plus cross-entropy
on the hard labels where there are some. The teacher's logits are computed once and
cached in the run directory, so a resumed run does not pay for them again.

>>> result = distill("runs/teacher/best", data, "runs/student",  # doctest: +SKIP
...                  unlabelled=read_reviews("more.jsonl", ColumnSpec(label=None)))
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesent.errors import InputError
from edgesent.tokenization import EncodingSettings

from .data import FormattedData, Review, dedup_key
from .student import make_student
from .torch_data import IGNORE_LABEL, EncodedSet, predict_logits
from .training import LossFn, TrainConfig
from .training_run import (
    TrainingResult,
    encode_reviews,
    start_run,
    train_and_report,
)

logger = logging.getLogger(__name__)

TEACHER_LOGITS_FILE = "teacher_logits.npy"


@dataclass(frozen=True)
class DistillSettings:
    """The student's depth (None: half the teacher's) and the distillation loss.

    >>> DistillSettings(alpha=2.0)
    Traceback (most recent call last):
    ...
    ValueError: alpha must lie in [0, 1], got 2.0
    """

    layers: int | None = None
    temperature: float = 2.0
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"the distillation temperature must be positive, "
                             f"got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.layers is not None and self.layers < 1:
            raise ValueError(f"the student needs at least 1 layer, got {self.layers}")


def distillation_loss(temperature: float = DistillSettings.temperature,
                      alpha: float = DistillSettings.alpha) -> LossFn:
    """``alpha`` · T² · KL(teacher‖student at T) + (1 − ``alpha``) · CE(hard labels).

    Rows without a label (``-100``) contribute only the KL term.
    """
    import torch
    import torch.nn.functional as F

    DistillSettings(temperature=temperature, alpha=alpha)  # checks both

    def loss_fn(logits: Any, batch: dict[str, Any]) -> Any:
        teacher = batch["teacher_logits"]
        kd = F.kl_div(
            F.log_softmax(logits / temperature, dim=-1),
            F.log_softmax(teacher / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        ) * (temperature**2)
        labelled = batch["labels"] != IGNORE_LABEL
        if alpha < 1 and bool(labelled.any()):
            ce = F.cross_entropy(logits[labelled], batch["labels"][labelled])
            return alpha * kd + (1 - alpha) * ce
        return kd if alpha > 0 else torch.zeros((), device=logits.device, requires_grad=True)

    return loss_fn


def teacher_logits(
    teacher: Any,
    data: EncodedSet,
    pad_id: int,
    cache: Path | None = None,
    progress: bool = True,
    teacher_id: str = "",
) -> np.ndarray:
    """The teacher's logits over ``data``, read from ``cache`` when data and ``teacher_id``
    (see :func:`teacher_identity`) match the ones it was written for."""
    digest = _fingerprint(data, teacher_id)
    if cache is not None and cache.exists():
        meta = cache.with_suffix(".json")
        if meta.exists() and json.loads(meta.read_text()).get("fingerprint") == digest:
            logger.info("teacher logits read from %s", cache)
            return np.load(cache, allow_pickle=False)
    logits = predict_logits(teacher, data, pad_id, batch_size=64, progress=progress)
    if cache is not None:
        np.save(cache, logits, allow_pickle=False)
        cache.with_suffix(".json").write_text(json.dumps({"fingerprint": digest}))
    return logits


def teacher_identity(teacher: str | Path) -> str:
    """A digest of a teacher directory's config and weights: cached logits of another
    teacher (a retrained one, in the same place) must not be reused."""
    root = Path(teacher)
    if not root.is_dir():  # a hub id: its name is all there is
        return str(teacher)
    digest = hashlib.sha256()
    for path in sorted(root.iterdir()):
        if path.name == "config.json" or path.suffix in (".safetensors", ".bin"):
            digest.update(path.name.encode() + b"\0")
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _fingerprint(data: EncodedSet, teacher_id: str = "") -> str:
    digest = hashlib.sha256(teacher_id.encode())
    for seq in data.ids:
        digest.update(np.asarray(seq, dtype=np.int32).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def kl_to_teacher(student: Any, data: EncodedSet, pad_id: int, temperature: float = 1.0) -> float:
    """Mean KL divergence from the teacher's (cached) distribution to the student's."""
    from edgesent.metrics import softmax

    assert data.teacher_logits is not None
    p_teacher = softmax(data.teacher_logits, temperature)
    p_student = softmax(predict_logits(student, data, pad_id), temperature)
    eps = 1e-12
    log_ratio = np.log(p_teacher + eps) - np.log(p_student + eps)
    return float(np.mean(np.sum(p_teacher * log_ratio, axis=1)))


def distill(
    teacher: str | Path,
    data: FormattedData,
    out_dir: str | Path,
    *,
    unlabelled: Sequence[Review] = (),
    n_layers: int | None = None,
    config: TrainConfig | None = None,
    encoding: EncodingSettings | None = None,
    temperature: float = DistillSettings.temperature,
    alpha: float = DistillSettings.alpha,
    resume: bool = False,
    progress: bool = True,
) -> TrainingResult:
    """Distil ``teacher`` (a fine-tuned model directory) into a DistilBERT student."""
    from transformers import AutoModelForSequenceClassification

    settings = DistillSettings(n_layers, temperature, alpha)
    config = config or TrainConfig()
    out, started, tokenizer, encoder = start_run(teacher, out_dir, encoding)
    teacher_model = AutoModelForSequenceClassification.from_pretrained(str(teacher))
    id2label = teacher_model.config.id2label
    teacher_labels = [id2label[i] for i in range(teacher_model.config.num_labels)]
    if teacher_labels != list(data.labels):
        raise InputError(
            f"{teacher}: the teacher's labels {teacher_labels} differ from the data's labels "
            f"{list(data.labels)}; distil on data with the labels the teacher was trained on"
        )
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    extra = _new_unlabelled(data, unlabelled)
    train_set = encode_reviews(encoder, [*data.train, *extra], data.labels)
    train_set.teacher_logits = teacher_logits(
        teacher_model, train_set, encoder.pad_id, out / TEACHER_LOGITS_FILE, progress,
        teacher_id=teacher_identity(teacher),
    )
    val_set = encode_reviews(encoder, data.val, data.labels)
    val_set.teacher_logits = predict_logits(teacher_model, val_set, encoder.pad_id)
    logger.info(
        "distilling over %d labelled and %d unlabelled reviews", len(data.train), len(extra)
    )
    student = make_student(teacher_model, n_layers=settings.layers)
    del teacher_model
    return train_and_report(
        student, tokenizer, encoder, data, out, config, train_set=train_set, val_set=val_set,
        loss_fn=distillation_loss(settings.temperature, settings.alpha), started=started,
        resume=resume, progress=progress,
        record={
            "base_model": str(teacher),
            "teacher": str(teacher),
            "n_layers": student.config.n_layers,
            "distillation": {"temperature": settings.temperature, "alpha": settings.alpha,
                             "labelled": len(data.train), "unlabelled": len(extra)},
        },
    )


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
