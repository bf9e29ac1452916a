"""Export a fine-tuned sequence classifier to ONNX with Optimum, and check the graph.

The run half serves one graph shape: inputs ``input_ids`` and ``attention_mask`` (int64,
dynamic batch and sequence) and output ``logits``. :func:`export_onnx` refuses anything
else, so a BERT teacher exported by mistake (it also takes ``token_type_ids``) fails here,
not on a user's laptop.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from edgesent.bundle import MODEL_FILE
from edgesent.graph import OUTPUT_NAME, REQUIRED_INPUTS, signature_problems

logger = logging.getLogger(__name__)


class GraphSignatureError(ValueError):
    """The ONNX graph does not have the inputs/outputs the run half serves."""


def export_onnx(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    opset: int | None = None,
    validate: bool = True,
) -> Path:
    """Export the classifier saved in ``model_dir`` to ``out_dir/model.onnx``.

    ``model_dir`` is a local directory written by ``save_pretrained`` (model + tokenizer);
    nothing is downloaded. Returns the path of the ONNX file. ``validate`` lets Optimum
    compare the graph's outputs with PyTorch's.

    >>> export_onnx("runs/student", "runs/onnx")  # doctest: +SKIP
    PosixPath('runs/onnx/model.onnx')
    """
    from optimum.exporters.onnx import main_export

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{model_dir}: no config.json; expected a save_pretrained directory")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    logger.info("exporting %s to ONNX in %s", model_dir, out_dir)
    main_export(
        str(model_dir),
        output=out_dir,
        task="text-classification",
        opset=opset,
        device="cpu",
        local_files_only=True,
        do_validation=validate,
    )
    path = out_dir / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Optimum wrote no {MODEL_FILE} in {out_dir}")
    check_signature(path)
    return path


def _load_graph(onnx_path: str | Path) -> Any:
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False).graph


def graph_signature(onnx_path: str | Path) -> tuple[list[str], list[str]]:
    """Names of the graph's inputs and outputs, in order (initializers excluded)."""
    view = _GraphView(_load_graph(onnx_path))
    return [i.name for i in view.get_inputs()], [o.name for o in view.get_outputs()]


class _GraphView:
    """An ONNX graph's inputs and outputs, shaped like an ONNX Runtime session's, so that
    :func:`edgesent.graph.signature_problems` checks it without loading the weights."""

    def __init__(self, graph: Any) -> None:
        import onnx

        def port(value: Any) -> SimpleNamespace:
            tensor = value.type.tensor_type
            kind = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
            shape = [d.dim_value if d.HasField("dim_value") else d.dim_param
                     for d in tensor.shape.dim]
            return SimpleNamespace(name=value.name, type=f"tensor({kind})", shape=shape)

        initializers = {init.name for init in graph.initializer}
        self.inputs = [port(i) for i in graph.input if i.name not in initializers]
        self.outputs = [port(o) for o in graph.output]

    def get_inputs(self) -> list[SimpleNamespace]:
        return self.inputs

    def get_outputs(self) -> list[SimpleNamespace]:
        return self.outputs


def check_signature(onnx_path: str | Path) -> None:
    """Raise :class:`GraphSignatureError` unless the graph meets the run half's contract
    (:mod:`edgesent.graph`) and takes exactly ``input_ids`` and ``attention_mask``.

    >>> check_signature("runs/onnx/model.onnx")  # doctest: +SKIP
    """
    view = _GraphView(_load_graph(onnx_path))
    problems = signature_problems(view)
    if extra := [i.name for i in view.get_inputs() if i.name not in REQUIRED_INPUTS]:
        problems.append(f"graph also takes {extra}")
    if problems:
        raise GraphSignatureError(
            f"{onnx_path}: {'; '.join(problems)}. The run half needs inputs "
            f"{list(REQUIRED_INPUTS)} and output {OUTPUT_NAME!r} (export a "
            "DistilBERT-architecture student, which takes no token_type_ids)"
        )


def optimize_onnx(onnx_path: str | Path, out_dir: str | Path) -> Path:
    """Fuse the fp32 graph for CPU with ``ORTOptimizer`` (level 2, ``optimize_for_gpu=False``):
    Attention, SkipLayerNormalization and BiasGelu fusions. Returns the optimised file.

    Do not feed the result to Optimum's ``ORTQuantizer`` (it fails on fused graphs); use
    ``quantize(..., optimized=True)``, which goes through ``quantize_dynamic`` instead.

    >>> optimize_onnx("runs/onnx/model.onnx", "runs/onnx-opt")  # doctest: +SKIP
    PosixPath('runs/onnx-opt/model_optimized.onnx')
    """
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    onnx_path = Path(onnx_path)
    out_dir = Path(out_dir)
    optimizer = ORTOptimizer.from_pretrained(onnx_path.parent, file_names=[onnx_path.name])
    config = OptimizationConfig(optimization_level=2, optimize_for_gpu=False)
    optimizer.optimize(optimization_config=config, save_dir=out_dir)
    path = out_dir / f"{onnx_path.stem}_optimized.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"ORTOptimizer wrote no {path.name} in {out_dir}")
    check_signature(path)
    return path
