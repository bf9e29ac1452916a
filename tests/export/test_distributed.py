"""Data-parallel fine-tuning, distillation and ``edgesent build`` (export/distributed.py)
with two real gloo processes.

The tests launch this file under ``torchrun --standalone --nproc_per_node 2``; run as a
script, it is the driver named by its first argument. ``finetune``: each rank fine-tunes
the tiny DistilBERT (without dropout) through :func:`~edgesent_export.finetune.finetune`
three times (uninterrupted; stopped after a few steps; resumed from rank 0's checkpoint).
``build``: each rank runs the ``edgesent build`` command line three times (distil a tiny
teacher and package the student; the same again, every stage done; a build directory that
is a file). Each rank writes, outside the run folders, its weights, what it saw and every
write it made under them (an audit hook sees ``open`` for writing, ``mkdir``, ``rename``
and ``remove``).
"""

from __future__ import annotations

import atexit
import json
import math
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


def _record_writes(root: str) -> list[str]:
    """Every write this process makes under ``root`` from now on (an audit hook)."""
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

    sys.addaudithook(audit)
    return writes


def _finetune_driver(model_dir: str, root: str, report_dir: str) -> None:
    """One rank of the fine-tuning launch."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    from conftest import make_reviews  # this file's folder leads sys.path when run as a script

    from edgesent_export.distributed import main_process_first

    with main_process_first():  # rank 0 writes first; rank 1 must find its file
        marker = Path(report_dir, "first.txt")
        order = marker.read_text("utf-8") if marker.exists() else ""
        marker.write_text(order + str(rank), "utf-8")
    writes = _record_writes(root)
    report = run_three(Path(model_dir), Path(root), Path(report_dir), _data(make_reviews), rank)
    report.update(rank=rank, world=world, writes=writes)
    Path(report_dir, f"rank{rank}.json").write_text(json.dumps(report), "utf-8")


def _build_driver(root: str, report_dir: str) -> None:
    """One rank of the build launch: the command lines of ``build_args.json`` in turn,
    each one's exit status, printed output and writes recorded; the student trainer's
    teacher logits and final weights saved."""
    import contextlib
    import io

    import click
    import numpy as np
    import torch

    import edgesent_export.logits as logits_module
    import edgesent_export.training_run as training_run
    from edgesent.cli import main

    rank = int(os.environ["RANK"])
    commands = json.loads(Path(report_dir, "build_args.json").read_text("utf-8"))
    atexit.register(_report_group_at_exit, Path(report_dir, f"rank{rank}_exit.json"))
    trainers: list[Any] = []
    torch_calls: list[tuple[str, int]] = []

    class Recording(training_run.Trainer):  # type: ignore[misc, name-defined]
        def train(self, resume: bool = False) -> Any:
            trainers.append(self)
            return super().train(resume)

    real_torch_logits = logits_module.torch_logits

    def counted(*args: Any, **kwargs: Any) -> Any:
        torch_calls.append((str(args[0]), len(args[2])))  # model, texts
        return real_torch_logits(*args, **kwargs)

    from edgesent.errors import InputError
    from edgesent_export.distributed import main_process_first

    failures = []
    try:
        with main_process_first():  # rank 0 fails: rank 1 must not wait for ever
            if rank == 0:
                raise InputError("the cache could not be made")
            failures.append("rank 1 ran the block")
    except InputError as exc:
        failures.append(str(exc))
    training_run.Trainer = Recording
    logits_module.torch_logits = counted
    writes = _record_writes(root)
    runs = []
    for args in commands:
        before, out = len(writes), io.StringIO()
        status, error = 0, None
        with contextlib.redirect_stdout(out):
            try:
                main(args, prog_name="edgesent", standalone_mode=False)
            except click.ClickException as exc:
                status, error = exc.exit_code, exc.format_message()
        runs.append({"status": status, "error": error, "stdout": out.getvalue(),
                     "writes": writes[before:], "trainers": len(trainers)})
    student = trainers[-1]
    np.save(Path(report_dir, f"rank{rank}_teacher_logits.npy"), np.concatenate(
        [student.train_set.teacher_logits, student.val_set.teacher_logits]))
    torch.save(student.model.state_dict(), Path(report_dir, f"rank{rank}_student.pt"))
    Path(report_dir, f"rank{rank}.json").write_text(
        json.dumps({"rank": rank, "runs": runs, "torch_calls": torch_calls,
                    "failures": failures}), "utf-8")


def _report_group_at_exit(path: Path) -> None:
    """Registered before the build joins the process group, so it runs after the build's
    own exit handlers (last in, first out): whether the group is still up then."""
    import torch.distributed as dist

    path.write_text(json.dumps({"initialized": dist.is_initialized()}), "utf-8")


DRIVERS = {"finetune": _finetune_driver, "build": _build_driver}


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


def _launch(driver: str, *args: Path) -> float:
    """Run ``driver`` of this file in two gloo processes under torchrun; its seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", __file__, driver, *map(str, args)]
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
    launch_seconds = _launch("finetune", no_dropout_dir, two, reports)
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
    # It learns: 18 steps of the tiny model lower the validation loss below chance by a
    # margin that CPUs of other kinds (other float kernels) still clear.
    assert train_losses[-1] < train_losses[0], train_losses
    assert val_losses[-1] < min(val_losses[0], math.log(2)) - 0.02, val_losses
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


