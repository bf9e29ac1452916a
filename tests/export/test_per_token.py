"""Per-token int8: answers that do not depend on the batch, on a real exported student."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from extras import EXPORT_REASON

pytest.importorskip("optimum.onnxruntime", reason=EXPORT_REASON)

import onnx
from tokenizers import Tokenizer

from edgesent.runner import Runner
from edgesent.tokenization import EncodingSettings, TextEncoder
from edgesent_export.per_token import quantize_per_token
from edgesent_export.quantize import quantize


@pytest.fixture(scope="module")
def encoder(trained_tiny_distilbert_dir):
    tokenizer = Tokenizer.from_file(str(trained_tiny_distilbert_dir / "tokenizer.json"))
    return TextEncoder(tokenizer, EncodingSettings(max_length=64, head_tokens=16))


@pytest.fixture(scope="module")
def per_token(trained_tiny_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("per-token") / "model.onnx"
    settings = quantize_per_token(trained_tiny_onnx, out)
    return out, settings


def test_weights_and_embeddings_are_eight_bit(per_token, trained_tiny_onnx):
    path, settings = per_token
    ops = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    assert ops["MatMulIntegerToFloat"] >= 6 and ops["DequantizeLinear"] >= 1
    assert {"MatMul", "Gather"} <= set(settings["ops_quantized"])
    assert path.stat().st_size < 0.75 * trained_tiny_onnx.stat().st_size  # tiny: graph overhead


def test_close_to_fp32(per_token, trained_tiny_onnx, encoder, review_factory):
    texts = review_factory(64, seed=5).texts
    fp32 = Runner.from_onnx(trained_tiny_onnx, encoder, threads=1).logits(texts)
    int8 = Runner.from_onnx(per_token[0], encoder, threads=1).logits(texts)
    assert np.abs(fp32 - int8).max() < 0.1
    assert (fp32.argmax(1) == int8.argmax(1)).mean() >= 0.95


def test_answers_do_not_depend_on_the_batch(per_token, trained_tiny_onnx, tmp_path, encoder,
                                            review_factory):
    texts = review_factory(48, seed=7).texts
    long_review = " ".join(texts) * 3  # fills max_length, next to short ones
    per_token_runner = Runner.from_onnx(per_token[0], encoder, threads=1)
    dynamic = quantize(trained_tiny_onnx, tmp_path, mode="dynamic").path
    tensor_wise = Runner.from_onnx(dynamic, encoder, threads=1)

    def spread(runner: Runner) -> float:
        alone = runner.logits(texts, batch_size=1)
        order = np.random.default_rng(0).permutation(len(texts))
        mixed = np.empty_like(alone)
        for start in range(0, len(texts), 16):  # unsorted batches, padded to a long review
            rows = order[start : start + 16]
            ids, mask = encoder.encode([long_review, *(texts[k] for k in rows)])
            mixed[rows] = runner.run(ids, mask)[1:]
        return float(np.abs(alone - mixed).max())

    assert spread(per_token_runner) < 1e-4
    assert spread(tensor_wise) > 10 * spread(per_token_runner)  # the problem it solves


def test_full_scale_products_do_not_saturate(tmp_path):
    """Every activation and weight at its largest magnitude: on AVX2 CPUs without VNNI,
    8-bit weights overflow the int16 pair sums there; the 7-bit weights must not."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = np.ones((64, 8), np.float32)
    weight[:, 4:] = -1.0
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "full_scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", 8])],
        [numpy_helper.from_array(weight, "w")])
    source = tmp_path / "fp32.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), source)
    quantize_per_token(source, tmp_path / "int8.onnx")
    w_q = next(i for i in onnx.load(str(tmp_path / "int8.onnx")).graph.initializer
               if i.name == "w_pt_q")
    assert np.abs(numpy_helper.to_array(w_q)).max() <= 63
    x = np.stack([np.ones(64), -np.ones(64), np.linspace(-1, 1, 64)]).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ weight, rtol=1e-2, atol=0.05)
