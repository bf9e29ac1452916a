"""Recover the fp32 PyTorch student from an int8 bundle of Optimum's dynamic QOperator graph.

The v1 default model shipped only its int8 graph. Its weights are int8 values with
per-channel scales, so dequantizing them gives an fp32 DistilBERT whose own dynamic
quantization reproduces the shipped ``model.onnx`` byte for byte (checked below). That
checkpoint lets ``edgesent export`` re-quantize, gate and re-bundle the v1 student
through the pipeline without retraining it (90 minutes here).

    pip install torch==2.13.0 -e ".[export]"
    python examples/default_model/recover_student.py edgesent/models/edgesent-reviews-en \\
        runs/v1-student-recovered
    edgesent export runs/v1-student-recovered runs/v1.1/edgesent-reviews-en --mode per_token \\
        --sources examples/default_model/sources.json --data ../shared/data/reviews \\
        --name edgesent-reviews-en

Only DistilBERT graphs exported by Optimum (node names like
``/distilbert/transformer/layer.0/attention/q_lin/MatMul_quant``) are understood.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

QUANT_SUFFIX = "_quantized"


def dequantize(values: dict[str, np.ndarray], name: str) -> np.ndarray:
    """``(q - zero_point) * scale`` of the int8 initializer ``name``."""
    q = values[name + QUANT_SUFFIX].astype(np.float32)
    zero = values[name + "_zero_point"].astype(np.float32)
    return (q - zero) * values[name + "_scale"]


def state_dict_of(model_path: Path) -> tuple[dict[str, np.ndarray], int]:
    """The fp32 state dict of the DistilBERT classifier graph, and its layer count."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_path)).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state = {name: value.copy() for name, value in values.items()
             if not name.startswith("onnx::")
             and not name.endswith((QUANT_SUFFIX, "_scale", "_zero_point"))}
    for table in ("word_embeddings", "position_embeddings"):
        name = f"distilbert.embeddings.{table}.weight"
        state[name] = dequantize(values, name)
    for node in graph.node:
        weight = node.input[1].removesuffix(QUANT_SUFFIX) if len(node.input) > 1 else ""
        if node.op_type != "MatMulInteger" or weight + "_zero_point" not in values:
            continue  # attention's activation-by-activation products have no weights
        module = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        # MatMul weights are (in, out); torch's Linear keeps (out, in).
        state[module + ".weight"] = dequantize(values, weight).T.copy()
    layers = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("distilbert.transformer"))
    return state, layers


def recover(bundle_dir: Path, out_dir: Path, heads: int = 12) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``tokenizer.json`` to ``out_dir``."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    manifest = json.loads((bundle_dir / "edgesent.json").read_text(encoding="utf-8"))
    labels = manifest["labels"]
    state, layers = state_dict_of(bundle_dir / "model.onnx")
    words = state["distilbert.embeddings.word_embeddings.weight"]
    config = DistilBertConfig(
        vocab_size=words.shape[0], dim=words.shape[1], n_layers=layers, n_heads=heads,
        hidden_dim=state["distilbert.transformer.layer.0.ffn.lin1.bias"].shape[0],
        max_position_embeddings=state["distilbert.embeddings.position_embeddings.weight"].shape[0],
        num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)})
    model = DistilBertForSequenceClassification(config)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    shutil.copyfile(bundle_dir / "tokenizer.json", out_dir / "tokenizer.json")
    return out_dir


def reproduces(bundle_dir: Path, student_dir: Path) -> bool:
    """Whether Optimum's dynamic preset on the recovered student gives the bundle's graph."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from edgesent_export.onnx_export import export_onnx
    from edgesent_export.quantize import QuantizationSettings, quantize

    settings = QuantizationSettings.from_dict(
        json.loads((bundle_dir / "edgesent.json").read_text())["model"]["quantization"])
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(student_dir, Path(tmp) / "fp32")
        int8 = quantize(fp32, Path(tmp) / "int8", settings).path
        return int8.read_bytes() == (bundle_dir / "model.onnx").read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    recover(args.bundle, args.out)
    same = reproduces(args.bundle, args.out)
    print(f"{args.out}: re-quantized graph {'==' if same else '!='} {args.bundle}/model.onnx")
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
