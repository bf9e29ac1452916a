"""int8 quantization of the exported fp32 classifier.

Four routes, all recorded in :attr:`QuantizationResult.settings`:

* ``mode="per_token"`` (default), below.
* ``mode="dynamic"``: Optimum ``ORTQuantizer`` with an
  ``AutoQuantizationConfig.<target>(is_static=False, per_channel=...)`` preset. Weights
  are int8; activations are quantized on the fly. ONNX Runtime fuses the graph when the
  session loads.
* ``mode="dynamic", optimized=True``: ``ORTOptimizer`` (level 2) fuses Attention /
  SkipLayerNorm / BiasGelu first, then ``onnxruntime.quantization.quantize_dynamic``
  quantizes the fused graph (Optimum's quantizer fails on fused graphs).
* ``mode="static"``: QDQ graph with MinMax ranges collected by ``ORTQuantizer.fit`` on
  ``calibration_inputs``.
* ``mode="per_token"``: :mod:`edgesent_export.per_token`: int8 weights per channel and
  one activation scale per token, so a review's answer does not depend on its batch.

``quantize_embeddings=True`` also stores the embedding tables (``Gather`` data) as 8-bit:
the word-embedding table is most of a small student's bytes.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .onnx_export import MODEL_FILE, check_signature

logger = logging.getLogger(__name__)

TARGETS = ("avx512_vnni", "avx2", "arm64")
MODES = ("dynamic", "static", "per_token")
EMBEDDING_OPS = ("Gather", "GatherElements", "EmbedLayerNormalization")
# Where carries the attention mask's -3.4e38 fill value: calibrating it breaks histogram
# calibrators and quantizing it gains nothing.
STATIC_EXCLUDED_OPS = ("Where",)
OPTIMIZED_DYNAMIC_OPS = ("MatMul", "Attention")


@dataclass(frozen=True)
class QuantizationSettings:
    """How a graph is quantized: the one place the build half's defaults live.

    >>> QuantizationSettings(per_channel=False).to_dict()["per_channel"]
    False
    >>> QuantizationSettings.from_dict({"target": "avx2", "tool": "ignored"}).target
    'avx2'
    """

    target: str = "avx512_vnni"  # one of TARGETS
    mode: str = "per_token"  # one of MODES; per_token: answers independent of the batch
    per_channel: bool = True
    quantize_embeddings: bool = True
    optimized: bool = False  # fuse the graph first (dynamic only)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown quantization target {self.target!r}; "
                             f"expected one of {TARGETS}")
        if self.mode not in MODES:
            raise ValueError(f"unknown quantization mode {self.mode!r}; expected one of {MODES}")
        if self.mode != "dynamic" and self.optimized:
            raise ValueError("optimized=True is only available with mode='dynamic'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> QuantizationSettings:
        """The settings named in ``values`` (a manifest's ``quantization`` record, say);
        other keys are ignored, missing ones take the defaults."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.to_dict().items())


@dataclass(frozen=True)
class QuantizationResult:
    """The quantized graph and exactly how it was made (stored in the bundle manifest)."""

    path: Path
    settings: dict[str, Any] = field(default_factory=dict)


def quantize(
    onnx_path_or_dir: str | Path,
    out_dir: str | Path,
    settings: QuantizationSettings | None = None,
    *,
    calibration_inputs: Iterable[Mapping[str, Any]] | None = None,
    **overrides: Any,
) -> QuantizationResult:
    """Quantize an fp32 ONNX classifier to int8; writes ``out_dir/model.onnx``.

    ``settings`` (default :class:`QuantizationSettings`), with any of its fields
    overridden by keyword. ``target`` picks the Optimum preset (``avx512_vnni`` and
    ``arm64``: u8 activations, s8 weights; ``avx2``: u8/u8, safer on AVX2 CPUs without
    VNNI). ``mode="static"`` needs ``calibration_inputs``: dicts with ``input_ids`` and
    ``attention_mask`` (one sequence or a right-padded batch each).

    >>> result = quantize("runs/onnx/model.onnx", "runs/int8", per_channel=False)  # doctest: +SKIP
    >>> result.settings["ops_quantized"]  # doctest: +SKIP
    ['MatMul', 'Attention', 'Gather', ...]
    """
    chosen = replace(settings or QuantizationSettings(), **overrides)
    source = _resolve_onnx(onnx_path_or_dir)
    out_dir = Path(out_dir)
    if out_dir.resolve() == source.parent.resolve():
        raise ValueError(f"{out_dir}: write the quantized model to another directory")
    if chosen.mode == "static" and calibration_inputs is None:
        raise ValueError("mode='static' needs calibration_inputs "
                         "(input_ids/attention_mask dicts)")
    out_dir.mkdir(parents=True, exist_ok=True)
    if chosen.mode == "static":
        assert calibration_inputs is not None
        record = _quantize_static(source, out_dir, chosen, calibration_inputs)
    elif chosen.mode == "per_token":
        from .per_token import quantize_per_token

        record = quantize_per_token(source, out_dir / MODEL_FILE,
                                    quantize_embeddings=chosen.quantize_embeddings)
    elif chosen.optimized:
        record = _quantize_optimized(source, out_dir, chosen)
    else:
        record = _quantize_optimum_dynamic(source, out_dir, chosen)
    path = out_dir / MODEL_FILE
    check_signature(path)
    record.update(_common_settings(source, path, chosen))
    logger.info("quantized %s -> %s (%.2f MB)", source, path, record["size_bytes"] / 1e6)
    return QuantizationResult(path=path, settings=record)


def _resolve_onnx(onnx_path_or_dir: str | Path) -> Path:
    path = Path(onnx_path_or_dir)
    if path.is_dir():
        candidates = sorted(path.glob("*.onnx"))
        if len(candidates) != 1:
            raise FileNotFoundError(
                f"{path}: expected exactly one .onnx file, found {[c.name for c in candidates]}"
            )
        path = candidates[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    return path


def _optimum_config(s: QuantizationSettings, excluded: Sequence[str] = ()) -> tuple[Any, list[str]]:
    """Optimum's preset for ``s.target``, restricted to the operators ``s`` asks for."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    factory = getattr(AutoQuantizationConfig, s.target)
    is_static = s.mode == "static"
    default_ops = factory(is_static=is_static, per_channel=s.per_channel).operators_to_quantize
    dropped = set(excluded) | (set() if s.quantize_embeddings else set(EMBEDDING_OPS))
    ops = [op for op in (str(getattr(o, "value", o)) for o in default_ops) if op not in dropped]
    config = factory(is_static=is_static, per_channel=s.per_channel, operators_to_quantize=ops)
    return config, ops


def _optimum_record(config: Any, ops: list[str]) -> dict[str, Any]:
    return {
        "tool": "optimum.onnxruntime.ORTQuantizer",
        "ops_quantized": ops,
        "weights_dtype": config.weights_dtype.name,
        "activations_dtype": config.activations_dtype.name,
        "format": config.format.name,
    }


def _quantize_optimum_dynamic(source: Path, out_dir: Path,
                              s: QuantizationSettings) -> dict[str, Any]:
    from optimum.onnxruntime import ORTQuantizer

    config, ops = _optimum_config(s)
    quantizer = ORTQuantizer.from_pretrained(source.parent, file_name=source.name)
    quantizer.quantize(quantization_config=config, save_dir=out_dir, file_suffix=None)
    return _optimum_record(config, ops)


def _quantize_optimized(source: Path, out_dir: Path, s: QuantizationSettings) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .onnx_export import optimize_onnx

    ops = list(OPTIMIZED_DYNAMIC_OPS) + (["Gather"] if s.quantize_embeddings else [])
    weight_type = QuantType.QUInt8 if s.target == "avx2" else QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="edgesent-opt-") as tmp:
        optimized = optimize_onnx(source, tmp)
        quantize_dynamic(
            optimized,
            out_dir / MODEL_FILE,
            op_types_to_quantize=ops,
            per_channel=s.per_channel,
            weight_type=weight_type,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return {
        "tool": "onnxruntime.quantization.quantize_dynamic",
        "optimizer": "ORTOptimizer(optimization_level=2, optimize_for_gpu=False)",
        "ops_quantized": ops,
        "weights_dtype": weight_type.name,
        "activations_dtype": QuantType.QUInt8.name,
        "format": "QOperator",
    }


def _quantize_static(source: Path, out_dir: Path, s: QuantizationSettings,
                     calibration_inputs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import CalibrationConfig

    samples = calibration_samples(calibration_inputs)
    if not samples:
        raise ValueError("calibration_inputs is empty")
    config, ops = _optimum_config(s, excluded=STATIC_EXCLUDED_OPS)
    calibration = CalibrationConfig(
        dataset_name="edgesent-calibration",
        dataset_config_name="in-memory",
        dataset_split="calibration",
        dataset_num_samples=len(samples),
        method=CalibrationMethod.MinMax,
    )
    quantizer = ORTQuantizer.from_pretrained(source.parent, file_name=source.name)
    with tempfile.TemporaryDirectory(prefix="edgesent-calib-") as tmp:
        ranges = quantizer.fit(
            dataset=samples,
            calibration_config=calibration,
            onnx_augmented_model_name=Path(tmp) / "augmented.onnx",
            operators_to_quantize=ops,
        )
    quantizer.quantize(quantization_config=config, save_dir=out_dir, file_suffix=None,
                       calibration_tensors_range=ranges)
    return {**_optimum_record(config, ops),
            "calibration": {"method": "MinMax", "samples": len(samples)}}


def calibration_samples(inputs: Iterable[Mapping[str, Any]]) -> list[dict[str, np.ndarray]]:
    """One ``{"input_ids", "attention_mask"}`` dict of 1-D int64 arrays per sequence,
    padding stripped; accepts single sequences or right-padded 2-D batches."""
    samples: list[dict[str, np.ndarray]] = []
    for index, item in enumerate(inputs):
        missing = {"input_ids", "attention_mask"} - set(item)
        if missing:
            raise ValueError(f"calibration_inputs[{index}] lacks {sorted(missing)}")
        ids = np.atleast_2d(np.asarray(item["input_ids"], dtype=np.int64))
        mask = np.atleast_2d(np.asarray(item["attention_mask"], dtype=np.int64))
        if ids.shape != mask.shape or ids.ndim != 2:
            raise ValueError(f"calibration_inputs[{index}]: input_ids {ids.shape} and "
                             f"attention_mask {mask.shape} must share one 1-D or 2-D shape")
        for row_ids, row_mask in zip(ids, mask, strict=True):
            length = max(int(row_mask.sum()), 1)
            samples.append({"input_ids": row_ids[:length].copy(),
                            "attention_mask": row_mask[:length].copy()})
    return samples


def _common_settings(source: Path, path: Path, s: QuantizationSettings) -> dict[str, Any]:
    import onnxruntime

    return {
        "precision": "int8",
        **s.to_dict(),
        "onnxruntime_version": onnxruntime.__version__,
        "optimum_version": _version("optimum"),
        "source": source.name,
        "source_size_bytes": source.stat().st_size,
        "size_bytes": path.stat().st_size,
    }


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None

