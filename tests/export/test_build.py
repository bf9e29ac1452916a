"""``edgesent build`` end to end on a tiny BERT teacher, and its rerun skipping every stage."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers_training import one_line_error, write_csv

from edgesent import Classifier, load_bundle
from edgesent.cli import main

FAST = ["--max-length", "48", "--head-tokens", "16", "--precision", "fp32", "--threads", "1",
        "--quiet", "--seed", "0", "--batch-size", "16"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path,
          review_factory: Any) -> tuple[Path, list[str], Any]:
    root = tmp_path_factory.mktemp("build")
    train, test = review_factory(240, seed=41), review_factory(60, seed=42)
    write_csv(root / "train.csv", train.rows(), ["text", "label"])
    write_csv(root / "test.csv", test.rows(), ["text", "label"])
    write_csv(root / "more.csv", [{"text": t} for t in review_factory(60, seed=43).texts],
              ["text"])
    args = [
        "build", str(root / "out"), "--model", str(tiny_bert_dir),
        "--train", str(root / "train.csv"), "--test", f"synthetic={root / 'test.csv'}",
        "--unlabelled", str(root / "more.csv"), "--epochs", "4", "--lr", "3e-3",
        "--student-epochs", "3", "--student-lr", "3e-3", "--student-layers", "2",
        "--vocab-min-count", "1", "--max-drop", "5", *FAST,
    ]
    with pytest.MonkeyPatch.context() as patch:  # the command line the manifest records
        patch.setattr(sys, "argv", ["edgesent", *args])
        first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    return root / "out", args, test


def test_build_writes_a_bundle_the_run_half_loads(built, tiny_bert_dir: Path) -> None:
    out, _, test = built
    bundle = load_bundle(out / "bundle")
    assert bundle.labels == ["negative", "positive"]
    provenance = bundle.manifest["provenance"]
    assert provenance["student"]["layers"] == 2
    assert provenance["test_set"] == "synthetic"
    assert provenance["vocabulary"]["min_count"] == 1
    metrics = bundle.manifest["metrics"]["test"]
    assert {"pytorch_fp32", "onnx_fp32", "onnx_int8", "int8_vs_fp32"} <= set(metrics)
    summary = json.loads((out / "build_summary.json").read_text())
    assert set(summary["stage_seconds"]) == {"teacher", "student", "vocabulary", "package"}
    # the bundle answers as the gate measured it on the same test rows
    assert metrics["n"] == len(test.texts)
    predictions = Classifier.load(out / "bundle", threads=1).predict(test.texts)
    hits = [p.label == test.label_names[y] for p, y in zip(predictions, test.labels, strict=True)]
    assert sum(hits) / len(hits) == pytest.approx(metrics["onnx_int8"]["accuracy"])


def test_provenance_holds_no_build_machine_path(built, tiny_bert_dir: Path) -> None:
    out, _, _ = built
    provenance = load_bundle(out / "bundle").manifest["provenance"]
    assert provenance["base_model"] == tiny_bert_dir.name  # a local folder: its name only
    config = provenance["base_model_config"]
    assert config["model_type"] == "bert" and len(config["config_sha256"]) == 64
    assert provenance["teacher"]["path"] == "teacher/best"
    words = shlex.split(provenance["command"])
    assert words[:3] == ["edgesent", "build", f".../{out.name}"]
    assert "synthetic=.../test.csv" in words and f".../{tiny_bert_dir.name}" in words
    assert not any(w.startswith("/") for w in words), provenance["command"]
    assert str(out.parent) not in json.dumps(provenance)


def test_rerun_skips_every_finished_stage(built) -> None:
    out, args, _ = built
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()
              and p.suffix in {".safetensors", ".onnx", ".npy"}}
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    summary = json.loads((out / "build_summary.json").read_text())
    assert summary["stage_seconds"] == {}, "a finished stage ran again"
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before


def test_rerun_with_other_bundle_settings_refuses_then_redoes(built, tmp_path: Path) -> None:
    out, args, _ = built
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    args = [args[0], str(copy), *args[2:]]
    other_vocab = CliRunner().invoke(main, [*args, "--vocab-min-count", "2"])
    one_line_error(other_vocab, "vocabulary min count 1", "move it away")
    other_lengths = CliRunner().invoke(main, [*args, "--bundle-max-length", "32"])
    one_line_error(other_lengths, "reading lengths [48]", "[32, 48]")
    assert load_bundle(copy / "bundle").manifest == load_bundle(out / "bundle").manifest

    (copy / "bundle").rename(tmp_path / "bundle-48")
    again = CliRunner().invoke(main, [*args, "--bundle-max-length", "32"])
    assert again.exit_code == 0, again.output
    manifest = load_bundle(copy / "bundle").manifest
    choice = manifest["metrics"]["max_length"]
    assert set(choice["fp32_accuracy"]) == {"32", "48"} and choice["trained_at"] == 48
    assert manifest["encoding"]["max_length"] == choice["chosen"]
    assert manifest["provenance"]["encoding"]["max_length"] == 48  # what training read
    summary = json.loads((copy / "build_summary.json").read_text())
    assert set(summary["stage_seconds"]) == {"package"}


def test_a_build_in_stages_through_a_teacher_record(
        tmp_path: Path, tiny_bert_dir: Path, review_factory: Any) -> None:
    """Session one: teacher and its logits (--stop-after logits), kept as a record.
    Session two, without the teacher's weights: the student and the bundle from it."""
    import numpy as np

    write_csv(tmp_path / "train.csv", review_factory(120, seed=44).rows(), ["text", "label"])
    write_csv(tmp_path / "test.csv", review_factory(30, seed=45).rows(), ["text", "label"])
    data = ["--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
            *FAST]
    first = CliRunner().invoke(main, ["build", str(tmp_path / "a"), "--model", str(tiny_bert_dir),
                                      "--epochs", "1", "--stop-after", "logits", *data])
    assert first.exit_code == 0, first.output
    assert "stopped after the logits stage" in first.output
    summary = json.loads((tmp_path / "a" / "build_summary.json").read_text())
    assert summary["stopped_after"] == "logits" and set(summary["stage_seconds"]) == {
        "teacher", "logits"}
    logits = tmp_path / "a" / "student" / "teacher_logits.npy"
    assert logits.is_file() and not (tmp_path / "a" / "student" / "result.json").exists()
    assert not (tmp_path / "a" / "bundle").exists()

    kept = CliRunner().invoke(main, ["record-teacher", str(tmp_path / "a" / "teacher"),
                                     str(logits), str(tmp_path / "record")])
    assert kept.exit_code == 0, kept.output
    record = tmp_path / "record" / "best"
    args = ["build", str(tmp_path / "b"), "--teacher", str(record), "--student-init",
            str(tiny_bert_dir), "--student-layers", "1", "--student-epochs", "1", *data]
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "student" / "teacher_logits.npy"),
                                  np.load(logits))
    teacher = load_bundle(tmp_path / "b" / "bundle").manifest["provenance"]["teacher"]
    first_result = json.loads((tmp_path / "a" / "teacher" / "result.json").read_text())
    assert teacher["test"]["test"]["accuracy"] == first_result["test"]["test"]["accuracy"]
    assert teacher["trained_on"]["device"] == "cpu"
    assert teacher["train_seconds"] == first_result["train_seconds"] > 0
    assert teacher["path"] == "record/best"  # the record's name, no build-machine path

    shorter = CliRunner().invoke(main, ["build", str(tmp_path / "c"), *args[2:],
                                        "--max-length", "40"])  # other logits: refused
    one_line_error(shorter, "other texts or settings", "no weights")
    # a student reading more than the record's teacher did: the same logits serve it
    longer = CliRunner().invoke(main, ["build", str(tmp_path / "d"), *args[2:],
                                       "--max-length", "64", "--teacher-max-length", "48"])
    assert longer.exit_code == 0, longer.output
    np.testing.assert_array_equal(np.load(tmp_path / "d" / "student" / "teacher_logits.npy"),
                                  np.load(logits))
    result = json.loads((tmp_path / "d" / "student" / "result.json").read_text())
    assert result["encoding"]["max_length"] == 64
    assert result["distillation"]["teacher_max_length"] == 48
    assert load_bundle(tmp_path / "d" / "bundle").encoding.max_length == 64
