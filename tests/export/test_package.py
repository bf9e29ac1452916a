"""package_model end to end on the tiny trained student: the bundle loads with
edgesent.Classifier and reproduces the gate's int8 predictions exactly."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from extras import EXPORT_REASON

pytest.importorskip("torch", reason=EXPORT_REASON)
pytest.importorskip("optimum.onnxruntime", reason=EXPORT_REASON)

from edgesent import Classifier, load_bundle
from edgesent.tokenization import EncodingSettings
from edgesent_export.gate import GateConfig, GateError, LabelledSet
from edgesent_export.logits import onnx_logits
from edgesent_export.onnx_export import export_onnx
from edgesent_export.package import (
    PackageError,
    PackageInputs,
    _check_reproduces,
    choose_max_length,
    label_indices,
    package_model,
)

LABELS = ["negative", "positive"]
ENCODING = EncodingSettings(max_length=64, truncation="head_tail", head_tokens=16)
QUIET = GateConfig(threads=1, progress=False)


def _inputs(student_dir, test, val, **more):
    return PackageInputs(student_dir, more.pop("labels", LABELS), ENCODING,
                         test=LabelledSet(*test), val=LabelledSet(*val), **more)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory, trained_tiny_distilbert_dir, review_factory):
    test, val, extra = review_factory(80, 31), review_factory(60, 32), review_factory(40, 33)
    work = tmp_path_factory.mktemp("package-work")
    inputs = _inputs(
        trained_tiny_distilbert_dir, (test.texts, test.labels),
        (val.texts, [LABELS[y] for y in val.labels]),
        extra_test_sets={"shifted": LabelledSet(extra.texts, extra.labels)},
        provenance={"base_model": "tiny-random", "command": "pytest"}, name="tiny-reviews",
        max_lengths=(16, 64),
    )
    result = package_model(inputs, work / "bundle", QUIET, work_dir=work / "work")
    return result, test, work


def test_bundle_reproduces_gate_int8_logits(packaged):
    result, test, _ = packaged
    classifier = Classifier.load(result.path, threads=1)
    logits = classifier.predict_logits(test.texts)
    np.testing.assert_array_equal(logits, result.test_logits)
    predictions = logits.argmax(1)
    accuracy = float((predictions == np.asarray(test.labels)).mean())
    assert accuracy == pytest.approx(result.metrics["test"]["onnx_int8"]["accuracy"])
    assert [p.label for p in classifier.predict(test.texts[:4])] == [
        LABELS[i] for i in predictions[:4]]


def test_manifest_carries_metrics_and_settings(packaged):
    result, test, _ = packaged
    bundle = load_bundle(result.path)
    manifest = bundle.manifest
    chosen = manifest["metrics"]["max_length"]["chosen"]
    assert bundle.labels == LABELS and bundle.encoding == replace(ENCODING, max_length=chosen)
    assert bundle.temperature == pytest.approx(result.temperature)
    assert manifest["model"]["precision"] == "int8"
    quantization = manifest["model"]["quantization"]
    assert quantization["target"] == "avx512_vnni" and quantization["mode"] == "per_token"
    assert quantization["onnxruntime_version"]
    assert manifest["provenance"]["base_model"] == "tiny-random"
    metrics = manifest["metrics"]
    assert metrics == json.loads(json.dumps(result.metrics))
    test_metrics = metrics["test"]
    assert test_metrics["n"] == len(test)
    for name in ("pytorch_fp32", "onnx_fp32", "onnx_int8"):
        assert test_metrics[name]["accuracy"] >= 0.95
        assert set(test_metrics[name]["per_class"]) == set(LABELS)
    assert test_metrics["int8_vs_fp32"]["agreement"] >= 0.95
    assert {"int8_ece_before", "int8_ece_after"} <= set(test_metrics)
    calibration = metrics["calibration"]
    assert calibration["set"] == "val" and calibration["nll_after"] <= calibration["nll_before"]
    assert metrics["extra_test_sets"]["shifted"]["n"] == 40
    assert metrics["gate"]["chosen_attempt"] == 0
    sizes = metrics["sizes"]
    assert sizes["onnx_int8_bytes"] < sizes["onnx_fp32_bytes"]
    assert result.size_bytes == bundle.size_bytes


def test_reproduction_check_catches_a_different_model(packaged):
    result, test, _ = packaged
    tampered = result.test_logits.copy()
    tampered[3] += 1e-3
    with pytest.raises(PackageError, match="differs from the gate"):
        _check_reproduces(result.path, test.texts, tampered, QUIET)


def test_impossible_gate_writes_no_bundle(tmp_path, trained_tiny_distilbert_dir, review_factory):
    data = review_factory(20, 41)
    with pytest.raises(GateError, match="accuracy gate failed"):
        package_model(_inputs(trained_tiny_distilbert_dir, (data.texts, data.labels),
                              (data.texts[:8], data.labels[:8])), tmp_path / "bundle",
                      GateConfig(max_drop=-1.0, threads=1, progress=False))
    assert not (tmp_path / "bundle").exists()


def test_label_errors_name_the_row(tmp_path, trained_tiny_distilbert_dir):
    assert label_indices(["positive", 0], LABELS, "test") == [1, 0]
    with pytest.raises(ValueError, match="test row 1: unknown label 'meh'"):
        label_indices(["positive", "meh"], LABELS, "test")
    with pytest.raises(ValueError, match="id2label order"):
        package_model(_inputs(trained_tiny_distilbert_dir, (["a"], [0]), (["a"], [0]),
                              labels=LABELS[::-1]), tmp_path / "b", QUIET)


def _val_accuracy(onnx_path, tokenizer, length, val):
    from edgesent.tokenization import TextEncoder

    encoder = TextEncoder(tokenizer, replace(ENCODING, max_length=length))
    logits = onnx_logits(onnx_path, encoder, val.texts, threads=1)
    return float((logits.argmax(1) == np.asarray(val.labels)).mean())


def test_the_reading_length_is_chosen_on_validation(tmp_path, trained_tiny_distilbert_dir,
                                                    review_factory):
    from tokenizers import Tokenizer

    onnx_path = export_onnx(trained_tiny_distilbert_dir, tmp_path / "onnx", validate=False)
    tokenizer = Tokenizer.from_file(str(trained_tiny_distilbert_dir / "tokenizer.json"))
    reviews = review_factory(60, 34)
    # long reviews: words past the first few tokens decide some labels
    val = LabelledSet([" ".join([text] * 4) for text in reviews.texts], reviews.labels)
    encoding, report = choose_max_length(onnx_path, tokenizer, replace(ENCODING, max_length=16),
                                         [32, 16, 64], val, LABELS, threads=1)
    accuracy = {n: _val_accuracy(onnx_path, tokenizer, n, val) for n in (16, 32, 64)}
    best = max(accuracy.values())
    assert encoding.max_length == min(n for n, a in accuracy.items() if a == best)
    assert report["chosen"] == encoding.max_length and report["trained_at"] == 16
    assert report["fp32_accuracy"] == {str(n): round(a, 4) for n, a in accuracy.items()}
    assert encoding.head_tokens == ENCODING.head_tokens

    short = LabelledSet(["good"] * 4 + ["bad"] * 4, [1] * 4 + [0] * 4)
    tie, _ = choose_max_length(onnx_path, tokenizer, ENCODING, [32, 24], short, LABELS,
                               threads=1)
    assert tie.max_length == 24  # every length reads the same tokens: the shortest wins
    same, empty = choose_max_length(onnx_path, tokenizer, ENCODING, [], val, LABELS)
    assert same == ENCODING and empty == {}


def test_a_reading_length_past_the_positions_is_refused(tmp_path, trained_tiny_distilbert_dir,
                                                        review_factory):
    data = review_factory(20, 42)
    with pytest.raises(ValueError, match="reads at most 128 tokens; max length 256"):
        package_model(_inputs(trained_tiny_distilbert_dir, (data.texts, data.labels),
                              (data.texts, data.labels), max_lengths=(256,)),
                      tmp_path / "bundle", QUIET)
    assert not (tmp_path / "bundle").exists()
