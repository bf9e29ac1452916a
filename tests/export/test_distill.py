"""Distilling a teacher into a smaller student (export/distill.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from extras import EXPORT_REASON
from helpers_training import TINY_ENCODING, formatted, load_model, tiny_config, to_reviews

pytest.importorskip("torch", reason=EXPORT_REASON)
pytest.importorskip("transformers", reason=EXPORT_REASON)

import torch
import torch.nn.functional as F

from edgesent.errors import InputError
from edgesent_export.data import Review, format_dataset
from edgesent_export.distill import (
    TEACHER_LOGITS_FILE,
    cached_logits,
    distill,
    distillation_loss,
    early_stop_monitor,
    kl_to_teacher,
    teacher_identity,
    teacher_logits,
)
from edgesent_export.finetune import finetune
from edgesent_export.student import make_student
from edgesent_export.torch_data import predict_logits
from edgesent_export.training_run import encode_reviews, load_tokenizer, make_encoder

LABELS = ["negative", "positive"]


def _encoder(model_dir: Path) -> Any:
    return make_encoder(load_tokenizer(model_dir), TINY_ENCODING)


@pytest.fixture(scope="module")
def teacher_dir(
    tiny_distilbert_dir: Path, review_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A confident two-layer teacher, fine-tuned here on synthetic reviews."""
    out = tmp_path_factory.mktemp("teacher")
    data = formatted(review_factory(240, seed=3))
    config = tiny_config(epochs=6, batch_size=8, learning_rate=5e-3)
    result = finetune(tiny_distilbert_dir, data, out, config=config, encoding=TINY_ENCODING,
                      progress=False)
    assert result.val_metrics["accuracy"] > 0.85 and result.val_metrics["loss"] < 0.05
    return result.model_dir


# ---------------------------------------------------------------------------- the loss


def _kd(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    p = torch.softmax(teacher / t, dim=-1)
    return (p * (p.log() - torch.log_softmax(student / t, dim=-1))).sum(-1).mean() * t * t


def test_loss_of_an_only_unlabelled_batch_is_the_finite_kl_term() -> None:
    student = torch.tensor([[1.0, -1.0], [0.2, 0.3], [-3.0, 4.0]], requires_grad=True)
    teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    batch = {"teacher_logits": teacher, "labels": torch.full((3,), -100)}
    loss = distillation_loss(temperature=2.0, alpha=0.5)(student, batch)
    value = float(loss.detach())
    assert math.isfinite(value)
    assert value == pytest.approx(float(_kd(student, teacher, 2.0).detach()), rel=1e-5)
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert float(student.grad.abs().sum()) > 0

    only_hard = distillation_loss(alpha=0.0)(student, batch)
    assert float(only_hard.detach()) == 0.0
    only_hard.backward()  # nothing to learn from, but no crash


def test_loss_of_a_mixed_batch_combines_kl_and_cross_entropy() -> None:
    student = torch.tensor([[1.0, -1.0], [0.2, 0.3], [-3.0, 4.0]])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, -100, 1])
    loss = distillation_loss(temperature=3.0, alpha=0.25)(
        student, {"teacher_logits": teacher, "labels": labels}
    )
    ce = F.cross_entropy(student[[0, 2]], labels[[0, 2]])
    expected = 0.25 * _kd(student, teacher, 3.0) + 0.75 * ce
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    same = distillation_loss(alpha=1.0)(teacher, {"teacher_logits": teacher, "labels": labels})
    assert float(same) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("temperature", "alpha"), [(0.0, 0.5), (-1.0, 0.5), (2.0, 1.5)])
def test_loss_settings_are_checked(temperature: float, alpha: float) -> None:
    with pytest.raises(ValueError):
        distillation_loss(temperature, alpha)


# ---------------------------------------------------------------------------- the cache


def test_teacher_logits_cache_is_reused_only_for_the_same_texts_teacher_and_source(
    teacher_dir: Path, tiny_distilbert_dir: Path, review_factory: Any, tmp_path: Path
) -> None:
    texts = review_factory(30, seed=21).texts
    cache = tmp_path / TEACHER_LOGITS_FILE
    first = teacher_logits(teacher_dir, texts, TINY_ENCODING, cache=cache, threads=1,
                           progress=False)
    assert cache.exists() and first.shape == (30, 2)
    expected = predict_logits(load_model(teacher_dir), encode_reviews(
        _encoder(teacher_dir), to_reviews(review_factory(30, seed=21)), LABELS),
        _encoder(teacher_dir).pad_id)
    np.testing.assert_allclose(first, expected, atol=1e-5)

    stamp = cache.stat().st_mtime_ns
    again = teacher_logits(teacher_dir, texts, TINY_ENCODING, cache=cache, threads=1,
                           progress=False)
    np.testing.assert_array_equal(again, first)
    assert cache.stat().st_mtime_ns == stamp  # read, not recomputed

    other_texts = teacher_logits(teacher_dir, texts[:-1], TINY_ENCODING, cache=cache,
                                 threads=1, progress=False)
    assert other_texts.shape == (29, 2) and cache.stat().st_mtime_ns != stamp
    other_teacher = teacher_logits(tiny_distilbert_dir, texts[:-1], TINY_ENCODING,
                                   cache=cache, threads=1, progress=False)
    assert not np.allclose(other_teacher, other_texts, atol=1e-3)

    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.zeros((2, 2), np.float32)

    cached_logits(tmp_path / "c.npy", "a", compute)
    cached_logits(tmp_path / "c.npy", "a", compute)
    assert len(calls) == 1
    cached_logits(tmp_path / "c.npy", "b", compute)
    assert len(calls) == 2


