"""A worker process: loads one system on a fixed number of threads and answers commands.

``python -m benchmarks.worker SPEC_JSON THREADS`` reads one JSON command per line on stdin
and answers one JSON line on its protocol stream (the original stdout; whatever the
libraries print goes to stderr). Commands:

- ``{"op": "texts", "lengths": {"64": [...]}, "batch": [...]}``: keep the timing texts;
  answers the token count of each length as this system's tokenizer sees it.
- ``{"op": "eval", "texts": PATH, "out": PATH, "batch_size": 32}``: classify the texts,
  write the labels to ``out``; answers seconds and the peak RSS so far (VmHWM).
- ``{"op": "latency", "length": 64, "n": 20, "warmup": 0}``: ``n`` single-text calls;
  answers each call's seconds.
- ``{"op": "throughput", "n": 3, "warmup": 0}``: ``n`` calls on a batch; answers seconds.
- ``{"op": "quit"}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO


def peak_rss_kb() -> int | None:
    """VmHWM of this process in KiB (Linux), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    except (ImportError, OSError):
        return None


class Worker:
    def __init__(self, runner: Any, batch_size: int = 32) -> None:
        self.runner = runner
        self.batch_size = batch_size
        self.lengths: dict[int, list[str]] = {}
        self.batch: list[str] = []

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.get("op")
        if op == "texts":
            self.lengths = {int(k): v for k, v in cmd["lengths"].items()}
            self.batch = list(cmd["batch"])
            tokens = {str(k): self.runner.token_count(v[0]) for k, v in self.lengths.items()}
            return {"tokens": tokens}
        if op == "eval":
            texts = json.loads(Path(cmd["texts"]).read_text("utf-8"))
            start = time.perf_counter()
            labels = self.runner.predict(texts, int(cmd.get("batch_size", self.batch_size)))
            seconds = time.perf_counter() - start
            Path(cmd["out"]).write_text(json.dumps(labels), "utf-8")
            return {"seconds": seconds, "n": len(texts), "peak_rss_kb": peak_rss_kb()}
        if op == "latency":
            texts = self.lengths[int(cmd["length"])]
            for i in range(int(cmd.get("warmup", 0))):
                self.runner.predict_one(texts[i % len(texts)])
            times = []
            for i in range(int(cmd["n"])):
                text = texts[i % len(texts)]
                start = time.perf_counter()
                self.runner.predict_one(text)
                times.append(time.perf_counter() - start)
            return {"times": times}
        if op == "throughput":
            for _ in range(int(cmd.get("warmup", 0))):
                self.runner.predict(self.batch, self.batch_size)
            times = []
            for _ in range(int(cmd["n"])):
                start = time.perf_counter()
                self.runner.predict(self.batch, self.batch_size)
                times.append(time.perf_counter() - start)
            return {"times": times, "batch": len(self.batch)}
        raise ValueError(f"unknown command {op!r}")


def serve(spec: dict[str, Any], threads: int, commands: TextIO, replies: TextIO) -> None:
    def reply(obj: dict[str, Any]) -> None:
        replies.write(json.dumps(obj) + "\n")
        replies.flush()

    start = time.perf_counter()
    try:
        from benchmarks.runners import load_runner

        worker = Worker(load_runner(spec, threads))
    except Exception as exc:
        traceback.print_exc()
        reply({"error": f"loading failed: {type(exc).__name__}: {exc}"})
        return
    reply({"ready": True, "load_seconds": time.perf_counter() - start,
           "peak_rss_kb": peak_rss_kb()})
    for line in commands:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            reply(worker.handle(cmd))
        except Exception as exc:
            traceback.print_exc()
            reply({"error": f"{cmd.get('op')}: {type(exc).__name__}: {exc}"})


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.worker SPEC_JSON THREADS", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text("utf-8"))
    # Keep the original stdout for replies; anything the libraries print goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(spec, int(argv[1]), sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
