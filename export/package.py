"""Package a trained student into a verified int8 model bundle.

export (fp32 ONNX) -> quantize (int8) -> accuracy gate -> temperature on validation
logits -> :func:`edgesent.bundle.write_bundle` with every figure measured -> reload the
bundle with :class:`edgesent.Classifier` and check it reproduces the gate's int8 logits.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesent.errors import EdgesentError
from edgesent.metrics import expected_calibration_error, softmax
from edgesent.tokenization import EncodingSettings, TextEncoder

from .calibration import calibration_report, fit_temperature
from .gate import (
    DEFAULT_BATCH_SIZE,
    Evaluation,
    check_texts,
    compare,
    evaluate,
    onnx_logits,
    run_gate,
)
from .onnx_export import export_onnx

logger = logging.getLogger(__name__)

REPRODUCE_TOLERANCE = 1e-5
TOKENIZER_FILE = "tokenizer.json"

TextsAndLabels = tuple[Sequence[str], Sequence[int | str]]


class PackageError(EdgesentError):
    """The written bundle does not behave like the model the gate measured."""


@dataclass(frozen=True)
class PackageResult:
    """The bundle written and the metrics stored in its manifest."""

    path: Path
    metrics: dict[str, Any] = field(repr=False)
    quantization: dict[str, Any] = field(repr=False)
    temperature: float = 1.0
    size_bytes: int = 0
    test_logits: np.ndarray | None = field(default=None, repr=False)  # the gate's int8 logits


def package_model(
    student_dir: str | Path,
    out_dir: str | Path,
    *,
    labels: Sequence[str],
    encoding: EncodingSettings | Mapping[str, Any],
    test_texts: Sequence[str],
    test_labels: Sequence[int | str],
    val_texts: Sequence[str],
    val_labels: Sequence[int | str],
    target: str = "avx512_vnni",
    mode: str = "dynamic",
    max_drop: float = 1.0,
    extra_test_sets: Mapping[str, TextsAndLabels] | None = None,
    provenance: Mapping[str, Any] | None = None,
    work_dir: str | Path | None = None,
    threads: int = 2,
    progress: bool = True,
    per_channel: bool = True,
    quantize_embeddings: bool = True,
    name: str | None = None,
    overwrite: bool = False,
    max_model_bytes: int | None = None,
) -> PackageResult:
    """Build, gate, calibrate and write the int8 bundle of the student in ``student_dir``.

    Labels may be given as indices into ``labels`` or as label names. ``max_model_bytes``
    makes the gate also refuse int8 files above that size (e.g. ``15_000_000``). Raises
    :class:`~edgesent_export.gate.GateError` when no int8 variant is within ``max_drop``
    accuracy points of fp32, and :class:`PackageError` when the written bundle does not
    reproduce the gate's int8 logits.

    >>> result = package_model("runs/student", "dist/edgesent-reviews-en",
    ...                        labels=["negative", "positive"], encoding=EncodingSettings(),
    ...                        test_texts=tt, test_labels=tl, val_texts=vt, val_labels=vl,
    ...                        )  # doctest: +SKIP
    >>> result.metrics["test"]["onnx_int8"]["accuracy"]  # doctest: +SKIP
    0.912
    """
    from tokenizers import Tokenizer

    student_dir = Path(student_dir)
    labels = list(labels)
    if not isinstance(encoding, EncodingSettings):
        encoding = EncodingSettings(**dict(encoding))
    _check_label_order(student_dir, labels)
    test_y = label_indices(test_labels, labels, "test")
    val_y = label_indices(val_labels, labels, "val")
    check_texts(test_texts, test_y, len(labels))
    check_texts(val_texts, val_y, len(labels))
    extras = {key: (list(texts), label_indices(ys, labels, key))
              for key, (texts, ys) in (extra_test_sets or {}).items()}
    for texts, ys in extras.values():
        check_texts(texts, ys, len(labels))
    tokenizer_file = student_dir / TOKENIZER_FILE
    if not tokenizer_file.is_file():
        raise FileNotFoundError(f"{student_dir}: no {TOKENIZER_FILE} (save the fast tokenizer)")
    encoder = TextEncoder(Tokenizer.from_file(str(tokenizer_file)), encoding)

    own_work = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="edgesent-package-")) if own_work else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        logger.info("exporting %s to ONNX", student_dir)
        fp32_path = export_onnx(student_dir, work / "onnx-fp32", validate=False)
        logger.info("running the accuracy gate on %d test texts", len(test_texts))
        gate = run_gate(
            fp32_path, work / "gate", texts=list(test_texts), labels=test_y, label_names=labels,
            encoder=encoder, student_dir=student_dir, max_drop=max_drop,
            settings={"target": target, "mode": mode, "per_channel": per_channel,
                      "quantize_embeddings": quantize_embeddings},
            calibration_texts=list(val_texts), max_model_bytes=max_model_bytes,
            threads=threads, progress=progress,
        )
        int8_path = gate.quantization.path
        run = {"threads": threads, "batch_size": DEFAULT_BATCH_SIZE, "progress": progress}

        logger.info("fitting the temperature on %d validation texts", len(val_texts))
        val_logits = onnx_logits(int8_path, encoder, list(val_texts), **run)
        temperature = fit_temperature(val_logits, val_y)
        metrics: dict[str, Any] = {
            "calibration": {"set": "val", **calibration_report(val_logits, val_y, temperature)},
            "test": {**gate.metrics(), **_ece(gate.int8, test_y, temperature)},
        }
        extra_metrics = {}
        for key, (texts, ys) in extras.items():
            logger.info("evaluating extra test set %r (%d texts)", key, len(texts))
            fp32_eval = evaluate("onnx_fp32", onnx_logits(fp32_path, encoder, texts, **run),
                                 ys, labels)
            int8_eval = evaluate("onnx_int8", onnx_logits(int8_path, encoder, texts, **run),
                                 ys, labels)
            extra_metrics[key] = {"n": len(texts), "onnx_fp32": fp32_eval.report,
                                  "onnx_int8": int8_eval.report,
                                  "int8_vs_fp32": compare(fp32_eval, int8_eval),
                                  **_ece(int8_eval, ys, temperature)}
        if extra_metrics:
            metrics["extra_test_sets"] = extra_metrics
        metrics["gate"] = gate.gate_summary()
        metrics["sizes"] = _sizes(student_dir, fp32_path, int8_path, tokenizer_file)

        from edgesent.bundle import write_bundle

        bundle = write_bundle(
            out_dir, model_file=int8_path, tokenizer_file=tokenizer_file, labels=labels,
            encoding=encoding, temperature=temperature, name=name, precision="int8",
            quantization=gate.quantization.settings, provenance=provenance,
            metrics=metrics, overwrite=overwrite,
        )
        _check_reproduces(bundle.path, list(test_texts), gate.int8.logits, threads)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    logger.info("bundle %s: int8 accuracy %.4f (fp32 %.4f), T=%.3f, %.2f MB",
                bundle.path, gate.int8.accuracy, gate.fp32_onnx.accuracy, temperature,
                bundle.size_bytes / 1e6)
    return PackageResult(bundle.path, metrics, dict(gate.quantization.settings), temperature,
                         bundle.size_bytes, gate.int8.logits)


def label_indices(values: Sequence[int | str], labels: Sequence[str], where: str) -> list[int]:
    """Label names or indices as indices into ``labels``; ValueError names the bad row."""
    lookup = {name: i for i, name in enumerate(labels)}
    out = []
    for row, value in enumerate(values):
        if isinstance(value, str):
            if value not in lookup:
                raise ValueError(f"{where} row {row}: unknown label {value!r}; "
                                 f"expected one of {list(labels)}")
            out.append(lookup[value])
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= int(value) < len(labels):
                raise ValueError(f"{where} row {row}: label index {value} is not in "
                                 f"0..{len(labels) - 1}")
            out.append(int(value))
        else:
            raise ValueError(f"{where} row {row}: label {value!r} is neither a name nor an index")
    return out


def _check_label_order(student_dir: Path, labels: list[str]) -> None:
    import json

    config = json.loads((student_dir / "config.json").read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    names = [id2label.get(str(i)) for i in range(len(id2label))]
    generic = all(n is None or n.startswith("LABEL_") for n in names)
    if len(names) != len(labels):
        raise ValueError(f"{student_dir}/config.json: the model has {len(names)} labels, "
                         f"but {len(labels)} were given ({labels})")
    if not generic and names != labels:
        raise ValueError(f"{student_dir}/config.json: id2label order is {names}, "
                         f"but labels were given as {labels}")


def _ece(evaluation: Evaluation, labels: Sequence[int], temperature: float) -> dict[str, float]:
    logits = evaluation.logits
    return {
        "int8_ece_before": expected_calibration_error(softmax(logits), labels),
        "int8_ece_after": expected_calibration_error(softmax(logits, temperature), labels),
    }


def _sizes(student_dir: Path, fp32: Path, int8: Path, tokenizer: Path) -> dict[str, int]:
    weights = sum(p.stat().st_size for p in student_dir.glob("*.safetensors"))
    return {"student_safetensors_bytes": weights, "onnx_fp32_bytes": fp32.stat().st_size,
            "onnx_int8_bytes": int8.stat().st_size, "tokenizer_bytes": tokenizer.stat().st_size}


def _check_reproduces(bundle_path: Path, texts: list[str], expected: np.ndarray,
                      threads: int) -> None:
    from edgesent.classifier import Classifier

    classifier = Classifier.load(bundle_path, threads=threads)
    got = classifier.predict_logits(texts, batch_size=DEFAULT_BATCH_SIZE)
    diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
    same = bool((got.argmax(axis=1) == expected.argmax(axis=1)).all())
    if not same or not diff < REPRODUCE_TOLERANCE:
        raise PackageError(
            f"bundle {bundle_path}: Classifier.predict_logits differs from the gate's int8 "
            f"logits (max |diff| {diff:.3g}, argmax identical: {same})"
        )
    logger.info("bundle %s reproduces the gate's int8 logits (max |diff| %.2g)",
                bundle_path, diff)
