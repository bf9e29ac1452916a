"""The speed side of the student-shape frontier: size and latency of candidate shapes.

    python examples/default_model/student_shapes.py [OUT.json]

Each shape is a DistilBERT with the shipped student's width (384), heads (12) and
vocabulary (20,241 pieces) and random weights, exported with Optimum and quantized per
token as the pipeline does (``edgesent_export.onnx_export`` and ``per_token``); FFN 768
stands for a student whose feed-forward layers are pruned to half. All graphs and the
shipped one run in one process, alternating, on one thread with the run half's session
options: p50 of one 64-token review, its ratio to the shipped graph, and the int8 file
size. Accuracy, the other side of the frontier, needs trained students.
"""

import json
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from timing import alternating_p50_ms
from transformers import DistilBertConfig, DistilBertForSequenceClassification

from edgesent.models import DEFAULT_MODEL
from edgesent.runner import session_options
from edgesent_export.onnx_export import export_onnx
from edgesent_export.per_token import quantize_per_token

SHAPES = [(2, 1536), (3, 1536), (4, 1536), (6, 1536), (3, 768), (4, 768), (6, 768)]
VOCAB, WIDTH, HEADS, TOKENS, ROUNDS = 20_241, 384, 12, 64, 400


def build(layers: int, ffn: int, folder: Path) -> Path:
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=VOCAB, dim=WIDTH, n_layers=layers, n_heads=HEADS,
                              hidden_dim=ffn, num_labels=2)
    DistilBertForSequenceClassification(config).save_pretrained(folder / "student")
    export_onnx(folder / "student", folder / "onnx", validate=False)
    quantize_per_token(folder / "onnx" / "model.onnx", folder / "int8" / "model.onnx")
    return folder / "int8" / "model.onnx"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    graphs = {"shipped (3 layers, FFN 1536)": DEFAULT_MODEL / "model.onnx"}
    with tempfile.TemporaryDirectory() as tmp:
        for layers, ffn in SHAPES:
            folder = Path(tmp) / f"{layers}-{ffn}"
            graphs[f"{layers} layers, FFN {ffn}"] = build(layers, ffn, folder)
        sessions = {name: ort.InferenceSession(str(path), session_options(1),
                                               providers=["CPUExecutionProvider"])
                    for name, path in graphs.items()}
        sizes = {name: path.stat().st_size / 1e6 for name, path in graphs.items()}
        rng = np.random.default_rng(0)
        feed = {"input_ids": rng.integers(1000, VOCAB, (1, TOKENS)).astype(np.int64),
                "attention_mask": np.ones((1, TOKENS), np.int64)}
        p50 = alternating_p50_ms({name: partial(session.run, None, feed)
                                  for name, session in sessions.items()}, ROUNDS)
    base = p50["shipped (3 layers, FFN 1536)"]
    rows = [{"shape": name, "int8_mb": round(sizes[name], 2), "p50_ms": round(ms, 3),
             "x_shipped": round(ms / base, 3)} for name, ms in p50.items()]
    print("| shape | int8 MB | p50 ms @64 tok, 1 thread | × shipped |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['shape']} | {row['int8_mb']} | {row['p50_ms']} | {row['x_shipped']} |")
    if out:
        out.write_text(json.dumps({"tokens": TOKENS, "rounds": ROUNDS, "rows": rows},
                                  indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
