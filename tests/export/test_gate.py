"""The accuracy gate on the tiny trained student."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from extras import EXPORT_REASON

pytest.importorskip("torch", reason=EXPORT_REASON)
pytest.importorskip("optimum.onnxruntime", reason=EXPORT_REASON)

from tokenizers import Tokenizer

from edgesent.errors import EdgesentError
from edgesent.tokenization import EncodingSettings, TextEncoder
from edgesent_export.gate import (
    GateConfig,
    GateError,
    LabelledSet,
    attempt_plan,
    check_texts,
    evaluate,
    run_gate,
)
from edgesent_export.logits import onnx_logits, torch_logits
from edgesent_export.quantize import QuantizationSettings

LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def encoder(trained_tiny_distilbert_dir):
    tokenizer = Tokenizer.from_file(str(trained_tiny_distilbert_dir / "tokenizer.json"))
    return TextEncoder(tokenizer, EncodingSettings(max_length=64, head_tokens=16))


@pytest.fixture(scope="module")
def test_set(review_factory):
    return review_factory(80, seed=21)


def test_gate_passes_and_reports_all_three_models(trained_tiny_onnx, trained_tiny_distilbert_dir,
                                                  encoder, test_set, tmp_path):
    domains = [("books", "dvd", None)[i % 3] for i in range(len(test_set))]
    result = run_gate(trained_tiny_onnx, tmp_path,
                      LabelledSet(test_set.texts, test_set.labels, domains),
                      label_names=LABELS, encoder=encoder, student_dir=trained_tiny_distilbert_dir,
                      config=GateConfig(threads=1, progress=False))
    assert len(result.attempts) == 1 and result.attempts[0].passed
    metrics = result.metrics()
    # Accuracy per domain for each model, from its own predictions; unnamed rows left out.
    for evaluation in (result.fp32_torch, result.fp32_onnx, result.int8):
        assert evaluation is not None
        per_domain = metrics[evaluation.name]["per_domain"]
        assert list(per_domain) == ["books", "dvd"]
        for name, figures in per_domain.items():
            rows = [i for i, d in enumerate(domains) if d == name]
            hits = sum(evaluation.predictions[i] == test_set.labels[i] for i in rows)
            assert figures == {"accuracy": hits / len(rows), "n": len(rows)}
    assert metrics["n"] == len(test_set)
    for name in ("pytorch_fp32", "onnx_fp32", "onnx_int8"):
        assert metrics[name]["accuracy"] >= 0.95, name
        assert 0.0 <= metrics[name]["macro_f1"] <= 1.0
    assert metrics["pytorch_vs_onnx_fp32_max_logit_diff"] < 1e-3
    assert metrics["int8_vs_fp32"]["agreement"] >= 0.95
    assert 0 < metrics["int8_vs_fp32"]["max_abs_logit_diff"] < 0.5
    # the int8 logits are those of the quantized file, run the Classifier way
    again = onnx_logits(result.quantization.path, encoder, test_set.texts, threads=1)
    np.testing.assert_array_equal(again, result.int8.logits)
    summary = result.gate_summary()
    assert summary["chosen_attempt"] == 0 and summary["attempts"][0]["passed"]


def test_negative_max_drop_fails_with_every_attempt_listed(trained_tiny_onnx, encoder, test_set,
                                                           tmp_path):
    with pytest.raises(GateError) as info:
        run_gate(trained_tiny_onnx, tmp_path,
                 LabelledSet(test_set.texts[:24], test_set.labels[:24]), label_names=LABELS,
                 encoder=encoder, calibration_texts=test_set.texts[24:40],
                 config=GateConfig(max_drop=-1.0, threads=1, progress=False,
                                   max_model_bytes=10**9))
    error = info.value
    assert isinstance(error, EdgesentError)
    plan = attempt_plan(QuantizationSettings(), can_calibrate=True)
    assert len(error.attempts) == len(plan)
    assert [a.settings for a in error.attempts] == plan
    message = str(error)
    assert "within -1.0 points" in message and "in at most 1000.00 MB" in message
    assert all(a.error is None and 0 < a.size_bytes < 10**9 for a in error.attempts)
    for number in range(1, len(plan) + 1):
        assert f"\n  {number}. " in message
    assert len(re.findall(r"drop \d+\.\d\d points", message)) == len(plan)
    assert "mode=static" in message and "target=avx2" in message


def test_attempt_plan_order_and_no_repeats():
    plan = attempt_plan(QuantizationSettings(mode="dynamic", per_channel=False),
                        can_calibrate=False)
    assert plan[0].per_channel is False and plan[0].quantize_embeddings is True
    assert plan[1] == replace(plan[0], quantize_embeddings=False)
    assert plan[2].per_channel is True
    assert all(s.mode == "dynamic" for s in plan)
    assert plan[-1].target == "avx2"
    assert len(set(plan)) == len(plan)
    default = attempt_plan(QuantizationSettings(), can_calibrate=False)
    assert default[0].mode == "per_token" and default[2] == replace(default[0], mode="dynamic")
    static = attempt_plan(QuantizationSettings(mode="static"), can_calibrate=True)
    assert static[0].mode == "static" and static[3] == replace(static[0], mode="dynamic",
                                                                optimized=True)


def test_quantization_settings_round_trip_and_refuse_bad_values():
    settings = QuantizationSettings(target="arm64", per_channel=False)
    assert QuantizationSettings.from_dict({**settings.to_dict(), "size_bytes": 3}) == settings
    with pytest.raises(ValueError, match="target"):
        QuantizationSettings(target="avx9000")
    with pytest.raises(ValueError, match="only available with mode='dynamic'"):
        QuantizationSettings(mode="static", optimized=True)


def test_pytorch_and_onnx_logits_batch_alike_and_skip_blank_texts(
        trained_tiny_onnx, trained_tiny_distilbert_dir, encoder, test_set):
    texts = [*test_set.texts[:40], "\u200b", test_set.texts[0] * 3]
    onnx = onnx_logits(trained_tiny_onnx, encoder, texts, threads=1, batch_size=8)
    torch = torch_logits(trained_tiny_distilbert_dir, encoder, texts, threads=1, batch_size=8)
    assert np.isnan(onnx[40]).all() and np.isnan(torch[40]).all()
    live = [i for i in range(len(texts)) if i != 40]
    np.testing.assert_allclose(torch[live], onnx[live], atol=1e-4)
    with pytest.raises(ValueError, match="row 40: text has no content tokens"):
        evaluate("onnx_fp32", onnx, [0] * len(texts), LABELS)


def test_rejects_bad_rows():
    with pytest.raises(ValueError, match="row 1: text is blank"):
        check_texts(["good", "  "], [0, 1], 2)
    with pytest.raises(ValueError, match="row 0: label 5"):
        check_texts(["good"], [5], 2)
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        check_texts(["a", "b"], [0], 2)


def test_rejects_non_finite_max_drop():
    with pytest.raises(ValueError, match="max_drop"):
        GateConfig(max_drop=float("nan"))
