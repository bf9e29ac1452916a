"""A teacher's record (export/teacher_record.py): distilling from a teacher's cached logits
once its weights are gone, and refusing what the logits do not cover."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
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
from edgesent_export.build_checks import check_distill
from edgesent_export.data import Review
from edgesent_export.distill import (
    TEACHER_LOGITS_FILE,
    DistillSettings,
    distill,
    distillation_texts,
    teacher_logits,
)
from edgesent_export.finetune import finetune
from edgesent_export.teacher_record import (
    RECORD_FILE,
    has_weights,
    is_record,
    teacher_identity,
    write_record,
)
from edgesent_export.training_run import load_tokenizer, make_encoder


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


SHORTER = replace(TINY_ENCODING, max_length=24)  # cuts some of the fixture's texts
LONGER = TINY_ENCODING


@pytest.fixture(scope="module")
def short_record(distilled: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A record of the fixture's teacher whose logits read :data:`SHORTER`."""
    root = tmp_path_factory.mktemp("short")
    student = distill(distilled["teacher"].model_dir, distilled["data"], root / "student",
                      unlabelled=distilled["unlabelled"], n_layers=1,
                      config=tiny_config(stop_after_steps=1), encoding=SHORTER,
                      progress=False)
    return write_record(distilled["teacher"].model_dir.parent,
                        student.out_dir / TEACHER_LOGITS_FILE, root / "record")


def test_a_longer_reading_reads_again_only_the_texts_the_record_cut(
        distilled: dict[str, Any], short_record: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import edgesent_export.logits as logits_module

    best = short_record
    teacher = distilled["teacher"].model_dir
    _, texts = distillation_texts(distilled["data"], distilled["unlabelled"])
    whole = teacher_logits(teacher, texts, LONGER, progress=False)
    read: list[int] = []
    real = logits_module.torch_logits

    def counted(model: Any, encoder: Any, part: Any, **kwargs: Any) -> Any:
        read.append(len(part))
        return real(model, encoder, part, **kwargs)

    monkeypatch.setattr(logits_module, "torch_logits", counted)
    cache = tmp_path / "longer" / TEACHER_LOGITS_FILE
    cache.parent.mkdir()
    reused = teacher_logits(teacher, texts, LONGER, cache=cache, progress=False, reuse=best)
    np.testing.assert_allclose(reused, whole, atol=1e-5)  # the same, read in other batches
    stamp = json.loads(cache.with_suffix(".json").read_text())
    cut = stamp["reused"]["read_again"]
    assert 0 < cut < len(texts) and read == [cut]
    lengths = [len(ids) for ids in make_encoder(load_tokenizer(teacher), LONGER).token_ids(texts)]
    assert cut == sum(n > SHORTER.max_length for n in lengths)
    assert stamp["encoding"] == asdict(LONGER)


def test_reused_logits_must_be_this_teachers_over_these_texts_read_shorter(
        distilled: dict[str, Any], short_record: Path, tiny_distilbert_dir: Path,
        tmp_path: Path) -> None:
    best = short_record
    teacher = distilled["teacher"].model_dir
    _, texts = distillation_texts(distilled["data"], distilled["unlabelled"])

    def reuse(model: Path, encoding: Any = LONGER, these: Any = texts) -> Any:
        return teacher_logits(model, these, encoding, progress=False, reuse=best)

    with pytest.raises(InputError, match="another teacher"):
        reuse(tiny_distilbert_dir)
    with pytest.raises(InputError, match="differs in length alone"):
        reuse(teacher, replace(LONGER, head_tokens=8))
    with pytest.raises(InputError, match="differs in length alone"):
        reuse(teacher, SHORTER)
    with pytest.raises(InputError, match="other texts"):
        reuse(teacher, LONGER, [*texts[1:], texts[0]])
    settings = DistillSettings(reuse_logits=tmp_path)
    with pytest.raises(InputError, match="not a teacher record"):
        check_distill(teacher, settings, LONGER.max_length)
    with pytest.raises(InputError, match="a record too"):
        check_distill(best, DistillSettings(reuse_logits=best), LONGER.max_length)
    check_distill(teacher, DistillSettings(reuse_logits=best), LONGER.max_length)


def test_distilling_longer_records_the_record_it_reused(
        distilled: dict[str, Any], short_record: Path, tmp_path: Path) -> None:
    best = short_record
    out = tmp_path / "student"
    result = distill(distilled["teacher"].model_dir, distilled["data"], out,
                     unlabelled=distilled["unlabelled"], n_layers=1,
                     config=tiny_config(epochs=1), encoding=LONGER,
                     reuse_logits=best, progress=False)
    assert result.finished
    recorded = json.loads((out / "result.json").read_text())["distillation"]
    assert recorded["reused_logits"] == str(best)
    assert recorded["teacher_max_length"] == LONGER.max_length
    assert json.loads((out / f"{Path(TEACHER_LOGITS_FILE).stem}.json").read_text()
                      )["reused"]["record"] == str(best)
