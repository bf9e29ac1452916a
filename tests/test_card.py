"""``edgesent card`` (edgesent/card.py): a model card written from manifests and run results."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from edgesent.bundle import load_bundle
from edgesent.card import MISSING, card_content, product_accuracy
from edgesent.card_markdown import render_markdown
from edgesent.classifier import default_bundle_path
from edgesent.cli import main

DOMAINS = {"books": {"accuracy": 0.75, "n": 4}, "dvd": {"accuracy": 1.0, "n": 4},
           "imdb": {"accuracy": 0.5, "n": 2}}
TEACHER_RESULT = {  # the shape export/training_run.py writes
    "model_dir": "/elsewhere/runs/mpnet/best",
    "val": {"accuracy": 0.93, "n": 50},
    "test": {"heldout": {"n": 10, "accuracy": 0.9, "macro_f1": 0.89,
                         "per_domain": {"books": {"accuracy": 1.0, "n": 5},
                                        "dvd": {"accuracy": 0.6, "n": 5},
                                        "MR": {"accuracy": 0.0, "n": 3}}}},
    "wall_seconds": 7412.5,
    "train_seconds": 6900.0,
    "config": {"epochs": 0.3, "batch_size": 16},
    "architecture": {"model_type": "mpnet", "num_hidden_layers": 12, "hidden_size": 768,
                     "vocab_size": 30527, "parameters": 109488002},
}


def _metrics(accuracy: float, n: int) -> dict[str, Any]:
    return {"n": n, "accuracy": accuracy, "macro_f1": accuracy - 0.01}


@pytest.fixture(scope="module")
def rich_bundle(make_bundle: Any) -> Path:
    """A tiny bundle whose manifest records what ``edgesent export`` records, with
    per-domain accuracy on its first test set and no calibration."""
    return make_bundle(
        provenance={
            "command": "edgesent build runs/tiny --data .../reviews",
            "created": "2026-01-02T03:04:05+00:00",
            "teacher": {"path": "teacher/best", "architecture": {
                "model_type": "distilbert", "n_layers": 2, "dim": 32, "vocab_size": 400},
                "test": {"heldout": 0.85}},
            "data": {"sources": {"train": [{"path": "train.csv", "where": None,
                                            "sample": None}],
                                 "test": {"heldout": {"path": "test.csv", "where": None,
                                                      "sample": None}}},
                     "rows": {"train": 160, "test:heldout": 10}},
            "licences": {"train.csv": "CC0"},
        },
        metrics={"test": {"n": 10, "onnx_fp32": _metrics(0.9, 10),
                          "onnx_int8": {**_metrics(0.8, 10), "per_domain": DOMAINS},
                          "int8_vs_fp32": {"agreement": 0.9}}})


def _invoke(*args: Any) -> Result:
    return CliRunner().invoke(main, ["card", *map(str, args)], catch_exceptions=True)


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _error_line(result: Result, *needles: str) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output
    assert all(n in lines[-1] for n in needles), result.output
    return lines[-1]


def _row(card: str, first_cell: str) -> list[str]:
    for line in card.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r} in the card")


def _teacher_run(root: Path, result: dict[str, Any] | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "result.json").write_text(json.dumps(result or TEACHER_RESULT), "utf-8")
    return root


def test_the_shipped_bundle_card_carries_its_manifest_figures() -> None:
    bundle = default_bundle_path()
    metrics = load_bundle(bundle).manifest.metrics
    card = _ok(_invoke(bundle)).stdout
    fdu = _row(card, "`fdu_mtl_test`")
    assert fdu[1] == f"{metrics['test']['n']:,}"
    assert fdu[4] == f"{metrics['test']['onnx_int8']['accuracy']:.4f}"  # int8 accuracy
    marc = _row(card, "`marc_en_val`")
    assert marc[2] == f"{metrics['extra_test_sets']['marc_en_val']['onnx_fp32']['accuracy']:.4f}"
    assert f"temperature {metrics['calibration']['temperature']:.4f} fitted on `val`" in card
    teacher = _row(card, "`runs/build-L3/teacher/best`")
    assert teacher[1:3] == ["bert", "6 × 384"]
    assert teacher[3] == MISSING  # the manifest records no parameter count
    assert teacher[4] == "0.9076" and teacher[10] == "0.8960"  # teacher and its int8 student
    assert "edgesent card " in card.splitlines()[2]


def test_the_card_is_deterministic_and_json_carries_the_same_content(tmp_path: Path) -> None:
    bundle = default_bundle_path()
    first, second = _ok(_invoke(bundle)).stdout, _ok(_invoke(bundle)).stdout
    assert first == second
    data = json.loads(_ok(_invoke(bundle, "--json")).stdout)
    assert render_markdown(data) == first.replace(
        f"`edgesent card {bundle}`", f"`edgesent card {bundle} --json`")
    assert data["evaluation"]["sets"][1]["name"] == "marc_en_val"
    assert data["files"][0]["path"].endswith("edgesent.json")


def test_teacher_rows_from_a_run_and_per_domain_tables(rich_bundle: Path, tmp_path: Path
                                                       ) -> None:
    run = _teacher_run(tmp_path / "mpnet")
    card = _ok(_invoke(rich_bundle, "--teacher-run", run)).stdout
    row = _row(card, f"`{run}`")
    assert row[1:4] == ["mpnet", "12 × 768", "109.5M"]
    assert row[4] == "0.9000"  # heldout accuracy
    assert row[5] == f"{(1.0 * 5 + 0.6 * 5) / 10:.4f}"  # product domains: MR left out
    assert row[6] == "6,900 s (1.92 h)" and row[7] == "7,412 s (2.06 h)"
    assert row[8] == MISSING  # no student named
    own = _row(card, "`teacher/best`")
    assert own[1:3] == ["distilbert", "2 × 32"] and own[4] == "0.8500"
    assert own[6] == MISSING  # the manifest records no training time
    assert own[9] == "0.8000"  # the bundle's int8 accuracy
    assert own[10] == f"{(0.75 * 4 + 1.0 * 4) / 8:.4f}"  # its product domains, imdb left out
    assert _row(card, "books")[1:] == ["4", "0.7500"]
    assert "Product domains (all but imdb, MR), pooled: onnx_int8 0.8750." in card
    assert _row(card, "validation NLL")[1:] == [MISSING, MISSING]  # no calibration recorded
    assert _row(card, f"`{run / 'result.json'}`")[2] == f"teacher row {run}"  # its source


def test_a_build_folder_brings_its_student_and_a_named_student_too(
        rich_bundle: Path, tmp_path: Path) -> None:
    build = tmp_path / "build"
    _teacher_run(build / "teacher")
    shutil.copytree(rich_bundle, build / "bundle")
    student = _teacher_run(tmp_path / "student", {"test": {"heldout": _metrics(0.7, 10)}})
    other = _teacher_run(tmp_path / "mpnet-b")
    card = _ok(_invoke(rich_bundle, "--teacher-run", build,
                       "--teacher-run", f"{other}={student}")).stdout
    from_build = _row(card, f"`{build}`")
    assert from_build[8] == "tiny-test (bundle, int8)" and from_build[9] == "0.8000"
    named = _row(card, f"`{tmp_path / 'mpnet-b'}`")
    assert named[8] == "student (PyTorch fp32)" and named[9] == "0.7000"
    _row(card, "`teacher/best`")  # the bundle's own teacher row: the runs taught others


def test_a_run_that_taught_this_bundle_replaces_the_manifest_row(
        rich_bundle: Path, tmp_path: Path) -> None:
    run = _teacher_run(tmp_path / "mpnet")
    card = _ok(_invoke(rich_bundle, "--teacher-run", f"{run}={rich_bundle}")).stdout
    row = _row(card, f"`{run}`")
    assert row[7] == "7,412 s (2.06 h)" and row[9] == "0.8000"  # the record's, the bundle's
    with pytest.raises(AssertionError, match="no table row"):
        _row(card, "`teacher/best`")


def test_figures_a_run_does_not_record_show_as_missing(rich_bundle: Path, tmp_path: Path
                                                       ) -> None:
    run = _teacher_run(tmp_path / "old", {"test": {"heldout": {"accuracy": 0.88, "n": 10}}})
    (run / "best").mkdir()
    (run / "best" / "config.json").write_text(json.dumps(
        {"model_type": "bert", "num_hidden_layers": 6, "hidden_size": 384}), "utf-8")
    row = _row(_ok(_invoke(rich_bundle, "--teacher-run", run)).stdout, f"`{run}`")
    assert row[1:7] == ["bert", "6 × 384", MISSING, "0.8800", MISSING, MISSING]
    header = json.dumps({"a": {"dtype": "F32", "shape": [1000, 300], "data_offsets": [0, 0]},
                         "b": {"dtype": "F32", "shape": [7], "data_offsets": [0, 0]}}).encode()
    (run / "best" / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    row = _row(_ok(_invoke(rich_bundle, "--teacher-run", run)).stdout, f"`{run}`")
    assert row[3] == "300,007"  # counted from the weights file's header
    (run / "best" / "model.safetensors").write_bytes(b"\x05")
    _error_line(_invoke(rich_bundle, "--teacher-run", run), "model.safetensors",
                "not a safetensors file")
    bare = _teacher_run(tmp_path / "bare", {"test": {}})
    row = _row(_ok(_invoke(rich_bundle, "--teacher-run", bare)).stdout, f"`{bare}`")
    assert row[1:5] == [MISSING, f"{MISSING} × {MISSING}", MISSING, MISSING]


def test_bad_paths_give_one_line_errors(rich_bundle: Path, tmp_path: Path) -> None:
    _error_line(_invoke(tmp_path / "nowhere"), "nowhere", "no such directory")
    _error_line(_invoke(rich_bundle, "--teacher-run", tmp_path / "gone"),
                "--teacher-run", "gone", "no such directory")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "result.json").write_text('{"test": {\n  "x": ,}', "utf-8")
    line = _error_line(_invoke(rich_bundle, "--teacher-run", broken), "result.json")
    assert "line 2, column 8" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    _error_line(_invoke(rich_bundle, "--teacher-run", empty), "result.json", "no such file")


def test_output_file_is_replaced_whole_and_a_directory_is_refused(
        rich_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "MODEL_CARD.md"
    out.write_text("old card\n", "utf-8")
    os.chmod(out, 0o640)
    before = out.stat().st_ino
    result = _ok(_invoke(rich_bundle, "-o", out))
    assert "Wrote the model card of tiny-test" in result.stderr
    text = out.read_text("utf-8")
    assert text.startswith("# Model card: `tiny-test`") and f"-o {out}`" in text
    assert out.stat().st_ino != before and (out.stat().st_mode & 0o777) == 0o640
    _error_line(_invoke(rich_bundle, "-o", out, "--teacher-run", tmp_path / "gone"), "gone")
    assert out.read_text("utf-8") == text  # a failed run leaves the old card
    assert [p.name for p in tmp_path.iterdir()] == ["MODEL_CARD.md"]  # no temporary left
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine", "utf-8")
    result = _invoke(rich_bundle, "-o", folder)
    assert result.exit_code == 2 and "is a directory" in result.output
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_content_and_product_accuracy_from_python(rich_bundle: Path) -> None:
    content = card_content(rich_bundle, command="edgesent card x")
    assert content["command"] == "edgesent card x"
    assert content["evaluation"]["domains"][0]["product_domains"] == {"onnx_int8": 0.875}
    assert product_accuracy({f"p{i}": {"accuracy": 1.0, "n": 1} for i in range(41)}) is None


SHIPPED_CARD = Path("MODEL_CARD.md")
SHIPPED_COMMAND = "edgesent card edgesent/models/edgesent-reviews-en -o MODEL_CARD.md"


def test_the_shipped_card_is_what_the_command_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    content = card_content("edgesent/models/edgesent-reviews-en", command=SHIPPED_COMMAND)
    assert render_markdown(content) == SHIPPED_CARD.read_text("utf-8"), (
        f"{SHIPPED_CARD} is out of date; run: {SHIPPED_COMMAND}")


def test_the_command_is_listed_and_loads_nothing_heavy() -> None:
    code = ("import sys; from click.testing import CliRunner; from edgesent.cli import main; "
            "help = CliRunner().invoke(main, ['card', '--help']).stdout; "
            "heavy = {'torch', 'transformers', 'optimum', 'edgesent_export'} & set(sys.modules); "
            "assert not heavy, heavy; "
            "out = CliRunner().invoke(main, ['--help']).stdout; "
            "assert 'card' in out and '--teacher-run' in help, (out, help)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
