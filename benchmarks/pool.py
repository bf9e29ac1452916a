"""The harness side of worker processes: start them, send commands, read replies."""

from __future__ import annotations

import json
import logging
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.runners import thread_env

logger = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class WorkerError(RuntimeError):
    """A worker failed to load its system or to answer a command."""


class WorkerClient:
    """One ``python -m benchmarks.worker`` process running one system on ``threads``.

    >>> w = WorkerClient.start(spec, "vader", threads=1, log_dir=Path("/tmp"))  # doctest: +SKIP
    >>> w.wait_ready(); w.call({"op": "latency", "length": 64, "n": 5})  # doctest: +SKIP
    """

    def __init__(self, name: str, threads: int, proc: subprocess.Popen[str], log: Path) -> None:
        self.name = name
        self.threads = threads
        self.proc = proc
        self.log = log
        self.ready: dict[str, Any] | None = None

    @classmethod
    def start(cls, spec_file: Path, name: str, threads: int, log_dir: Path) -> WorkerClient:
        env = thread_env(threads)
        env["PYTHONPATH"] = str(PACKAGE_ROOT) + (
            ":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        log = log_dir / f"worker-{name}-t{threads}.log"
        with open(log, "w", encoding="utf-8") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.worker", str(spec_file), str(threads)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                env=env, cwd=PACKAGE_ROOT, bufsize=1,
            )
        return cls(name, threads, proc, log)

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise WorkerError(f"{self.name}: no answer within {timeout:.0f} s ({self.log})")
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerError(f"{self.name}: the worker exited ({self.tail()})")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"{self.name}: {reply['error']} ({self.log})")
        return reply

    def wait_ready(self, timeout: float = 600.0) -> dict[str, Any]:
        if self.ready is None:
            self.ready = self._read(timeout)
        return self.ready

    def call(self, cmd: dict[str, Any], timeout: float = 3600.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerError(f"{self.name}: the worker exited ({self.tail()})") from None
        return self._read(timeout)

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text("utf-8", errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(text[-lines:]) or "empty log"

    def close(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_all(specs: dict[str, Path], threads: int, log_dir: Path) -> tuple[
        dict[str, WorkerClient], dict[str, str]]:
    """Start one worker per system (they load in parallel); returns the ready ones and,
    for the others, why they failed."""
    started = {name: WorkerClient.start(path, name, threads, log_dir)
               for name, path in specs.items()}
    ready: dict[str, WorkerClient] = {}
    failed: dict[str, str] = {}
    t0 = time.perf_counter()
    for name, worker in started.items():
        try:
            info = worker.wait_ready()
            ready[name] = worker
            logger.info("  %s ready on %d thread(s) (loaded in %.1f s)", name, threads,
                        info.get("load_seconds", 0.0))
        except WorkerError as exc:
            failed[name] = str(exc)
            logger.error("  %s failed to load: %s", name, exc)
            worker.close()
    logger.info("workers on %d thread(s) ready after %.1f s", threads, time.perf_counter() - t0)
    return ready, failed


def close_all(workers: dict[str, WorkerClient]) -> None:
    for worker in workers.values():
        worker.close()
