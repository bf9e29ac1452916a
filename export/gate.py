"""The accuracy gate: an int8 model ships only if it is (nearly) as accurate as fp32.

Three models see the same token ids (one :class:`edgesent.tokenization.TextEncoder`):
the fp32 PyTorch student, the fp32 ONNX graph and the int8 graph. ONNX graphs run exactly
as :class:`edgesent.Classifier` runs them (same session options, length-sorted batches of
the same size), so the int8 logits measured here are the ones users will get.

If int8 loses more than ``max_drop`` accuracy points against the fp32 ONNX graph, other
quantization settings are tried in the order of :func:`attempt_plan`; when none passes,
:class:`GateError` lists every attempt with its drop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesent.errors import EdgesentError
from edgesent.metrics import classification_report
from edgesent.tokenization import TextEncoder

from .quantize import QuantizationResult, quantize

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32  # Classifier.predict's default: int8 logits depend on batching
MAX_CALIBRATION_TEXTS = 256
QUANTIZE_KEYS = ("target", "mode", "per_channel", "quantize_embeddings", "optimized")
DEFAULT_SETTINGS: dict[str, Any] = {
    "target": "avx512_vnni", "mode": "dynamic", "per_channel": True,
    "quantize_embeddings": True, "optimized": False,
}


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

    settings: dict[str, Any]
    drop: float | None = None  # accuracy points lost against fp32 ONNX (never below 0)
    size_bytes: int | None = None
    agreement: float | None = None
    max_logit_diff: float | None = None
    passed: bool = False
    error: str | None = None
    quantization: QuantizationResult | None = field(default=None, repr=False)
    evaluation: Evaluation | None = field(default=None, repr=False)

    def describe(self) -> str:
        what = ", ".join(f"{k}={self.settings[k]}" for k in QUANTIZE_KEYS)
        if self.error is not None:
            return f"{what}: failed ({self.error})"
        return (f"{what}: drop {self.drop:.2f} points, agreement {self.agreement:.4f}, "
                f"max |logit diff| {self.max_logit_diff:.4g}, {self.size_bytes / 1e6:.2f} MB")

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings, "drop_points": self.drop, "agreement": self.agreement,
                "max_logit_diff": self.max_logit_diff, "size_bytes": self.size_bytes,
                "passed": self.passed, "error": self.error}


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


def attempt_plan(requested: dict[str, Any], *, can_calibrate: bool) -> list[dict[str, Any]]:
    """Quantization settings to try, in order, without repeats:

    1. the requested settings;
    2. the same with the embedding tables left in fp32 (exact embeddings, much larger file);
    3. per-tensor / per-channel weights, whichever was not requested;
    4. dynamic quantization of the fused graph (``optimized=True``: QAttention);
    5. the other instruction-set target (``avx2``'s u8 weights if s8 was requested);
    6. static QDQ with MinMax calibration, last because it measured the least accurate
       (only with calibration texts).
    """
    base = {**DEFAULT_SETTINGS, **{k: requested[k] for k in QUANTIZE_KEYS if k in requested}}
    dynamic = {**base, "mode": "dynamic"}
    other_target = "avx2" if base["target"] != "avx2" else "avx512_vnni"
    plan = [
        base,
        {**base, "quantize_embeddings": False},
        {**base, "per_channel": not base["per_channel"]},
        {**dynamic, "optimized": not base["optimized"]},
        {**dynamic, "target": other_target},
    ]
    if can_calibrate:
        plan.append({**base, "mode": "static", "optimized": False})
    unique: list[dict[str, Any]] = []
    for settings in plan:
        if settings not in unique:
            unique.append(settings)
    return unique


def run_gate(
    fp32_onnx: str | Path,
    work_dir: str | Path,
    *,
    texts: Sequence[str],
    labels: Sequence[int],
    label_names: Sequence[str],
    encoder: TextEncoder,
    student_dir: str | Path | None = None,
    max_drop: float = 1.0,
    settings: dict[str, Any] | None = None,
    calibration_texts: Sequence[str] | None = None,
    max_model_bytes: int | None = None,
    threads: int = 2,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> GateResult:
    """Quantize ``fp32_onnx`` and keep the first int8 variant within ``max_drop`` accuracy
    points (percentage points) of fp32 on ``texts``/``labels``; raise :class:`GateError`
    when none is. A negative ``max_drop`` can never be met. With ``max_model_bytes`` an int8
    file larger than that fails too (fp32 embeddings can blow a size budget).

    >>> result = run_gate("runs/onnx/model.onnx", "runs/gate", texts=test_texts,
    ...                   labels=test_labels, label_names=["negative", "positive"],
    ...                   encoder=encoder, student_dir="runs/student")  # doctest: +SKIP
    >>> result.metrics()["int8_vs_fp32"]["agreement"]  # doctest: +SKIP
    0.998
    """
    if not math.isfinite(max_drop):
        raise ValueError(f"max_drop must be a finite number of points, got {max_drop}")
    check_texts(texts, labels, len(label_names))
    work_dir = Path(work_dir)
    fp32_torch = None
    if student_dir is not None:
        logits = torch_logits(student_dir, encoder, texts, threads=threads,
                              batch_size=batch_size, progress=progress)
        fp32_torch = evaluate("pytorch_fp32", logits, labels, label_names)
    fp32 = evaluate("onnx_fp32", onnx_logits(fp32_onnx, encoder, texts, threads=threads,
                                             batch_size=batch_size, progress=progress),
                    labels, label_names)
    calibration = None
    if calibration_texts:
        calibration = [dict(zip(("input_ids", "attention_mask"), encoder.encode([t]), strict=True))
                       for t in calibration_texts[:MAX_CALIBRATION_TEXTS] if t.strip()]
    attempts: list[GateAttempt] = []
    for index, attempt_settings in enumerate(attempt_plan(settings or {},
                                                          can_calibrate=bool(calibration))):
        attempt = GateAttempt(dict(attempt_settings))
        attempts.append(attempt)
        try:
            attempt.quantization = quantize(
                fp32_onnx, work_dir / f"int8-attempt{index}", **attempt_settings,
                calibration_inputs=calibration if attempt_settings["mode"] == "static" else None,
            )
        except Exception as exc:  # a failing variant must not stop the search
            attempt.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            logger.warning("gate attempt %d: %s", index, attempt.describe())
            continue
        logits = onnx_logits(attempt.quantization.path, encoder, texts, threads=threads,
                             batch_size=batch_size, progress=progress)
        attempt.evaluation = evaluate("onnx_int8", logits, labels, label_names)
        figures = compare(fp32, attempt.evaluation)
        attempt.drop = figures["accuracy_drop_points"]
        attempt.agreement = figures["agreement"]
        attempt.max_logit_diff = figures["max_abs_logit_diff"]
        attempt.size_bytes = attempt.quantization.settings["size_bytes"]
        fits = max_model_bytes is None or attempt.size_bytes <= max_model_bytes
        attempt.passed = attempt.drop <= max_drop and fits
        logger.info("gate attempt %d: %s -> %s", index, attempt.describe(),
                    "pass" if attempt.passed else "fail")
        if attempt.passed:
            assert attempt.quantization is not None
            return GateResult(max_drop, fp32_torch, fp32, attempt.evaluation,
                              attempt.quantization, attempts)
    lines = "\n".join(f"  {i + 1}. {a.describe()}" for i, a in enumerate(attempts))
    budget = f" in at most {max_model_bytes / 1e6:.2f} MB" if max_model_bytes else ""
    raise GateError(
        f"accuracy gate failed: no int8 variant stayed within {max_drop} points of fp32 "
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
             label_names: Sequence[str]) -> Evaluation:
    """Classification report of ``logits``' argmax against ``labels``."""
    report = classification_report(list(labels), logits.argmax(axis=1).tolist(), label_names)
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


def _batches(encoder: TextEncoder, texts: Sequence[str], batch_size: int):
    """Length-sorted batches exactly as ``edgesent.Classifier`` forms them:
    yields ``(rows, input_ids, attention_mask)``."""
    from edgesent.classifier import CHUNK_TEXTS

    for start in range(0, len(texts), CHUNK_TEXTS):
        rows = list(range(start, min(start + CHUNK_TEXTS, len(texts))))
        seqs = encoder.token_ids([texts[i] for i in rows])
        order = sorted(range(len(rows)), key=lambda k: len(seqs[k]))
        for first in range(0, len(order), batch_size):
            batch = order[first : first + batch_size]
            ids, mask = encoder.pad([seqs[k] for k in batch])
            yield [rows[k] for k in batch], ids, mask


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text", disable=not enabled, leave=False)


def onnx_logits(onnx_path: str | Path, encoder: TextEncoder, texts: Sequence[str], *,
                threads: int = 2, batch_size: int = DEFAULT_BATCH_SIZE,
                progress: bool = False) -> np.ndarray:
    """Logits of an ONNX graph, run as ``edgesent.Classifier`` runs it (``threads``
    intra-op threads, length-sorted batches of ``batch_size``)."""
    import onnxruntime as ort

    from edgesent.bundle import OUTPUT_NAME, model_feed
    from edgesent.classifier import session_options

    session = ort.InferenceSession(str(onnx_path), sess_options=session_options(threads),
                                   providers=["CPUExecutionProvider"])
    out: np.ndarray | None = None
    with _progress(len(texts), f"onnx {Path(onnx_path).name}", progress) as bar:
        for rows, ids, mask in _batches(encoder, texts, batch_size):
            logits = session.run([OUTPUT_NAME], model_feed(session, ids, mask))[0]
            if out is None:
                out = np.full((len(texts), logits.shape[1]), np.nan, dtype=np.float32)
            out[rows] = logits
            bar.update(len(rows))
    assert out is not None
    return out


def torch_logits(model_dir: str | Path, encoder: TextEncoder, texts: Sequence[str], *,
                 threads: int = 2, batch_size: int = DEFAULT_BATCH_SIZE,
                 progress: bool = False) -> np.ndarray:
    """Logits of the fp32 PyTorch model saved in ``model_dir`` (safetensors only), fed
    the same token ids as the ONNX graphs."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, use_safetensors=True).eval()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = None
    try:
        with torch.inference_mode(), _progress(len(texts), "pytorch fp32", progress) as bar:
            for rows, ids, mask in _batches(encoder, texts, batch_size):
                logits = model(input_ids=torch.from_numpy(ids),
                               attention_mask=torch.from_numpy(mask)).logits.float().numpy()
                if out is None:
                    out = np.full((len(texts), logits.shape[1]), np.nan, dtype=np.float32)
                out[rows] = logits
                bar.update(len(rows))
    finally:
        torch.set_num_threads(previous)
    assert out is not None
    return out
