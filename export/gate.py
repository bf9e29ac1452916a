"""The accuracy gate: an int8 model ships only if it is (nearly) as accurate as fp32.

Three models see the same token ids (one :class:`edgesent.tokenization.TextEncoder`):
the fp32 PyTorch student, the fp32 ONNX graph and the int8 graph. ONNX graphs run through
the run half's :class:`edgesent.runner.Runner`, exactly as :class:`edgesent.Classifier`
runs them, so the int8 logits measured here are the ones users will get; the PyTorch
student gets the same batches (:func:`edgesent.runner.plan_batches`).

If int8 loses more than ``max_drop`` accuracy points against the fp32 ONNX graph, other
quantization settings are tried in the order of :func:`attempt_plan`; when none passes,
:class:`GateError` lists every attempt with its drop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgesent.errors import EdgesentError
from edgesent.metrics import accuracy_by_group, classification_report
from edgesent.runner import DEFAULT_BATCH_SIZE
from edgesent.tokenization import TextEncoder

from .logits import onnx_logits, torch_logits
from .quantize import QuantizationResult, QuantizationSettings, quantize

logger = logging.getLogger(__name__)

MAX_CALIBRATION_TEXTS = 256


@dataclass(frozen=True)
class LabelledSet:
    """Texts and their labels as indices into the label names; ``domains`` (one per text,
    None where unknown) adds accuracy per domain to each report.

    >>> LabelledSet(["Great value", "Broke at once"], [1, 0], ["books", None]).labels
    [1, 0]
    """

    texts: Sequence[str]
    labels: Sequence[int]
    domains: Sequence[str | None] | None = None


@dataclass(frozen=True)
class GateConfig:
    """What the gate asks of an int8 model, and how its models are run.

    ``max_drop`` is in accuracy points (a negative one can never be met);
    ``max_model_bytes`` also fails int8 files above that size (fp32 embeddings can blow
    a size budget). ONNX graphs run through :class:`edgesent.runner.Runner` on
    ``threads`` threads in batches of ``batch_size``, as :class:`edgesent.Classifier`
    runs them.

    >>> GateConfig(max_drop=0.5).quantization.target
    'avx512_vnni'
    """

    quantization: QuantizationSettings = field(default_factory=QuantizationSettings)
    max_drop: float = 1.0
    max_model_bytes: int | None = None
    threads: int = 2
    batch_size: int = DEFAULT_BATCH_SIZE
    progress: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_drop):
            raise ValueError(f"max_drop must be a finite number of points, got {self.max_drop}")


class GateError(EdgesentError):
    """No int8 variant stayed within ``max_drop`` accuracy points of fp32."""

    def __init__(self, message: str, attempts: Sequence[GateAttempt] = ()) -> None:
        super().__init__(message)
        self.attempts = list(attempts)


@dataclass
class Evaluation:
    """One model's logits and classification report on one labelled set."""

    name: str
    logits: np.ndarray = field(repr=False)
    report: dict[str, Any] = field(repr=False)

    @property
    def accuracy(self) -> float:
        return float(self.report["accuracy"])

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


@dataclass
class GateAttempt:
    """One quantization tried by the gate."""

    settings: QuantizationSettings
    drop: float | None = None  # accuracy points lost against fp32 ONNX (never below 0)
    size_bytes: int | None = None
    agreement: float | None = None
    max_logit_diff: float | None = None
    passed: bool = False
    error: str | None = None
    quantization: QuantizationResult | None = field(default=None, repr=False)
    evaluation: Evaluation | None = field(default=None, repr=False)

    def describe(self) -> str:
        what = self.settings.describe()
        if self.error is not None:
            return f"{what}: failed ({self.error})"
        assert self.size_bytes is not None
        return (f"{what}: drop {self.drop:.2f} points, agreement {self.agreement:.4f}, "
                f"max |logit diff| {self.max_logit_diff:.4g}, {self.size_bytes / 1e6:.2f} MB")

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings.to_dict(), "drop_points": self.drop,
                "agreement": self.agreement, "max_logit_diff": self.max_logit_diff,
                "size_bytes": self.size_bytes, "passed": self.passed, "error": self.error}


