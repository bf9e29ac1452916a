"""Data-parallel fine-tuning (export/distributed.py) with two real gloo processes.

The test launches this file under ``torchrun --standalone --nproc_per_node 2``; run as a
script, it is the training driver: each rank fine-tunes the tiny DistilBERT (without
dropout) through :func:`~edgesent_export.finetune.finetune` three times (uninterrupted;
stopped after a few steps; resumed from rank 0's checkpoint) and writes, outside the run
folders, its final weights and every write it made under them (an audit hook sees
``open`` for writing, ``mkdir``, ``rename`` and ``remove``). The test then runs the same
three runs in one process and compares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

RUNS = ("whole", "stopped", "resumed")
STOP_AFTER = 7
LAUNCH_TIMEOUT = 240


def _config(**overrides: Any) -> Any:
    from helpers_training import tiny_config

    return tiny_config(epochs=3, batch_size=16, eval_every=6, learning_rate=1e-2, **overrides)


def _data(make_reviews: Any) -> Any:
    from helpers_training import formatted

    return formatted(make_reviews(120, seed=6))


def run_three(model_dir: Path, root: Path, report_dir: Path, data: Any, rank: int = 0
              ) -> dict[str, Any]:
    """The uninterrupted, stopped and resumed runs; each run's trainer's final weights go
    to ``report_dir`` and the report (steps, history) is returned."""
    import torch
    from helpers_training import TINY_ENCODING

    import edgesent_export.training_run as training_run
    from edgesent_export.finetune import finetune

    trainers: list[Any] = []
    real = training_run.Trainer

    class Recording(real):  # type: ignore[misc, valid-type]
        def train(self, resume: bool = False) -> Any:
            trainers.append(self)
            return super().train(resume)

    training_run.Trainer = Recording
    report: dict[str, Any] = {}
    try:
        for name in RUNS:
            config = _config(stop_after_steps=STOP_AFTER) if name == "stopped" else _config()
            out = root / ("whole" if name == "whole" else "run")
            if name == "resumed":
                torch.manual_seed(12345)  # what the process did before must not matter
            started = time.perf_counter()
            result = finetune(model_dir, data, out, config=config, encoding=TINY_ENCODING,
                              resume=name == "resumed", progress=False)
            trainer = trainers[-1]
            torch.save(trainer.model.state_dict(), report_dir / f"rank{rank}_{name}.pt")
            report[name] = {
                "steps": trainer.state.global_step,
                "history": trainer.state.history,
                "finished": result.finished,
                "val_loss": result.val_metrics.get("loss"),
                "seconds": round(time.perf_counter() - started, 2),
            }
    finally:
        training_run.Trainer = real
    return report


def _driver(model_dir: str, root: str, report_dir: str) -> None:
    """One rank of the launch (run by torchrun)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    watched = os.path.realpath(root)
    writes: list[str] = []

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and isinstance(flags, int)
                and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        else:
            writing, path = event in ("os.mkdir", "os.rename", "os.remove", "shutil.rmtree"), (
                args[0] if args else "")
        if writing and isinstance(path, (str, os.PathLike)):
            full = os.path.realpath(os.fspath(path))
            if full.startswith(watched):
                writes.append(f"{event} {full}")

    from conftest import make_reviews  # this file's folder leads sys.path when run as a script

    from edgesent_export.distributed import main_process_first

    with main_process_first():  # rank 0 writes first; rank 1 must find its file
        marker = Path(report_dir, "first.txt")
        order = marker.read_text("utf-8") if marker.exists() else ""
        marker.write_text(order + str(rank), "utf-8")
    sys.addaudithook(audit)
    report = run_three(Path(model_dir), Path(root), Path(report_dir), _data(make_reviews), rank)
    report.update(rank=rank, world=world, writes=writes)
    Path(report_dir, f"rank{rank}.json").write_text(json.dumps(report), "utf-8")


# ---------------------------------------------------------------------------- the test

if __name__ != "__main__":
    from extras import EXPORT_REASON

    pytest.importorskip("torch", reason=EXPORT_REASON)
    pytest.importorskip("transformers", reason=EXPORT_REASON)


