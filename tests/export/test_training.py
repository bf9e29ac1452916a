"""The training loop (export/training.py) on a tiny randomly initialised DistilBERT."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from extras import EXPORT_REASON
from helpers_training import TINY_ENCODING, formatted, load_model, tiny_config

pytest.importorskip("torch", reason=EXPORT_REASON)
pytest.importorskip("transformers", reason=EXPORT_REASON)

import torch

from edgesent_export.torch_data import (
    evaluate_logits,
    is_out_of_memory,
    length_grouped_batches,
    predict_logits,
    select_device_and_precision,
)
from edgesent_export.training import STATE_FILE, Trainer, _LinearWarmupDecay, cross_entropy_loss
from edgesent_export.training_run import (
    best_saver,
    encode_reviews,
    load_tokenizer,
    make_encoder,
)

LABELS = ["negative", "positive"]
NO_DROPOUT = {"dropout": 0.0, "attention_dropout": 0.0, "seq_classif_dropout": 0.0}


@pytest.fixture(scope="module")
def encoded(tiny_distilbert_dir: Path, review_factory: Any) -> SimpleNamespace:
    """120 training and 40 validation reviews, encoded with the tiny tokenizer."""
    tokenizer = load_tokenizer(tiny_distilbert_dir)
    encoder = make_encoder(tokenizer, TINY_ENCODING)
    data = formatted(review_factory(160, seed=5), val_fraction=0.25, seed=1)
    return SimpleNamespace(
        tokenizer=tokenizer,
        encoder=encoder,
        train=encode_reviews(encoder, data.train, LABELS),
        val=encode_reviews(encoder, data.val, LABELS),
    )


def _trainer(model: Any, enc: SimpleNamespace, out: Path, config: Any) -> Trainer:
    return Trainer(
        model, enc.train, enc.val, config, out,
        loss_fn=cross_entropy_loss(), pad_id=enc.encoder.pad_id, label_names=LABELS,
        save_best=best_saver(enc.tokenizer), progress=False,
    )


def _weights(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# ---------------------------------------------------------------------------- pieces


def test_length_grouped_batches_cover_every_example_once() -> None:
    lengths = list(np.random.default_rng(0).integers(3, 60, size=103))
    batches = length_grouped_batches(lengths, 8, seed=4, epoch=0)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(103))
    assert sorted(len(b) for b in batches) == [7] + [8] * 12
    again = length_grouped_batches(lengths, 8, seed=4, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    next_epoch = length_grouped_batches(lengths, 8, seed=4, epoch=1)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, next_epoch, strict=True))
    # similar lengths share a batch: ranges of batch lengths do not overlap
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert all(spans[k][1] <= spans[k + 1][0] for k in range(len(spans) - 1))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU choices")
def test_precision_choices_on_the_cpu() -> None:
    assert select_device_and_precision("fp32") == (torch.device("cpu"), None)
    assert select_device_and_precision("bf16")[1] == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 training needs a CUDA GPU"):
        select_device_and_precision("fp16")


def test_cross_entropy_loss_with_weights_and_unlabelled_rows() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, -100])
    log_p = torch.log_softmax(logits, dim=-1)
    plain = cross_entropy_loss()(logits, {"labels": labels})
    assert float(plain) == pytest.approx(float(-(log_p[0, 0] + log_p[1, 1]) / 2))
    weighted = cross_entropy_loss([3.0, 1.0])(logits, {"labels": labels})
    assert float(weighted) == pytest.approx(float(-(3 * log_p[0, 0] + log_p[1, 1]) / 4))


def test_evaluate_logits_loss_and_accuracy() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]], dtype=np.float32)
    labels = np.array([0, 1, 1])
    result = evaluate_logits(logits, labels, LABELS)
    log_p = torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()
    assert result["loss"] == pytest.approx(-np.mean(log_p[[0, 1, 2], labels]), rel=1e-5)
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["confusion_matrix"] == [[1, 0], [1, 1]]


def test_warmup_then_linear_decay() -> None:
    schedule = _LinearWarmupDecay(warmup=2, total=10)
    assert [round(schedule(s), 3) for s in range(11)] == [
        0.333, 0.667, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0,
    ]


def test_is_out_of_memory() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


# ---------------------------------------------------------------------------- runs


def test_resume_after_a_kill_matches_an_uninterrupted_run(
    tiny_distilbert_dir: Path, encoded: SimpleNamespace, tmp_path: Path
) -> None:
    config = tiny_config(epochs=4, batch_size=8, eval_every=10, warmup_ratio=0.1)
    whole = _trainer(load_model(tiny_distilbert_dir), encoded, tmp_path / "whole", config)
    whole_state = whole.train()
    assert whole_state.finished and whole_state.global_step == 60
    assert [h["step"] for h in whole_state.history] == [10, 20, 30, 40, 50, 60]
    whole_logits = predict_logits(whole.model, encoded.val, encoded.encoder.pad_id)

    out = tmp_path / "killed"
    killed_config = tiny_config(**{**vars(config), "stop_after_steps": 23})
    first = _trainer(load_model(tiny_distilbert_dir), encoded, out, killed_config)
    first_state = first.train()
    assert not first_state.finished and first_state.global_step == 23
    saved = json.loads((out / "checkpoint" / STATE_FILE).read_text("utf-8"))
    assert (saved["global_step"], saved["epoch"], saved["batch_in_epoch"]) == (23, 1, 8)
    # a crash between the two renames of a checkpoint save leaves this behind
    (out / "checkpoint.old").mkdir()
    (out / "checkpoint.old" / "model.safetensors").write_bytes(b"stale")

    torch.manual_seed(12345)  # whatever the process did before must not matter
    resumed = _trainer(load_model(tiny_distilbert_dir), encoded, out, config)
    state = resumed.train(resume=True)
    assert state.finished and state.global_step == 60
    assert not (out / "checkpoint.old").exists()

    assert _max_difference(_weights(resumed.model), _weights(whole.model)) < 1e-6
    logits = predict_logits(resumed.model, encoded.val, encoded.encoder.pad_id)
    np.testing.assert_allclose(logits, whole_logits, atol=1e-5, rtol=0)
    assert state.best_step == whole_state.best_step
    assert state.best_val_loss == pytest.approx(whole_state.best_val_loss, abs=1e-6)
    for ours, theirs in zip(state.history, whole_state.history, strict=True):
        assert ours["step"] == theirs["step"]
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], abs=1e-6)
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-6)
        assert ours["lr"] == pytest.approx(theirs["lr"])

    # resuming a finished run does nothing
    again = _trainer(load_model(tiny_distilbert_dir), encoded, out, config)
    assert again.train(resume=True).global_step == 60


def test_early_stopping_keeps_the_best_checkpoint(
    tiny_distilbert_dir: Path, encoded: SimpleNamespace, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A far too high learning rate: validation loss improves at first, then goes wild.
    config = tiny_config(epochs=4, eval_every=1, patience=1, learning_rate=0.05)
    trainer = _trainer(load_model(tiny_distilbert_dir), encoded, tmp_path, config)
    with caplog.at_level(logging.INFO, logger="edgesent_export.training"):
        state = trainer.train()
    assert state.stopped_early and state.finished
    assert state.global_step < trainer.total_steps
    assert state.bad_evals == 1
    assert "early stopping" in caplog.text
    losses = [h["val_loss"] for h in state.history]
    assert len(losses) == state.global_step
    assert state.best_val_loss == pytest.approx(min(losses))
    assert state.best_step == state.history[int(np.argmin(losses))]["step"] < state.global_step
    assert losses[-1] > state.best_val_loss

    best = load_model(tmp_path / "best")
    best_logits = predict_logits(best, encoded.val, encoded.encoder.pad_id)
    best_loss = evaluate_logits(best_logits, encoded.val.labels, LABELS)["loss"]
    assert best_loss == pytest.approx(state.best_val_loss, abs=1e-5)
    assert (tmp_path / "best" / "tokenizer.json").exists()
    saved = json.loads((tmp_path / "checkpoint" / STATE_FILE).read_text("utf-8"))
    assert saved["stopped_early"] is True


def test_a_monitor_replaces_validation_loss_for_best_weights_and_patience(
    tiny_distilbert_dir: Path, encoded: SimpleNamespace, tmp_path: Path
) -> None:
    scores = iter([0.5, 0.4, 0.6, 0.7, 0.1])
    seen: list[int] = []

    def monitor(logits: np.ndarray) -> dict[str, float]:
        seen.append(len(logits))
        return {"monitor": next(scores), "val_teacher_agreement": 0.9}

    config = tiny_config(epochs=4, eval_every=2, patience=2)
    trainer = Trainer(
        load_model(tiny_distilbert_dir), encoded.train, encoded.val, config, tmp_path,
        loss_fn=cross_entropy_loss(), pad_id=encoded.encoder.pad_id, label_names=LABELS,
        save_best=best_saver(encoded.tokenizer), progress=False, monitor=monitor,
    )
    state = trainer.train()
    assert state.stopped_early and [h["step"] for h in state.history] == [2, 4, 6, 8]
    assert seen == [len(encoded.val)] * 4  # every validation row, every time
    assert (state.best_step, state.best_val_loss) == (4, 0.4)  # the monitor's, not the loss's
    assert [h["monitor"] for h in state.history] == [0.5, 0.4, 0.6, 0.7]
    assert all(h["val_teacher_agreement"] == 0.9 and "val_loss" in h for h in state.history)


def _forward_that_runs_out_of_memory(model: Any, limit: int, seen: list[int]) -> None:
    """Make training forwards with more than ``limit`` rows fail as CUDA would."""
    original = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        rows = kwargs["input_ids"].shape[0]
        if model.training:
            if rows > limit:
                raise torch.cuda.OutOfMemoryError(
                    "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.77 GiB total)"
                )
            seen.append(rows)
        return original(*args, **kwargs)

    model.forward = forward


def test_out_of_memory_halves_the_micro_batch_and_keeps_the_effective_batch(
    tiny_distilbert_dir: Path, encoded: SimpleNamespace, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tiny_config(epochs=1, batch_size=16, learning_rate=1e-3)
    reference = _trainer(
        load_model(tiny_distilbert_dir, **NO_DROPOUT), encoded, tmp_path / "ref", config
    )
    reference.train()

    model = load_model(tiny_distilbert_dir, **NO_DROPOUT)
    seen: list[int] = []
    _forward_that_runs_out_of_memory(model, limit=4, seen=seen)
    trainer = _trainer(model, encoded, tmp_path / "oom", config)
    with caplog.at_level(logging.WARNING, logger="edgesent_export.training"):
        state = trainer.train()

    assert state.finished and state.accumulation == 4
    assert state.global_step == reference.state.global_step == 8  # same optimizer steps
    assert max(seen) == 4 and sum(seen) == len(encoded.train)  # every row once, in pieces
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "accumulation doubled to 2" in warnings[0] and "accumulation doubled to 4" in warnings[1]
    assert "effective batch unchanged at 16" in warnings[1]
    saved = json.loads((tmp_path / "oom" / "checkpoint" / STATE_FILE).read_text("utf-8"))
    assert saved["accumulation"] == 4
    # Every back-off is recorded with the micro-batch it moved to, in the state and history.
    backoffs = [{"step": 1, "micro_batch": 8, "accumulation": 2},
                {"step": 1, "micro_batch": 4, "accumulation": 4}]
    assert saved["oom_backoffs"] == state.oom_backoffs == backoffs
    assert state.history[0]["oom_backoffs"] == backoffs and state.history[0]["micro_batch"] == 4
    # Accumulating four quarter-batches gives the gradient of the whole batch.
    assert _max_difference(_weights(trainer.model), _weights(reference.model)) < 1e-4


def test_history_shows_what_training_costs_and_a_later_back_off(
    tiny_distilbert_dir: Path, encoded: SimpleNamespace, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    config = tiny_config(epochs=2, batch_size=16, eval_every=4)
    trainer = _trainer(load_model(tiny_distilbert_dir), encoded, tmp_path, config)
    trainer.progress = True
    real = trainer._accumulate
    calls = {"n": 0}

    def out_of_memory_once(indices: Any, batch_rows: int) -> float:
        calls["n"] += 1
        if calls["n"] == 6:  # the sixth step's first try
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(indices, batch_rows)

    monkeypatch.setattr(trainer, "_accumulate", out_of_memory_once)
    state = trainer.train()
    assert state.finished and state.global_step == 16
    assert state.oom_backoffs == [{"step": 6, "micro_batch": 8, "accumulation": 2}]
    records = state.history
    assert [h["step"] for h in records] == [4, 8, 12, 16]
    assert [h["oom_backoffs"] for h in records] == [[], state.oom_backoffs, [], []]
    assert [h["micro_batch"] for h in records] == [16, 8, 8, 8]
    for record in records:
        assert record["samples_per_s"] > 0 and record["step_seconds"] > 0
        assert record["rss_mb"] > 50  # torch alone takes more
        assert ("cuda_peak_mb" in record) == torch.cuda.is_available()
    # four steps of 16 rows in each window: rate and step time agree
    assert records[1]["samples_per_s"] == pytest.approx(16 / records[1]["step_seconds"],
                                                        rel=0.01)
    bar = capsys.readouterr().err
    assert "samples/s=" in bar and "rss=" in bar

    from edgesent_export.training_run import save_history_plot

    save_history_plot(records, tmp_path / "curves.png")
    png = (tmp_path / "curves.png").read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (width, height) == (1500, 400)  # 3 panels


def test_out_of_memory_at_one_row_and_other_errors_are_raised(
    tiny_distilbert_dir: Path, encoded: SimpleNamespace, tmp_path: Path
) -> None:
    model = load_model(tiny_distilbert_dir)
    _forward_that_runs_out_of_memory(model, limit=0, seen=[])
    trainer = _trainer(model, encoded, tmp_path / "a", tiny_config(batch_size=2))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        trainer.train()
    assert trainer.state.accumulation == 2

    model = load_model(tiny_distilbert_dir)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a real bug")

    model.forward = broken
    trainer = _trainer(model, encoded, tmp_path / "b", tiny_config())
    with pytest.raises(ValueError, match="a real bug"):
        trainer.train()
    assert trainer.state.accumulation == 1