@dataclass
class GateResult:
    """The passing int8 model and everything measured on the way."""

    max_drop: float
    fp32_torch: Evaluation | None
    fp32_onnx: Evaluation
    int8: Evaluation
    quantization: QuantizationResult
    attempts: list[GateAttempt]

    def metrics(self) -> dict[str, Any]:
        """JSON-ready figures for the bundle manifest."""
        out: dict[str, Any] = {"n": int(self.fp32_onnx.report["n"])}
        if self.fp32_torch is not None:
            out["pytorch_fp32"] = self.fp32_torch.report
            out["pytorch_vs_onnx_fp32_max_logit_diff"] = max_abs_diff(
                self.fp32_torch.logits, self.fp32_onnx.logits)
        out["onnx_fp32"] = self.fp32_onnx.report
        out["onnx_int8"] = self.int8.report
        out["int8_vs_fp32"] = compare(self.fp32_onnx, self.int8)
        return out

    def gate_summary(self) -> dict[str, Any]:
        chosen = next(i for i, a in enumerate(self.attempts) if a.passed)
        return {"max_drop_points": self.max_drop, "chosen_attempt": chosen,
                "attempts": [a.to_dict() for a in self.attempts]}


def attempt_plan(requested: QuantizationSettings, *,
                 can_calibrate: bool) -> list[QuantizationSettings]:
    """Quantization settings to try, in order, without repeats:

    1. the requested settings;
    2. the same with the embedding tables left in fp32 (exact embeddings, much larger file);
    3. per-tensor / per-channel weights, whichever was not requested (from per_token:
       the dynamic preset);
    4. dynamic quantization of the fused graph (``optimized=True``: QAttention);
    5. the other instruction-set target (``avx2``'s u8 weights if s8 was requested);
    6. static QDQ with MinMax calibration, last because it measured the least accurate
       (only with calibration texts).

    >>> [s.quantize_embeddings for s in attempt_plan(QuantizationSettings(),
    ...                                              can_calibrate=False)][:2]
    [True, False]
    """
    base = requested
    other_target = "avx2" if base.target != "avx2" else "avx512_vnni"
    # per_token is per-channel by construction; its next best is the dynamic preset, whose
    # answers depend on the batch (the manifest records which one shipped).
    plan = [
        base,
        replace(base, quantize_embeddings=False),
        replace(base, mode="dynamic") if base.mode == "per_token"
        else replace(base, per_channel=not base.per_channel),
        replace(base, mode="dynamic", optimized=not base.optimized),
        replace(base, mode="dynamic", target=other_target),
    ]
    if can_calibrate:
        plan.append(replace(base, mode="static", optimized=False))
    return list(dict.fromkeys(plan))


