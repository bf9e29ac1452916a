"""Accuracy runs and interleaved timing runs over one worker process per system.

For each thread setting a fresh worker per system is started. On the evaluation thread
setting each worker first classifies its evaluation texts (its peak RSS is read right
after: a fresh process that classified that many reviews). Then the timing cells
(batch-1 latency at each length, batch-32 throughput) run in rounds: every round visits
every system, in a rotated order, so drift of the machine hits all systems alike.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.config import RunConfig
from benchmarks.pool import WorkerClient, WorkerError, close_all, start_all

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalJob:
    """Texts one system classifies for accuracy and peak RSS."""

    texts: Path
    out: Path
    n: int


@dataclass(frozen=True)
class Cell:
    op: str  # "latency" or "throughput"
    length: int | None = None

    @property
    def key(self) -> str:
        return f"latency@{self.length}" if self.op == "latency" else "throughput"


def cells(cfg: RunConfig) -> list[Cell]:
    return [Cell("latency", n) for n in cfg.lengths] + [Cell("throughput")]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (0..100) of ``values``.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(cell: Cell, times: list[float], batch: int) -> dict[str, Any]:
    """Figures of one cell: latency p50/p95 in ms, or throughput in reviews/s."""
    if not times:
        return {"n": 0}
    if cell.op == "latency":
        return {"n": len(times), "p50_ms": 1e3 * percentile(times, 50),
                "p95_ms": 1e3 * percentile(times, 95), "mean_ms": 1e3 * statistics.fmean(times)}
    return {"n": len(times), "batch": batch,
            "reviews_per_s": batch / percentile(times, 50),
            "reviews_per_s_mean": batch * len(times) / sum(times)}


def _reps(cfg: RunConfig, cell: Cell, per_call: float) -> int:
    """Calls per round so that a cell takes about ``cell_seconds`` over all rounds."""
    low = cfg.min_batches if cell.op == "throughput" else cfg.min_reps
    high = max(low, cfg.max_reps if cell.op == "latency" else 4 * cfg.min_batches + 20)
    wanted = cfg.cell_seconds / max(per_call, 1e-6)
    n = min(max(wanted, low), high)
    return max(1, math.ceil(n / cfg.rounds))


def _command(cell: Cell, n: int, warmup: int = 0) -> dict[str, Any]:
    cmd: dict[str, Any] = {"op": cell.op, "n": n, "warmup": warmup}
    if cell.length is not None:
        cmd["length"] = cell.length
    return cmd


def run_workers(cfg: RunConfig, specs: dict[str, Path], jobs: dict[str, EvalJob],
                lengths: dict[int, list[str]], batch: list[str], log_dir: Path
                ) -> dict[str, dict[str, Any]]:
    """Run accuracy jobs and timing rounds; results per system (see module docstring)."""
    out: dict[str, dict[str, Any]] = {
        name: {"timing": {}, "tokens": {}, "errors": [], "load_seconds": {}} for name in specs}
    texts_cmd = {"op": "texts", "lengths": {str(k): v for k, v in lengths.items()},
                 "batch": batch}
    for threads in cfg.threads:
        logger.info("starting %d workers on %d thread(s)", len(specs), threads)
        workers, failed = start_all(specs, threads, log_dir)
        for name, reason in failed.items():
            out[name]["errors"].append(f"threads={threads}: {reason}")
        try:
            for name, worker in list(workers.items()):
                out[name]["load_seconds"][str(threads)] = (worker.ready or {}).get("load_seconds")
                _call(worker, texts_cmd, out, workers, threads, "tokens")
            if threads == cfg.eval_threads:
                _run_evals(jobs, workers, out, threads)
            _run_timing(cfg, workers, out, threads, len(batch))
        finally:
            close_all(workers)
    return out


def _call(worker: WorkerClient, cmd: dict[str, Any], out: dict[str, dict[str, Any]],
          workers: dict[str, WorkerClient], threads: int, store: str | None = None
          ) -> dict[str, Any] | None:
    """Send ``cmd``; on failure record the error and retire the worker."""
    try:
        reply = worker.call(cmd)
    except WorkerError as exc:
        logger.error("%s (threads=%d): %s", worker.name, threads, exc)
        out[worker.name]["errors"].append(f"threads={threads}: {exc}")
        workers.pop(worker.name, None)
        worker.close()
        return None
    if store == "tokens":
        out[worker.name]["tokens"] = reply["tokens"]
    return reply


def _run_evals(jobs: dict[str, EvalJob], workers: dict[str, WorkerClient],
               out: dict[str, dict[str, Any]], threads: int) -> None:
    for name, job in jobs.items():
        worker = workers.get(name)
        if worker is None:
            continue
        logger.info("classifying %d reviews with %s (threads=%d)", job.n, name, threads)
        cmd = {"op": "eval", "texts": str(job.texts), "out": str(job.out), "batch_size": 32}
        reply = _call(worker, cmd, out, workers, threads)
        if reply is not None:
            out[name]["eval"] = {**reply, "threads": threads}
            logger.info("  %s: %.1f s (%.0f reviews/s), peak RSS %.0f MB", name,
                        reply["seconds"], reply["n"] / max(reply["seconds"], 1e-9),
                        (reply.get("peak_rss_kb") or 0) / 1024)


def _run_timing(cfg: RunConfig, workers: dict[str, WorkerClient],
                out: dict[str, dict[str, Any]], threads: int, batch: int) -> None:
    plan: dict[tuple[str, str], int] = {}
    t0 = time.perf_counter()
    for cell in cells(cfg):  # warm-up and probe: how long one call takes
        for name, worker in list(workers.items()):
            warmup = 1 if cell.op == "throughput" else 2
            reply = _call(worker, _command(cell, 2, warmup), out, workers, threads)
            if reply is not None:
                plan[name, cell.key] = _reps(cfg, cell, statistics.median(reply["times"]))
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in plan}
    order = list(workers)
    for round_no in range(cfg.rounds):
        rotated = order[round_no % len(order):] + order[:round_no % len(order)] if order else []
        for cell in cells(cfg):
            for name in rotated:
                worker = workers.get(name)
                if worker is None or (name, cell.key) not in plan:
                    continue
                reply = _call(worker, _command(cell, plan[name, cell.key]), out, workers,
                              threads)
                if reply is not None:
                    samples[name, cell.key] += reply["times"]
        logger.info("timing round %d/%d on %d thread(s) done (%.0f s)", round_no + 1,
                    cfg.rounds, threads, time.perf_counter() - t0)
    for (name, key), times in samples.items():
        cell = next(c for c in cells(cfg) if c.key == key)
        out[name]["timing"].setdefault(str(threads), {})[key] = summarize(cell, times, batch)
