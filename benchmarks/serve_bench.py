"""Loopback load test of ``edgesent serve``: micro-batching on versus off.

Starts ``edgesent serve`` twice on a free loopback port (``--max-batch 32 --max-wait-ms 5``,
then ``--max-batch 1 --max-wait-ms 0``) and, for 1, 8 and 64 concurrent clients each
sending one review per request over a keep-alive connection, measures requests/s and
p50/p99 latency. Each cell is bounded by ``--requests`` and ``--max-seconds``. The
clients run in this process (threads), so they share the CPU with the server: compare
rows with each other, not with other machines.

    python benchmarks/serve_bench.py                        # the embedded model
    python benchmarks/serve_bench.py --model path/to/bundle --requests 300 --out serve.json

Prints a Markdown table; ``--out`` also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODES = {"on": ("32", "5"), "off": ("1", "0")}
REVIEWS = [
    "Great phone, the battery easily lasts two days.",
    "Stopped charging after a week. Returned it.",
    "Does what it says. Packaging was a bit flimsy but the product itself is fine.",
    "Terrible customer service, they never answered my emails about the broken hinge.",
    "Love it!",
    "The fabric feels cheap and the stitching came apart in the first wash, which is a "
    "shame because the fit and the colour were exactly what I wanted.",
    "Five stars. Fast delivery and it works perfectly with my old charger.",
    "Not worth the money.",
    "I was sceptical at first, but after a month of daily use the blender still crushes "
    "ice without trouble and cleans up in seconds. Would buy again.",
    "Screen has dead pixels out of the box and the replacement had the same problem.",
    "Comfortable, quiet and the noise cancelling is better than my old pair.",
    "Meh. It's okay for the price I guess.",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in 0..100."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def batch_counters(port: int) -> tuple[float, float]:
    """(model calls, texts) so far, from /metrics."""
    text = get(port, "/metrics")[1].decode()
    found = dict(re.findall(r"^edgesent_batch_size_(count|sum) (\S+)$", text, re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


@contextmanager
def server(model: str | None, threads: int | None, max_batch: str, max_wait_ms: str
           ) -> Iterator[int]:
    port = free_port()
    cmd = [sys.executable, "-m", "edgesent.cli", "serve", "--port", str(port),
           "--max-batch", max_batch, "--max-wait-ms", max_wait_ms, "--log-level", "warning"]
    cmd += ["--model", model] if model else []
    cmd += ["--threads", str(threads)] if threads else []
    env = dict(os.environ)
    if (REPO / "edgesent" / "__init__.py").is_file():  # run from a checkout: use its code
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise SystemExit(f"edgesent serve exited with {proc.returncode}:\n{err}")
            try:
                if get(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("edgesent serve was not ready after 120 s")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def load(port: int, clients: int, requests: int, max_seconds: float) -> dict[str, Any]:
    """``requests`` single-review POSTs from ``clients`` threads; latencies in ms."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    next_index = iter(range(requests))
    stop_at = time.perf_counter() + max_seconds
    barrier = threading.Barrier(clients)

    def client() -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        barrier.wait()
        try:
            while time.perf_counter() < stop_at:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                body = json.dumps({"text": REVIEWS[i % len(REVIEWS)]})
                started = time.perf_counter()
                try:
                    conn.request("POST", "/v1/classify", body=body,
                                 headers={"Content-Type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    errors += not ok
        finally:
            conn.close()

    calls0, texts0 = batch_counters(port)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    calls1, texts1 = batch_counters(port)
    calls = calls1 - calls0
    return {
        "clients": clients, "requests": len(latencies), "errors": errors,
        "seconds": round(wall, 3), "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_model_batch": round((texts1 - texts0) / calls, 2) if calls else None,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| batching | clients | requests | req/s | p50 ms | p99 ms | mean batch | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['batching']} | {r['clients']} | {r['requests']} | {r['requests_per_s']} | "
              f"{r['p50_ms']} | {r['p99_ms']} | {r['mean_model_batch']} | {r['errors']} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Loopback load test of edgesent serve.")
    parser.add_argument("--model", default=None, help="bundle directory (default: embedded)")
    parser.add_argument("--requests", type=int, default=400, help="requests per cell")
    parser.add_argument("--max-seconds", type=float, default=30, help="time limit per cell")
    parser.add_argument("--clients", default="1,8,64", help="comma-separated client counts")
    parser.add_argument("--threads", type=int, default=None, help="server ONNX threads")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    if args.requests < 1 or not counts or min(counts) < 1:
        parser.error("--requests and every --clients count must be at least 1")

    rows = []
    for mode, (max_batch, max_wait_ms) in MODES.items():
        with server(args.model, args.threads, max_batch, max_wait_ms) as port:
            for clients in counts:
                load(port, clients, min(args.requests, 2 * clients + 10), 10)  # warm-up
                row = load(port, clients, args.requests, args.max_seconds)
                rows.append({"batching": f"{mode} ({max_batch}/{max_wait_ms} ms)", **row})
                print(f"batching {mode}, {clients:>3} clients: {row['requests_per_s']} req/s, "
                      f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms", file=sys.stderr)
    print(table(rows))
    if args.out:
        report = {
            "benchmark": "edgesent serve, loopback, single-review requests",
            "model": args.model or "embedded default",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "settings": {"requests_per_cell": args.requests, "max_seconds": args.max_seconds,
                         "server_threads": args.threads},
            "results": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
