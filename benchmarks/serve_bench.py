"""``python -m benchmarks serve``: load test of ``edgesent serve`` on real reviews.

Micro-batching on against off at 1, 8 and 64 clients (one review per request, keep-alive):
requests/s, p50/p99 latency, mean model batch (``/metrics``), then the server's RSS after
each of three more rounds at 64 clients. Clients share the CPU with the server.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.cell import proc_kb

PHRASES = ("the battery lasts two days", "it stopped charging after a week", "great value for "
           "the price", "the stitching came loose after one wash", "setup took all afternoon",
           "works exactly as described", "customer service never replied", "my kids love it",
           "too noisy at night", "the screen had a dead pixel", "comfortable and true to size")


def generated_reviews(n: int, seed: int = 13) -> list[str]:
    """Reviews of 1 to 60 sentences, log-normal (median 5: many short, a long tail)."""
    rng = random.Random(seed)
    return [" ".join(f"{rng.choice(PHRASES).capitalize()}, and {rng.choice(PHRASES)}." for _ in
                     range(min(60, max(1, round(rng.lognormvariate(1.6, 0.9)))))) for _ in range(n)]


def sample_reviews(data: Path | None, n: int, seed: int = 13) -> list[str]:
    """``n`` texts from the first 20,000 rows of each ``*.jsonl.gz`` under ``data``."""
    texts = []
    for path in sorted(data.glob("*.jsonl.gz")) if data else []:
        with gzip.open(path, "rt", encoding="utf-8") as rows:
            texts += [t for _, line in zip(range(20_000), rows, strict=False)
                      if (t := (json.loads(line).get("text") or "").strip())]
    return random.Random(seed).sample(texts, min(n, len(texts))) or generated_reviews(n, seed)


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read().decode()


def batch_counters(port: int) -> tuple[float, float]:
    """(model calls, texts) so far, from /metrics."""
    found = dict(re.findall(r"^edgesent_batch_size_(count|sum) (\S+)$", get(port, "/metrics"),
                            re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


@contextmanager
def server(args: list[str]) -> Iterator[tuple[int, int]]:
    """``edgesent serve ARGS`` on a free loopback port: (port, pid)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen([sys.executable, "-m", "edgesent.cli", "serve", "--port", str(port),
                             "--log-level", "warning", *args], stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": root}, stderr=subprocess.PIPE)
    try:
        for _ in range(1200):
            if proc.poll() is not None:
                raise click.ClickException(f"edgesent serve exited with {proc.returncode}: "
                                           f"{proc.stderr.read().decode()[-400:]}")  # type: ignore
            try:
                get(port, "/readyz")
                break
            except OSError:  # urllib's HTTPError (503 while loading) is one too
                time.sleep(0.1)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def load(port: int, clients: int, texts: list[str], requests: int, max_s: float
         ) -> dict[str, Any]:
    """``requests`` single-review POSTs from ``clients`` threads (at most ``max_s``)."""
    latencies, errors, lock = [], [0], threading.Lock()
    numbers, stop_at = iter(range(requests)), time.perf_counter() + max_s
    barrier = threading.Barrier(clients)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        barrier.wait()
        while time.perf_counter() < stop_at and (i := next(numbers, None)) is not None:
            started, ok = time.perf_counter(), False
            try:
                conn.request("POST", "/v1/classify", json.dumps({"text": texts[i % len(texts)]}),
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                ok = response.status == 200 and bool(response.read())
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                latencies.append(1e3 * (time.perf_counter() - started))
                errors[0] += not ok
        conn.close()

    calls0, texts0 = batch_counters(port)
    pool = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - started
    calls1, texts1 = batch_counters(port)
    return {"clients": clients, "requests": len(latencies),
            "requests_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1),
            "mean_model_batch": round((texts1 - texts0) / max(calls1 - calls0, 1), 2),
            "errors": errors[0]}


@click.command()
@click.option("--model", type=click.Path(exists=True, path_type=Path), help="Bundle "
              "[default: the embedded model].")
@click.option("--data", type=click.Path(path_type=Path), envvar="EDGESENT_DATA",
              help="Review files to sample [default: $EDGESENT_DATA; else generated reviews].")
@click.option("--requests", type=click.IntRange(min=1), default=400, show_default=True,
              help="Requests per cell.")
@click.option("--max-seconds", type=click.FloatRange(min=0.1), default=30, show_default=True)
@click.option("--clients", default="1,8,64", show_default=True)
@click.option("--rss-rounds", type=click.IntRange(min=0), default=3, show_default=True,
              help="Rounds at the most clients, the server's RSS read after each.")
@click.option("--threads", type=click.IntRange(min=1), help="Server threads.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write JSON.")
def serve(model: Path | None, data: Path | None, requests: int, max_seconds: float,
          clients: str, rss_rounds: int, threads: int | None, out: Path | None) -> None:
    """Load-test `edgesent serve` with micro-batching on and off, on real reviews."""
    counts = [int(c) for c in clients.split(",") if c.strip()]
    texts = sample_reviews(data, 2000)
    rows, rss = [], {}
    extra = [*(["--model", str(model)] if model else []),
             *(["--threads", str(threads)] if threads else [])]
    for mode, (batch, wait) in {"on": ("32", "5"), "off": ("1", "0")}.items():
        with server(["--max-batch", batch, "--max-wait-ms", wait, *extra]) as (port, pid):
            rss[mode] = {"start_mb": (proc_kb("VmRSS", pid) or 0) / 1024, "after_rounds_mb": []}
            for n in counts:
                load(port, n, texts[::-1], 2 * n + 10, 10)  # warm-up
                rows.append({"batching": f"{mode} ({batch}/{wait} ms)",
                             **load(port, n, texts, requests, max_seconds)})
                click.echo(rows[-1], err=True)
            for _ in range(rss_rounds):
                load(port, max(counts), texts, requests, max_seconds)
                rss[mode]["after_rounds_mb"].append(round((proc_kb("VmRSS", pid) or 0) / 1024))
    click.echo("| batching | clients | requests | req/s | p50 ms | p99 ms | mean batch | errors |"
               "\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        click.echo("| " + " | ".join(str(v) for v in r.values()) + " |")
    for mode, r in rss.items():
        click.echo(f"\nServer RSS, batching {mode}: {r['start_mb']:.0f} MB at start; after each "
                   f"round of {max(counts)} clients: {r['after_rounds_mb']} MB")
    if out:
        out.write_text(json.dumps({"texts": "shared review files" if data else "generated",
                                   "rows": rows, "rss": rss}, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    serve()