def test_teacher_identity_follows_the_weights(teacher_dir: Path, tiny_distilbert_dir: Path) -> None:
    trained = teacher_identity(teacher_dir)
    assert trained == teacher_identity(teacher_dir)
    assert trained != teacher_identity(tiny_distilbert_dir)
    assert teacher_identity("some-org/some-hub-model") == "some-org/some-hub-model"


# ---------------------------------------------------------------------------- distill()


def test_distillation_moves_the_student_towards_the_teacher(
    teacher_dir: Path, tiny_distilbert_dir: Path, review_factory: Any, tmp_path: Path,
) -> None:
    data = formatted(review_factory(100, seed=11), review_factory(30, seed=12))
    unlabelled = [Review(r.text, None, "more") for r in to_reviews(review_factory(120, seed=13))]
    known = {r.text.lower() for r in [*data.train, *data.val, *data.test["test"]]}
    expected_extra = len({r.text.lower() for r in unlabelled} - known)
    unlabelled.append(Review(data.test["test"][0].text.upper(), None, "leak"))  # never used

    encoder = _encoder(teacher_dir)
    held_out = encode_reviews(encoder, to_reviews(review_factory(60, seed=14)), LABELS)
    held_out.teacher_logits = predict_logits(load_model(teacher_dir), held_out, encoder.pad_id)
    before = kl_to_teacher(make_student(teacher_dir, n_layers=1), held_out, encoder.pad_id)

    out = tmp_path / "student"
    config = tiny_config(epochs=3, batch_size=16, learning_rate=2e-3)
    result = distill(teacher_dir, data, out, unlabelled=unlabelled, n_layers=1, config=config,
                     encoding=TINY_ENCODING, temperature=2.0, alpha=0.5, progress=False)
    student = load_model(result.model_dir)
    assert student.config.n_layers == 1
    after = kl_to_teacher(student, held_out, encoder.pad_id)
    assert after < 0.25 * before, (before, after)
    assert result.val_metrics["accuracy"] > 0.85

    record = json.loads((out / "result.json").read_text("utf-8"))
    assert record["distillation"] == {
        "temperature": 2.0, "alpha": 0.5, "labelled": len(data.train),
        "unlabelled": expected_extra, "teacher_logits": "torch", "early_stop": "loss",
        "teacher_max_length": 48,  # as many tokens as the student
        "reused_logits": None,
    }
    assert record["student_init"] == str(teacher_dir)
    assert record["val_teacher"]["agreement"] > 0.85 and record["val_teacher"]["kl"] >= 0
    assert result.val_metrics["teacher_agreement"] == record["val_teacher"]["agreement"]
    assert record["n_layers"] == 1 and record["teacher"] == str(teacher_dir)
    cached = np.load(out / TEACHER_LOGITS_FILE)  # training rows, then validation rows
    assert cached.shape == (len(data.train) + expected_extra + len(data.val), 2)
    for name in ("history.json", "curves.png", "predictions_test.csv"):
        assert (out / name).exists(), name

    # Distilling another teacher into the same directory must not reuse the cached logits.
    partial = distill(tiny_distilbert_dir, data, out, unlabelled=unlabelled, n_layers=1,
                      config=tiny_config(stop_after_steps=1), encoding=TINY_ENCODING,
                      progress=False)
    assert partial.val_metrics == {}
    fresh = np.load(out / TEACHER_LOGITS_FILE)
    first = encode_reviews(encoder, data.train[:1], LABELS)
    random_teacher = predict_logits(load_model(tiny_distilbert_dir), first, encoder.pad_id)
    np.testing.assert_allclose(fresh[:1], random_teacher, atol=1e-5)
    assert not np.allclose(fresh, cached, atol=1e-3)


def test_a_teacher_with_other_labels_is_refused(
    tiny_distilbert_dir: Path, tmp_path: Path
) -> None:
    rows = [Review(f"review {i} {label}", label) for i in range(6)
            for label in ("negative", "neutral", "positive")]
    data = format_dataset([rows], {}, val_fraction=0.3, seed=0)
    with pytest.raises(InputError, match=r"teacher's labels \['negative', 'positive'\]"):
        distill(tiny_distilbert_dir, data, tmp_path, config=tiny_config(), progress=False)


def test_early_stop_monitor_watches_the_teacher() -> None:
    teacher = np.array([[3.0, 0.0], [0.0, 3.0], [2.0, 0.0], [np.nan, np.nan]])
    assert early_stop_monitor("loss", teacher) is None
    by_kl = early_stop_monitor("kl", teacher, temperature=2.0)
    by_agreement = early_stop_monitor("agreement", teacher)
    assert by_kl is not None and by_agreement is not None
    same = by_kl(np.nan_to_num(teacher))
    assert same["monitor"] == pytest.approx(0.0, abs=1e-9)  # the NaN row is left out
    assert same["val_teacher_agreement"] == 1.0
    closer, farther = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0, 0]]), \
        np.array([[0.0, 2.0], [0.0, 2.0], [1.0, 0.0], [0, 0]])
    assert by_kl(closer)["monitor"] < by_kl(farther)["monitor"]
    assert by_agreement(closer)["monitor"] == 0.0
    assert by_agreement(farther)["monitor"] == pytest.approx(1 / 3)
    at_one = early_stop_monitor("kl", teacher, temperature=1.0)
    assert at_one is not None
    assert by_agreement(farther)["val_teacher_kl"] == at_one(farther)["monitor"]
    assert at_one(farther)["monitor"] > by_kl(farther)["monitor"]  # T=2 softens both
    with pytest.raises(ValueError, match="early stopping on 'f1'"):
        early_stop_monitor("f1", teacher)