@pytest.fixture(scope="module")
def no_dropout_dir(tiny_distilbert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny DistilBERT without dropout, so one and two processes compute the same."""
    from helpers_training import load_model

    out = tmp_path_factory.mktemp("no_dropout")
    load_model(tiny_distilbert_dir, dropout=0.0, attention_dropout=0.0,
               seq_classif_dropout=0.0).save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.txt"):
        (out / name).write_bytes((tiny_distilbert_dir / name).read_bytes())
    return out


def _launch(model_dir: Path, root: Path, report_dir: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", __file__, str(model_dir), str(root), str(report_dir)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=LAUNCH_TIMEOUT, cwd=Path(__file__).parent)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun did not finish in {LAUNCH_TIMEOUT} s: {exc.stderr!s:.3000}")
    if done.returncode != 0:
        pytest.fail(f"torchrun --nproc_per_node 2 failed (exit {done.returncode}):\n"
                    f"{done.stderr[-4000:]}")
    return time.perf_counter() - started


def _losses(run: dict[str, Any]) -> list[tuple[int, float, float]]:
    return [(h["step"], h["val_loss"], h["train_loss"]) for h in run["history"]]


def _max_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_two_gloo_processes_train_in_sync_and_resume_exactly(
    no_dropout_dir: Path, review_factory: Any, tmp_path: Path
) -> None:
    import torch

    from edgesent_export.training import STATE_FILE

    two, reports = tmp_path / "two", tmp_path / "reports"
    two.mkdir()
    reports.mkdir()
    launch_seconds = _launch(no_dropout_dir, two, reports)
    ranks = [json.loads((reports / f"rank{r}.json").read_text("utf-8")) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world"] for r in ranks} == {2}
    assert (reports / "first.txt").read_text("utf-8") == "01"  # main_process_first

    # The ranks stay in sync: the same weights after every run, bit for bit.
    for name in RUNS:
        zero = torch.load(reports / f"rank0_{name}.pt", weights_only=True)
        one = torch.load(reports / f"rank1_{name}.pt", weights_only=True)
        assert _max_difference(zero, one) == 0.0, name
        assert _losses(ranks[0][name]) == _losses(ranks[1][name]), name

    # Rank 0 alone wrote the checkpoints, the best weights, history, curves and result.
    assert ranks[1]["writes"] == []
    written = " ".join(ranks[0]["writes"])
    for name in ("checkpoint.tmp", "best.tmp", "history.json", "curves.png", "result.json"):
        assert name in written, name
    for out in (two / "whole", two / "run"):
        assert (out / "checkpoint" / STATE_FILE).exists() and (out / "result.json").exists()
    saved = json.loads((two / "run" / "checkpoint" / STATE_FILE).read_text("utf-8"))
    assert saved["finished"] and saved["global_step"] == ranks[0]["whole"]["steps"]
    rng = torch.load(two / "run" / "checkpoint" / "optimizer.pt", weights_only=True)
    assert len(rng["torch_rng_ranks"]) == 2  # each rank's random state, for exact resume

    # One process, the same three runs: the same curve shape, nearly the same numbers.
    one_proc = tmp_path / "one"
    one_proc.mkdir()
    single = run_three(no_dropout_dir, one_proc / "runs", one_proc, _data(review_factory))
    whole_two, whole_one = ranks[0]["whole"], single["whole"]
    assert whole_two["steps"] == whole_one["steps"] == 18
    assert [h["step"] for h in whole_two["history"]] == [h["step"] for h in whole_one["history"]]
    assert [h["step"] for h in whole_two["history"]] == [6, 12, 18]
    train_losses = [h["train_loss"] for h in whole_two["history"]]
    val_losses = [h["val_loss"] for h in whole_two["history"]]
    assert train_losses[-1] < train_losses[0] and val_losses[-1] < val_losses[0] - 0.05
    for ours, theirs in zip(whole_two["history"], whole_one["history"], strict=True):
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], abs=1e-4)
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-4)
        assert ours["samples_per_s"] > 0 and ours["rss_mb"] > 0
    weights_two = torch.load(reports / "rank0_whole.pt", weights_only=True)
    weights_one = torch.load(one_proc / "rank0_whole.pt", weights_only=True)
    gap = _max_difference(weights_two, weights_one)
    assert gap < 1e-3

    # Resuming rank 0's checkpoint with two processes is exact.
    stopped = ranks[0]["stopped"]
    assert stopped["steps"] == STOP_AFTER and not stopped["finished"]
    resumed = ranks[0]["resumed"]
    assert resumed["finished"] and resumed["steps"] == whole_two["steps"]
    resumed_weights = torch.load(reports / "rank0_resumed.pt", weights_only=True)
    assert _max_difference(resumed_weights, weights_two) < 1e-6
    assert resumed["val_loss"] == pytest.approx(whole_two["val_loss"], abs=1e-6)
    for ours, theirs in zip(resumed["history"], whole_two["history"], strict=True):
        assert ours["step"] == theirs["step"]
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], abs=1e-6)
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-6)

    step_two = [h["step_seconds"] for h in whole_two["history"]]
    step_one = [h["step_seconds"] for h in whole_one["history"]]
    print(f"\nlargest weight difference, 1 vs 2 processes: {gap:.2e}\n"
          f"launch {launch_seconds:.1f} s; whole run {whole_two['seconds']} s (2 processes) "
          f"vs {whole_one['seconds']} s (1)\n"
          f"train loss 2 processes {[round(x, 4) for x in train_losses]}\n"
          f"train loss 1 process   {[round(h['train_loss'], 4) for h in whole_one['history']]}\n"
          f"val loss 2 processes   {[round(h['val_loss'], 4) for h in whole_two['history']]}\n"
          f"val loss 1 process     {[round(h['val_loss'], 4) for h in whole_one['history']]}\n"
          f"seconds/step 2 processes {step_two}; 1 process {step_one}")


def test_the_module_entry_point_runs_the_cli() -> None:
    """``torchrun -m edgesent_export`` / ``accelerate launch -m edgesent_export`` start this."""
    done = subprocess.run([sys.executable, "-m", "edgesent_export", "train", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: edgesent train") and "--resume" in done.stdout


if __name__ == "__main__":
    _driver(*sys.argv[1:4])