def run_gate(
    fp32_onnx: str | Path,
    work_dir: str | Path,
    test: LabelledSet,
    *,
    label_names: Sequence[str],
    encoder: TextEncoder,
    config: GateConfig | None = None,
    student_dir: str | Path | None = None,
    calibration_texts: Sequence[str] | None = None,
) -> GateResult:
    """Quantize ``fp32_onnx`` and keep the first int8 variant that meets ``config`` on
    ``test`` (see :class:`GateConfig`); raise :class:`GateError` when none does. With
    ``student_dir`` the fp32 PyTorch student is measured too; ``calibration_texts`` make
    a static variant possible.

    >>> result = run_gate("runs/onnx/model.onnx", "runs/gate", LabelledSet(texts, labels),
    ...                   label_names=["negative", "positive"], encoder=encoder,
    ...                   student_dir="runs/student")  # doctest: +SKIP
    >>> result.metrics()["int8_vs_fp32"]["agreement"]  # doctest: +SKIP
    0.998
    """
    config = config or GateConfig()
    texts, labels = list(test.texts), list(test.labels)
    check_texts(texts, labels, len(label_names))
    domains = test.domains
    work_dir = Path(work_dir)
    run: dict[str, Any] = {"threads": config.threads, "batch_size": config.batch_size,
                           "progress": config.progress}
    fp32_torch = None
    if student_dir is not None:
        fp32_torch = evaluate("pytorch_fp32", torch_logits(student_dir, encoder, texts, **run),
                              labels, label_names, domains)
    fp32 = evaluate("onnx_fp32", onnx_logits(fp32_onnx, encoder, texts, **run),
                    labels, label_names, domains)
    calibration = None
    if calibration_texts:
        calibration = [dict(zip(("input_ids", "attention_mask"), encoder.encode([t]), strict=True))
                       for t in calibration_texts[:MAX_CALIBRATION_TEXTS] if t.strip()]
    attempts: list[GateAttempt] = []
    plan = attempt_plan(config.quantization, can_calibrate=bool(calibration))
    for index, settings in enumerate(plan):
        attempt = GateAttempt(settings)
        attempts.append(attempt)
        try:
            attempt.quantization = quantize(
                fp32_onnx, work_dir / f"int8-attempt{index}", settings,
                calibration_inputs=calibration if settings.mode == "static" else None,
            )
        except Exception as exc:  # a failing variant must not stop the search
            attempt.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            logger.warning("gate attempt %d: %s", index, attempt.describe())
            continue
        logits = onnx_logits(attempt.quantization.path, encoder, texts, **run)
        attempt.evaluation = evaluate("onnx_int8", logits, labels, label_names, domains)
        figures = compare(fp32, attempt.evaluation)
        attempt.drop = figures["accuracy_drop_points"]
        attempt.agreement = figures["agreement"]
        attempt.max_logit_diff = figures["max_abs_logit_diff"]
        attempt.size_bytes = int(attempt.quantization.settings["size_bytes"])
        fits = config.max_model_bytes is None or attempt.size_bytes <= config.max_model_bytes
        attempt.passed = attempt.drop <= config.max_drop and fits
        logger.info("gate attempt %d: %s -> %s", index, attempt.describe(),
                    "pass" if attempt.passed else "fail")
        if attempt.passed:
            return GateResult(config.max_drop, fp32_torch, fp32, attempt.evaluation,
                              attempt.quantization, attempts)
    lines = "\n".join(f"  {i + 1}. {a.describe()}" for i, a in enumerate(attempts))
    budget = f" in at most {config.max_model_bytes / 1e6:.2f} MB" if config.max_model_bytes else ""
    raise GateError(
        f"accuracy gate failed: no int8 variant stayed within {config.max_drop} points of fp32 "
        f"accuracy {fp32.accuracy:.4f} on {len(texts)} test texts{budget}; attempts:\n{lines}",
        attempts,
    )


def compare(reference: Evaluation, candidate: Evaluation) -> dict[str, float]:
    """Agreement, largest absolute logit difference and accuracy points lost (>= 0)."""
    drop = max(0.0, (reference.accuracy - candidate.accuracy) * 100.0)
    return {
        "agreement": float(np.mean(reference.predictions == candidate.predictions)),
        "max_abs_logit_diff": max_abs_diff(reference.logits, candidate.logits),
        "accuracy_drop_points": drop,
    }


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def evaluate(name: str, logits: np.ndarray, labels: Sequence[int],
             label_names: Sequence[str],
             domains: Sequence[str | None] | None = None) -> Evaluation:
    """Classification report of ``logits``' argmax against ``labels``, with accuracy per
    domain where ``domains`` names any; a NaN row (a text with no content tokens, which
    the run half never labels) is refused by row."""
    blank = np.flatnonzero(np.isnan(logits).any(axis=1))
    if len(blank):
        raise ValueError(f"row {blank[0]}: text has no content tokens (only blanks, "
                         "zero-width or control characters)")
    predicted = logits.argmax(axis=1).tolist()
    report = classification_report(list(labels), predicted, label_names)
    if domains is not None and any(d is not None for d in domains):
        report["per_domain"] = accuracy_by_group(list(domains), list(labels), predicted)
    return Evaluation(name, logits, report)


def check_texts(texts: Sequence[str], labels: Sequence[int], n_labels: int) -> None:
    """Raise ValueError naming the first bad row (blank text, label out of range)."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise ValueError("no texts to evaluate")
    for row, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"row {row}: text is blank or not a string")
        if not 0 <= int(label) < n_labels:
            raise ValueError(f"row {row}: label {label} is not in 0..{n_labels - 1}")
