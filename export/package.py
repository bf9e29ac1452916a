"""Package a trained student into a verified int8 model bundle.

export (fp32 ONNX) -> quantize (int8) -> accuracy gate -> temperature on validation
logits -> :func:`edgesent.bundle.write_bundle` with every figure measured -> reload the
bundle with :class:`edgesent.Classifier` and check it reproduces the gate's int8 logits.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgesent.bundle import TOKENIZER_FILE, write_bundle
from edgesent.errors import EdgesentError
from edgesent.metrics import expected_calibration_error, softmax
from edgesent.tokenization import EncodingSettings, TextEncoder

from .calibration import calibration_report, fit_temperature
from .gate import Evaluation, GateConfig, LabelledSet, check_texts, compare, evaluate, run_gate
from .logits import onnx_logits
from .onnx_export import export_onnx

logger = logging.getLogger(__name__)

REPRODUCE_TOLERANCE = 1e-5


class PackageError(EdgesentError):
    """The written bundle does not behave like the model the gate measured."""


@dataclass(frozen=True)
class PackageInputs:
    """What goes into a bundle: the student, its labels and encoding, the labelled sets
    that measure it, and what the manifest records about it.

    Labels of the sets may be indices into ``labels`` or label names. ``test`` feeds the
    accuracy gate, ``val`` the calibration temperature (and static quantization).
    ``max_lengths``, when given, are the reading lengths the bundle may ship with: the one
    whose fp32 graph is most accurate on ``val`` replaces ``encoding.max_length`` (a model
    trained on short windows often reads longer reviews better).
    """

    student_dir: Path
    labels: Sequence[str]
    encoding: EncodingSettings
    test: LabelledSet
    val: LabelledSet
    extra_test_sets: Mapping[str, LabelledSet] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    max_lengths: Sequence[int] = ()


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
    inputs: PackageInputs,
    out_dir: str | Path,
    gate: GateConfig | None = None,
    *,
    work_dir: str | Path | None = None,
    overwrite: bool = False,
) -> PackageResult:
    """Build, gate, calibrate and write the int8 bundle of ``inputs.student_dir``.

    Raises :class:`~edgesent_export.gate.GateError` when no int8 variant meets ``gate``,
    and :class:`PackageError` when the written bundle does not reproduce the gate's int8
    logits.

    >>> inputs = PackageInputs(Path("runs/student"), ["negative", "positive"],
    ...                        EncodingSettings(), test=LabelledSet(tt, tl),
    ...                        val=LabelledSet(vt, vl))  # doctest: +SKIP
    >>> result = package_model(inputs, "dist/edgesent-reviews-en")  # doctest: +SKIP
    >>> result.metrics["test"]["onnx_int8"]["accuracy"]  # doctest: +SKIP
    0.912
    """
    from tokenizers import Tokenizer

    gate = gate or GateConfig()
    student_dir = Path(inputs.student_dir)
    labels = list(inputs.labels)
    _check_label_order(student_dir, labels)
    test, val = (indexed(s, labels, where) for s, where in ((inputs.test, "test"),
                                                           (inputs.val, "val")))
    extras = {key: indexed(s, labels, key) for key, s in inputs.extra_test_sets.items()}
    for labelled in (val, *extras.values()):
        check_texts(labelled.texts, labelled.labels, len(labels))
    tokenizer_file = student_dir / TOKENIZER_FILE
    if not tokenizer_file.is_file():
        raise FileNotFoundError(f"{student_dir}: no {TOKENIZER_FILE} (save the fast tokenizer)")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    _check_max_lengths(student_dir, [inputs.encoding.max_length, *inputs.max_lengths])

    own_work = work_dir is None
    work = Path(work_dir) if work_dir is not None else Path(
        tempfile.mkdtemp(prefix="edgesent-package-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        logger.info("exporting %s to ONNX", student_dir)
        fp32_path = export_onnx(student_dir, work / "onnx-fp32", validate=False)
        encoding, length_report = choose_max_length(
            fp32_path, tokenizer, inputs.encoding, inputs.max_lengths, val, labels,
            threads=gate.threads, batch_size=gate.batch_size)
        encoder = TextEncoder(tokenizer, encoding)
        logger.info("running the accuracy gate on %d test texts", len(test.texts))
        result = run_gate(fp32_path, work / "gate", test, label_names=labels, encoder=encoder,
                          config=gate, student_dir=student_dir,
                          calibration_texts=list(val.texts))
        int8_path = result.quantization.path
        run: dict[str, Any] = {"threads": gate.threads, "batch_size": gate.batch_size,
                               "progress": gate.progress}

        logger.info("fitting the temperature on %d validation texts", len(val.texts))
        val_logits = onnx_logits(int8_path, encoder, val.texts, **run)
        temperature = fit_temperature(val_logits, val.labels)
        metrics: dict[str, Any] = {
            "calibration": {"set": "val",
                            **calibration_report(val_logits, val.labels, temperature)},
            "test": {**result.metrics(), **_ece(result.int8, test.labels, temperature)},
        }
        if length_report:
            metrics["max_length"] = length_report
        extra_metrics = {}
        for key, labelled in extras.items():
            logger.info("evaluating extra test set %r (%d texts)", key, len(labelled.texts))
            fp32_eval, int8_eval = (
                evaluate(name, onnx_logits(path, encoder, labelled.texts, **run),
                         labelled.labels, labels, labelled.domains)
                for name, path in (("onnx_fp32", fp32_path), ("onnx_int8", int8_path)))
            extra_metrics[key] = {"n": len(labelled.texts), "onnx_fp32": fp32_eval.report,
                                  "onnx_int8": int8_eval.report,
                                  "int8_vs_fp32": compare(fp32_eval, int8_eval),
                                  **_ece(int8_eval, labelled.labels, temperature)}
        if extra_metrics:
            metrics["extra_test_sets"] = extra_metrics
        metrics["gate"] = result.gate_summary()
        metrics["sizes"] = _sizes(student_dir, fp32_path, int8_path, tokenizer_file)

        bundle = write_bundle(
            out_dir, model_file=int8_path, tokenizer_file=tokenizer_file, labels=labels,
            encoding=encoding, temperature=temperature, name=inputs.name,
            precision="int8", quantization=result.quantization.settings,
            provenance=inputs.provenance, metrics=metrics, overwrite=overwrite,
        )
        _check_reproduces(bundle.path, list(test.texts), result.int8.logits, gate)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    logger.info("bundle %s: int8 accuracy %.4f (fp32 %.4f), T=%.3f, %.2f MB",
                bundle.path, result.int8.accuracy, result.fp32_onnx.accuracy, temperature,
                bundle.size_bytes / 1e6)
    return PackageResult(bundle.path, metrics, dict(result.quantization.settings), temperature,
                         bundle.size_bytes, result.int8.logits)


def choose_max_length(
    onnx_path: Path, tokenizer: Any, encoding: EncodingSettings, lengths: Sequence[int],
    val: LabelledSet, labels: Sequence[str], *, threads: int = 2, batch_size: int = 32,
) -> tuple[EncodingSettings, dict[str, Any]]:
    """The encoding among ``encoding`` at each of ``lengths`` whose graph is most
    accurate on ``val`` (the shorter on a tie), and what each reached; ``encoding`` and
    an empty report when there is nothing to choose.

    >>> choose_max_length(path, tokenizer, EncodingSettings(128), [128, 256],
    ...                   val, ["negative", "positive"])  # doctest: +SKIP
    (EncodingSettings(max_length=256, ...), {'set': 'val', 'chosen': 256, ...})
    """
    candidates = sorted({encoding.max_length, *lengths})
    if not lengths or len(candidates) == 1:
        return replace(encoding, max_length=candidates[0]), {}
    accuracy = {}
    for length in candidates:
        candidate = replace(encoding, max_length=length)
        logits = onnx_logits(onnx_path, TextEncoder(tokenizer, candidate), val.texts,
                             threads=threads, batch_size=batch_size)
        accuracy[length] = float((logits.argmax(axis=1) == np.asarray(val.labels)).mean())
        logger.info("reading %d tokens: validation accuracy %.4f (fp32)", length,
                    accuracy[length])
    chosen = max(candidates, key=lambda n: (accuracy[n], -n))
    return replace(encoding, max_length=chosen), {
        "set": "val", "trained_at": encoding.max_length, "chosen": chosen,
        "fp32_accuracy": {str(n): round(a, 4) for n, a in accuracy.items()},
    }


def _check_max_lengths(student_dir: Path, lengths: Sequence[int]) -> None:
    config = json.loads((student_dir / "config.json").read_text(encoding="utf-8"))
    limit = config.get("max_position_embeddings")
    too_long = [n for n in lengths if limit is not None and n > limit]
    if too_long:
        raise ValueError(f"{student_dir}/config.json: the model reads at most {limit} "
                         f"tokens; max length {too_long[0]} is longer")


def indexed(labelled: LabelledSet, labels: Sequence[str], where: str) -> LabelledSet:
    """``labelled`` with its labels as indices into ``labels`` (see :func:`label_indices`)."""
    return LabelledSet(list(labelled.texts), label_indices(labelled.labels, labels, where),
                       labelled.domains)


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
                      gate: GateConfig) -> None:
    from edgesent import Classifier

    classifier = Classifier.load(bundle_path, threads=gate.threads)
    got = classifier.predict_logits(texts, batch_size=gate.batch_size)
    diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
    same = bool((got.argmax(axis=1) == expected.argmax(axis=1)).all())
    if not same or not diff < REPRODUCE_TOLERANCE:
        raise PackageError(
            f"bundle {bundle_path}: Classifier.predict_logits differs from the gate's int8 "
            f"logits (max |diff| {diff:.3g}, argmax identical: {same})"
        )
    logger.info("bundle %s reproduces the gate's int8 logits (max |diff| %.2g)",
                bundle_path, diff)
