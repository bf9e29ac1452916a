"""ONNX export of the tiny students through Optimum."""

from __future__ import annotations

import numpy as np
import pytest
from extras import EXPORT_REASON

torch = pytest.importorskip("torch", reason=EXPORT_REASON)
transformers = pytest.importorskip("transformers", reason=EXPORT_REASON)
pytest.importorskip("optimum.exporters.onnx", reason=EXPORT_REASON)

import onnxruntime as ort  # noqa: E402

from edgesent_export.onnx_export import (  # noqa: E402
    GraphSignatureError,
    check_signature,
    export_onnx,
    graph_signature,
    optimize_onnx,
)


def _ort_logits(path, ids, mask):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


@pytest.fixture(scope="module")
def batch(trained_tiny_distilbert_dir, synthetic_reviews):
    tokenizer = transformers.AutoTokenizer.from_pretrained(trained_tiny_distilbert_dir)
    encoded = tokenizer(synthetic_reviews.texts[:24], padding=True, return_tensors="np")
    return encoded["input_ids"].astype(np.int64), encoded["attention_mask"].astype(np.int64)


def test_export_signature_and_logits_match_pytorch(trained_tiny_onnx, trained_tiny_distilbert_dir,
                                                   batch):
    assert trained_tiny_onnx.name == "model.onnx"
    assert graph_signature(trained_tiny_onnx) == (["input_ids", "attention_mask"], ["logits"])
    ids, mask = batch
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        trained_tiny_distilbert_dir).eval()
    with torch.no_grad():
        expected = model(input_ids=torch.from_numpy(ids),
                         attention_mask=torch.from_numpy(mask)).logits.numpy()
    got = _ort_logits(trained_tiny_onnx, ids, mask)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # dynamic batch and sequence axes
    assert _ort_logits(trained_tiny_onnx, ids[:3, :7], mask[:3, :7]).shape == (3, 2)


def test_optimized_graph_is_fused_and_equivalent(trained_tiny_onnx, tmp_path, batch):
    import onnx

    optimized = optimize_onnx(trained_tiny_onnx, tmp_path)
    ops = {node.op_type for node in onnx.load(str(optimized)).graph.node}
    assert "Attention" in ops and "SkipLayerNormalization" in ops
    ids, mask = batch
    np.testing.assert_allclose(_ort_logits(optimized, ids, mask),
                               _ort_logits(trained_tiny_onnx, ids, mask), atol=1e-4)


def test_bert_with_token_type_ids_is_refused(tiny_bert_dir, tmp_path):
    with pytest.raises(GraphSignatureError, match="token_type_ids"):
        export_onnx(tiny_bert_dir, tmp_path, validate=False)


def test_missing_model_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        export_onnx(tmp_path / "nowhere", tmp_path / "out")


def test_check_signature_refuses_what_the_run_half_cannot_serve(trained_tiny_onnx, tmp_path):
    import onnx

    model = onnx.load(str(trained_tiny_onnx))
    old = model.graph.output[0].name
    model.graph.output[0].name = "scores"
    for node in model.graph.node:
        node.output[:] = ["scores" if name == old else name for name in node.output]
    renamed = tmp_path / "renamed.onnx"
    onnx.save(model, str(renamed))
    with pytest.raises(GraphSignatureError, match="no output named 'logits'"):
        check_signature(renamed)
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    onnx.save(model, str(renamed))
    with pytest.raises(GraphSignatureError, match="input input_ids is tensor\\(float\\)"):
        check_signature(renamed)