BUILD_FAST = ["--max-length", "48", "--head-tokens", "16", "--precision", "fp32",
              "--threads", "1", "--quiet", "--seed", "0", "--batch-size", "16"]


def test_two_gloo_processes_distil_and_build_one_bundle(
    trained_tiny_distilbert_dir: Path, review_factory: Any, tmp_path: Path
) -> None:
    import numpy as np
    import torch
    from helpers_training import write_csv

    from edgesent import Classifier
    from edgesent.bundle import MANIFEST_NAME
    from edgesent_export.build import SUMMARY_FILE
    from edgesent_export.distill import TEACHER_LOGITS_FILE

    root, reports = tmp_path / "build", tmp_path / "reports"
    root.mkdir()
    reports.mkdir()
    train, test = review_factory(120, seed=51), review_factory(40, seed=52)
    write_csv(root / "train.csv", train.rows(), ["text", "label"])
    write_csv(root / "test.csv", test.rows(), ["text", "label"])
    write_csv(root / "more.csv", [{"text": t} for t in review_factory(40, seed=53).texts],
              ["text"])
    (root / "a-file").write_text("not a build directory\n", "utf-8")
    out = root / "out"
    args = ["build", str(out), "--teacher", str(trained_tiny_distilbert_dir),
            "--train", str(root / "train.csv"), "--test", f"synthetic={root / 'test.csv'}",
            "--unlabelled", str(root / "more.csv"), "--student-epochs", "2",
            "--student-lr", "3e-3", "--student-layers", "1", "--max-drop", "100", *BUILD_FAST]
    commands = [args, args, [args[0], str(root / "a-file" / "out"), *args[2:]]]
    (reports / "build_args.json").write_text(json.dumps(commands), "utf-8")
    launch_seconds = _launch("build", root, reports)
    ranks = [json.loads((reports / f"rank{r}.json").read_text("utf-8")) for r in (0, 1)]
    first, again, bad = ([rank["runs"][i] for rank in ranks] for i in range(3))
    assert [run["status"] for run in first] == [0, 0], first[0]["error"]

    # Rank 0 computed the teacher's logits once and cached them; rank 1 read that cache.
    cache = out / "student" / TEACHER_LOGITS_FILE
    cached = np.load(cache)
    teacher = str(trained_tiny_distilbert_dir)
    assert [n for model, n in ranks[0]["torch_calls"] if model == teacher] == [len(cached)]
    assert ranks[1]["torch_calls"] == []  # nor did it score anything for the gate
    saves = [w for w in first[0]["writes"] if w.startswith("open ") and w.endswith(
        TEACHER_LOGITS_FILE)]
    assert saves == [f"open {cache.resolve()}"]
    used = [np.load(reports / f"rank{r}_teacher_logits.npy") for r in (0, 1)]
    assert np.array_equal(used[0], used[1]) and np.array_equal(used[0], cached)

    # The student trained data-parallel: the same weights on both ranks, bit for bit.
    students = [torch.load(reports / f"rank{r}_student.pt", weights_only=True) for r in (0, 1)]
    assert _max_difference(*students) == 0.0

    # Rank 0 alone wrote (checkpoint, history, bundle) and printed; rank 1 never wrote.
    assert [run["writes"] for run in ranks[1]["runs"]] == [[], [], []]
    written = " ".join(first[0]["writes"])
    for name in ("student/checkpoint.tmp", "student/best.tmp", "student/history.json",
                 "student/result.json", "bundle", SUMMARY_FILE):
        assert name in written, name
    assert "bundle: " in first[0]["stdout"] and first[1]["stdout"] == ""
    assert [p.parent for p in root.rglob(MANIFEST_NAME)] == [out / "bundle"]
    predictions = Classifier.load(out / "bundle", threads=1).predict(test.texts)
    assert len(predictions) == len(test.texts)
    assert {p.label for p in predictions} <= {"negative", "positive"}

    # The same build again: both ranks skip every stage; nothing trains, nothing repackaged.
    assert [run["status"] for run in again] == [0, 0]
    assert [run["trainers"] for run in again] == [run["trainers"] for run in first] == [1, 1]
    assert json.loads((out / SUMMARY_FILE).read_text("utf-8"))["stage_seconds"] == {}
    assert not [w for w in again[0]["writes"] if "/student" in w or "/bundle" in w]
    assert "bundle: " in again[0]["stdout"] and again[1]["stdout"] == ""

    # Rank 0's checks fail: rank 1 fails alike, with the same status and message.
    assert [run["status"] for run in bad] == [1, 1]
    assert bad[0]["error"] == bad[1]["error"]
    assert "a-file/out: cannot write the build there" in bad[0]["error"]
    assert [rank["failures"] for rank in ranks] == [["the cache could not be made"]] * 2

    # Each rank left the process group before interpreter shutdown (left to it, gloo's
    # threads can abort a process whose work is done).
    exits = [json.loads((reports / f"rank{r}_exit.json").read_text("utf-8")) for r in (0, 1)]
    assert exits == [{"initialized": False}] * 2
    print(f"\nbuild launch (distil, package; rerun; failing check): {launch_seconds:.1f} s")


def test_the_module_entry_point_runs_the_cli() -> None:
    """``torchrun -m edgesent_export`` / ``accelerate launch -m edgesent_export`` start this."""
    done = subprocess.run([sys.executable, "-m", "edgesent_export", "train", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: edgesent train") and "--resume" in done.stdout


if __name__ == "__main__":
    DRIVERS[sys.argv[1]](*sys.argv[2:])
