"""int8 quantization of the tiny exported student: real Optimum / ONNX Runtime."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from extras import EXPORT_REASON

pytest.importorskip("optimum.onnxruntime", reason=EXPORT_REASON)

import onnx
import onnxruntime as ort
from tokenizers import Tokenizer

from edgesent.tokenization import EncodingSettings, TextEncoder
from edgesent_export.quantize import calibration_samples, quantize


@pytest.fixture(scope="module")
def encoded(trained_tiny_distilbert_dir, review_factory):
    encoder = TextEncoder(Tokenizer.from_file(str(trained_tiny_distilbert_dir / "tokenizer.json")),
                          EncodingSettings(max_length=64, head_tokens=16))
    return encoder, encoder.encode(review_factory(64, seed=11).texts)


def _logits(path, ids, mask):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


def _ops(path):
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _int8_initializers(path):
    model = onnx.load(str(path))
    eight_bit = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    return {init.name for init in model.graph.initializer if init.data_type in eight_bit}


@pytest.mark.parametrize(
    ("kwargs", "fused"),
    [
        ({"mode": "dynamic"}, False),
        ({"mode": "dynamic", "per_channel": False, "quantize_embeddings": False}, False),
        ({"mode": "dynamic", "target": "avx2"}, False),
        ({"mode": "dynamic", "optimized": True}, True),
    ],
)
def test_dynamic_variants(trained_tiny_onnx, tmp_path, encoded, kwargs, fused):
    _, (ids, mask) = encoded
    result = quantize(trained_tiny_onnx, tmp_path, **kwargs)
    assert result.path == tmp_path / "model.onnx"
    settings = result.settings
    assert settings["mode"] == "dynamic" and settings["precision"] == "int8"
    assert settings["per_channel"] == kwargs.get("per_channel", True)
    assert settings["optimized"] is fused
    assert settings["onnxruntime_version"] == ort.__version__
    json.dumps(settings)  # goes into the manifest
    ops = _ops(result.path)
    assert ops["MatMulInteger"] + ops["DynamicQuantizeMatMul"] + ops["QAttention"] > 0
    quantized = _int8_initializers(result.path)
    embeds = kwargs.get("quantize_embeddings", True)
    assert ("Gather" in settings["ops_quantized"]) is embeds
    assert any("word_embeddings" in name for name in quantized) is embeds
    assert settings["size_bytes"] < settings["source_size_bytes"]
    reference = _logits(trained_tiny_onnx, ids, mask)
    got = _logits(result.path, ids, mask)
    assert (got.argmax(1) == reference.argmax(1)).mean() >= 0.95
    assert np.abs(got - reference).max() < 0.5


def test_embedding_quantization_shrinks_the_model(trained_tiny_onnx, tmp_path):
    with_embeddings = quantize(trained_tiny_onnx, tmp_path / "a", quantize_embeddings=True)
    without = quantize(trained_tiny_onnx, tmp_path / "b", quantize_embeddings=False)
    assert with_embeddings.settings["size_bytes"] < without.settings["size_bytes"]
    assert "Gather" not in without.settings["ops_quantized"]


def test_static_qdq(trained_tiny_onnx, tmp_path, encoded):
    _, (ids, mask) = encoded
    calibration = [{"input_ids": ids[:16], "attention_mask": mask[:16]}]
    result = quantize(trained_tiny_onnx, tmp_path, mode="static", calibration_inputs=calibration)
    settings = result.settings
    assert settings["mode"] == "static" and settings["format"] == "QDQ"
    assert settings["calibration"] == {"method": "MinMax", "samples": 16}
    assert "Where" not in settings["ops_quantized"]
    assert _ops(result.path)["QuantizeLinear"] > 0
    got, reference = _logits(result.path, ids, mask), _logits(trained_tiny_onnx, ids, mask)
    assert (got.argmax(1) == reference.argmax(1)).mean() >= 0.9


def test_calibration_samples_strip_padding():
    samples = calibration_samples([
        {"input_ids": [[2, 7, 3, 0], [2, 3, 0, 0]], "attention_mask": [[1, 1, 1, 0], [1, 1, 0, 0]]},
        {"input_ids": [2, 9, 3], "attention_mask": [1, 1, 1]},
    ])
    assert [s["input_ids"].tolist() for s in samples] == [[2, 7, 3], [2, 3], [2, 9, 3]]
    assert all(s["attention_mask"].dtype == np.int64 for s in samples)
    with pytest.raises(ValueError, match=r"calibration_inputs\[0\] lacks"):
        calibration_samples([{"input_ids": [1]}])


def test_bad_arguments(trained_tiny_onnx, tmp_path):
    with pytest.raises(ValueError, match="target"):
        quantize(trained_tiny_onnx, tmp_path, target="avx9000")
    with pytest.raises(ValueError, match="mode"):
        quantize(trained_tiny_onnx, tmp_path, mode="fp4")
    with pytest.raises(ValueError, match="calibration_inputs"):
        quantize(trained_tiny_onnx, tmp_path, mode="static")
    with pytest.raises(ValueError, match="another directory"):
        quantize(trained_tiny_onnx, trained_tiny_onnx.parent)
    with pytest.raises(FileNotFoundError):
        quantize(tmp_path / "missing.onnx", tmp_path / "out")
