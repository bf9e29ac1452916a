"""Per-token dynamic int8 quantization: every token row gets its own activation scale.

ONNX Runtime's dynamic quantization (Optimum's presets, ``quantize_dynamic``) computes one
activation scale per tensor: over every review in the batch and every padded position.
One long or unusual review then changes its neighbours' rounding, so a review's score
depends on what it was batched with. Here each weight matrix is int8 per output channel
(symmetric), and each activation row (one token) is quantized with a scale of its own,
computed on the fly:

    x_q = round(x / s) + 128,   s = max|x| / 127   (per row)
    W_q = round(W / w), w = max|W| / 63 (per output column)
    y   = (MatMulIntegerToFloat(x_q, W_q, zero point 128) · w_scale) · s  (+ bias)

A token's result depends on nothing but that token's own values, so answers do not
depend on batch composition or padding. Weights keep 7 bits (±63): x86 CPUs with AVX2 but
no VNNI multiply uint8 by int8 in pairs summed into int16 (``vpmaddubsw``), and
255·127·2 overflows it, so full-range weights saturate there and the answers would depend
on the CPU; 255·63·2 fits. Attention's activation-by-activation products
stay fp32, and embedding tables are stored as uint8 (one scale per table).

>>> settings = quantize_per_token("runs/onnx/model.onnx", "runs/int8/model.onnx")  # doctest: +SKIP
>>> settings["mode"]  # doctest: +SKIP
'per_token'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

EPSILON = 1e-12  # smallest scale: an all-zero row must not divide by zero
MS_DOMAIN = "com.microsoft"  # MatMulIntegerToFloat is an ONNX Runtime contrib op
WEIGHT_LEVELS = 63  # 7-bit weights: no int16 saturation on AVX2 CPUs without VNNI


class _Rewriter:
    """Builds the replacement nodes and initializers of one graph."""

    def __init__(self) -> None:
        from onnx import numpy_helper

        self.numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.quantized: dict[str, tuple[str, str]] = {}  # activation -> (x_q, scale [M,1])
        self.shapes: dict[tuple[str, int], str] = {}  # (activation, N) -> output shape
        for name, value in (("pt_last", [-1]), ("pt_col", [1]), ("pt_start", [0])):
            self.constant(name, np.array(value, np.int64))
        self.constant("pt_127", np.array(127, np.float32))
        self.constant("pt_eps", np.array(EPSILON, np.float32))
        self.constant("pt_one", np.array(1.0, np.float32))
        self.constant("pt_128", np.array(128, np.uint8))

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, **attrs))

    def quantize_rows(self, x: str, width: int) -> tuple[str, str]:
        """uint8 rows of ``x`` (flattened to [M, width]) and their scales [M, 1]."""
        if x not in self.quantized:
            p = _prefix(x)
            self.constant(p + "_2d", np.array([-1, width], np.int64))
            self.node("Reshape", [x, p + "_2d"], [p + "_x"])
            self.node("Abs", [p + "_x"], [p + "_abs"])
            self.node("ReduceMax", [p + "_abs", "pt_col"], [p + "_amax"], keepdims=0)
            self.node("Div", [p + "_amax", "pt_127"], [p + "_s0"])
            self.node("Max", [p + "_s0", "pt_eps"], [p + "_s"])
            self.node("Shape", [p + "_s"], [p + "_rows"])
            self.node("Expand", ["pt_128", p + "_rows"], [p + "_zp"])
            self.node("QuantizeLinear", [p + "_x", p + "_s", p + "_zp"], [p + "_q"], axis=0)
            self.node("Unsqueeze", [p + "_s", "pt_col"], [p + "_scale"])
            self.quantized[x] = (p + "_q", p + "_scale")
        return self.quantized[x]

    def output_shape(self, x: str, width: int) -> str:
        """``x``'s leading dimensions followed by ``width``."""
        key = (x, width)
        if key not in self.shapes:
            p = f"{_prefix(x)}_{width}"
            self.node("Shape", [x], [p + "_shape"])
            self.node("Slice", [p + "_shape", "pt_start", "pt_last"], [p + "_lead"])
            self.constant(p + "_n", np.array([width], np.int64))
            self.node("Concat", [p + "_lead", p + "_n"], [p + "_out"], axis=0)
            self.shapes[key] = p + "_out"
        return self.shapes[key]

    def matmul(self, x: str, name: str, weight: np.ndarray, out: str) -> None:
        """``out = x @ weight`` with int8 weights and per-row int8 activations."""
        scale = np.maximum(np.abs(weight).max(axis=0), EPSILON) / WEIGHT_LEVELS
        w_q = np.clip(np.round(weight / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS).astype(np.int8)
        w_name = self.constant(name + "_pt_q", w_q)
        s_name = self.constant(name + "_pt_scale", scale.astype(np.float32))
        x_q, x_scale = self.quantize_rows(x, weight.shape[0])
        p = _prefix(out)
        self.node("MatMulIntegerToFloat", [x_q, w_name, "pt_one", s_name, "pt_128"],
                  [p + "_y"], domain=MS_DOMAIN)
        self.node("Mul", [p + "_y", x_scale], [p + "_ys"])
        self.node("Reshape", [p + "_ys", self.output_shape(x, weight.shape[1])], [out])

    def embedding(self, table: str, values: np.ndarray, indices: str, out: str) -> None:
        """A Gather over a uint8 copy of ``values`` (one scale), dequantized after."""
        low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
        scale = max((high - low) / 255.0, EPSILON)
        zero = round(-low / scale)
        q = np.clip(np.round(values / scale) + zero, 0, 255).astype(np.uint8)
        q_name = self.constant(table + "_pt_q", q)
        self.constant(table + "_pt_scale", np.array(scale, np.float32))
        self.constant(table + "_pt_zero", np.array(zero, np.uint8))
        self.node("Gather", [q_name, indices], [out + "_q"])
        self.node("DequantizeLinear", [out + "_q", table + "_pt_scale", table + "_pt_zero"], [out])


def quantize_per_token(source: str | Path, out_path: str | Path, *,
                       quantize_embeddings: bool = True) -> dict[str, Any]:
    """Write the per-token int8 version of the fp32 graph ``source`` to ``out_path``.

    Every ``MatMul``/``Gemm`` with a constant 2-D weight is quantized; returns the
    settings recorded in the bundle manifest.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    rewriter = _Rewriter()
    quantized_ops = set()
    for node in graph.node:
        const = [n for n in node.input[1:2] if n in weights and len(weights[n].dims) == 2]
        if node.op_type == "MatMul" and const:
            w = numpy_helper.to_array(weights[const[0]]).astype(np.float32)
            rewriter.matmul(node.input[0], const[0], w, node.output[0])
        elif node.op_type == "Gemm" and const and _plain_gemm(node):
            w = numpy_helper.to_array(weights[const[0]]).astype(np.float32)
            if _attribute(node, "transB", 0):
                w = w.T
            product = node.output[0] + "_pt_mm"
            rewriter.matmul(node.input[0], const[0], w, product)
            rewriter.node("Add" if len(node.input) > 2 else "Identity",
                          [product, *node.input[2:3]], [node.output[0]])
        elif (quantize_embeddings and node.op_type == "Gather" and node.input[0] in weights
              and len(weights[node.input[0]].dims) == 2):
            table = numpy_helper.to_array(weights[node.input[0]]).astype(np.float32)
            rewriter.embedding(node.input[0], table, node.input[1], node.output[0])
        else:
            rewriter.nodes.append(node)
            continue
        quantized_ops.add(node.op_type)
    used = {name for n in rewriter.nodes for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(rewriter.nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + [i for i in rewriter.initializers if i.name in used])
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(MS_DOMAIN, 1))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return {"tool": "edgesent_export.per_token", "format": "QOperator",
            "ops_quantized": sorted(quantized_ops),
            "weights_dtype": "QInt8 (per channel, 7-bit range)",
            "activations_dtype": "QUInt8 (per token, symmetric)"}


def _plain_gemm(node: Any) -> bool:
    return (not _attribute(node, "transA", 0) and _attribute(node, "alpha", 1.0) == 1.0
            and _attribute(node, "beta", 1.0) == 1.0)


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _prefix(name: str) -> str:
    return "pt_" + "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
