"""A teacher's record (export/teacher_record.py): distilling from a teacher's cached logits
once its weights are gone, and refusing what the logits do not cover."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from extras import EXPORT_REASON
from helpers_training import TINY_ENCODING, formatted, one_line_error, tiny_config, to_reviews

pytest.importorskip("torch", reason=EXPORT_REASON)
pytest.importorskip("transformers", reason=EXPORT_REASON)

from click.testing import CliRunner

from edgesent.cli import main
from edgesent.errors import InputError
from edgesent_export.data import Review
from edgesent_export.distill import TEACHER_LOGITS_FILE, distill
from edgesent_export.finetune import finetune
from edgesent_export.teacher_record import (
    RECORD_FILE,
    has_weights,
    is_record,
    teacher_identity,
    write_record,
)


@pytest.fixture(scope="module")
def distilled(tiny_distilbert_dir: Path, review_factory: Any,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fine-tuned tiny teacher and one short distillation from it (its logits cached)."""
    root = tmp_path_factory.mktemp("record")
    data = formatted(review_factory(80, seed=5), review_factory(20, seed=6))
    unlabelled = [Review(r.text, None, "more") for r in to_reviews(review_factory(40, seed=7))]
    teacher = finetune(tiny_distilbert_dir, data, root / "teacher", encoding=TINY_ENCODING,
                       config=tiny_config(epochs=2, batch_size=16), progress=False)
    student = distill(teacher.model_dir, data, root / "student", unlabelled=unlabelled,
                      n_layers=1, config=tiny_config(stop_after_steps=1),
                      encoding=TINY_ENCODING, progress=False)
    return {"root": root, "data": data, "unlabelled": unlabelled, "teacher": teacher,
            "logits": student.out_dir / TEACHER_LOGITS_FILE}


def test_a_record_keeps_the_logits_config_and_reports_but_no_weights(
        distilled: dict[str, Any]) -> None:
    teacher_best = distilled["teacher"].model_dir
    best = write_record(teacher_best.parent, distilled["logits"],
                        distilled["root"] / "rec1", made_with="edgesent build ...")
    assert is_record(best) and not has_weights(best) and not is_record(teacher_best)
    assert (best.parent / "result.json").is_file() and (best / "config.json").is_file()
    record = json.loads((best / RECORD_FILE).read_text())
    assert record["teacher"] == teacher_identity(teacher_best) == teacher_identity(best)
    assert record["made_with"] == "edgesent build ..." and record["source"] == "torch"
    kept = np.load(best / TEACHER_LOGITS_FILE)
    np.testing.assert_array_equal(kept, np.load(distilled["logits"]))
    assert record["texts"] == len(kept)
    assert sorted(p.name for p in best.iterdir()) == sorted(
        ["config.json", RECORD_FILE, TEACHER_LOGITS_FILE])


def test_distilling_from_a_record_reads_its_logits(distilled: dict[str, Any]) -> None:
    best = write_record(distilled["teacher"].model_dir.parent, distilled["logits"],
                        distilled["root"] / "rec2")
    out = distilled["root"] / "from-record"
    result = distill(best, distilled["data"], out, unlabelled=distilled["unlabelled"],
                     n_layers=1, student_init=distilled["teacher"].model_dir,
                     config=tiny_config(epochs=1), encoding=TINY_ENCODING, progress=False)
    assert result.finished
    np.testing.assert_array_equal(np.load(out / TEACHER_LOGITS_FILE),
                                  np.load(distilled["logits"]))
    assert json.loads((out / "result.json").read_text())["teacher"] == str(best)


def test_a_record_refuses_texts_and_settings_it_has_no_logits_for(
        distilled: dict[str, Any], review_factory: Any) -> None:
    best = write_record(distilled["teacher"].model_dir.parent, distilled["logits"],
                        distilled["root"] / "rec3", made_with="the tiny fixture")
    init = distilled["teacher"].model_dir
    other = formatted(review_factory(80, seed=9))
    with pytest.raises(InputError, match=r"other texts or settings.*the tiny fixture"):
        distill(best, other, distilled["root"] / "s1", n_layers=1, student_init=init,
                config=tiny_config(stop_after_steps=1), encoding=TINY_ENCODING,
                progress=False)
    with pytest.raises(InputError, match="no weights to compute"):  # same texts, other source
        distill(best, distilled["data"], distilled["root"] / "s2",
                unlabelled=distilled["unlabelled"], n_layers=1, student_init=init,
                logits_from="onnx-int8", config=tiny_config(stop_after_steps=1),
                encoding=TINY_ENCODING, progress=False)


def test_write_record_refuses_what_it_cannot_keep_and_destroys_nothing(
        distilled: dict[str, Any], tiny_distilbert_dir: Path, tmp_path: Path) -> None:
    run, logits = distilled["teacher"].model_dir.parent, distilled["logits"]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists"):
        write_record(run, logits, tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(InputError, match="no teacher weights"):
        write_record(tmp_path, logits, tmp_path / "r")
    foreign = tmp_path / "foreign" / "best"
    foreign.mkdir(parents=True)
    for path in tiny_distilbert_dir.iterdir():
        (foreign / path.name).write_bytes(path.read_bytes())
    with pytest.raises(InputError, match="another teacher"):
        write_record(foreign.parent, logits, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_record_teacher_command(distilled: dict[str, Any], tmp_path: Path) -> None:
    run, logits = distilled["teacher"].model_dir.parent, distilled["logits"]
    runner = CliRunner()
    ok = runner.invoke(main, ["record-teacher", str(run), str(logits), str(tmp_path / "rec")])
    assert ok.exit_code == 0, ok.output
    assert f"--teacher {tmp_path / 'rec' / 'best'}" in ok.output
    again = runner.invoke(main, ["record-teacher", str(run), str(logits), str(tmp_path / "rec")])
    one_line_error(again, "already exists")
