"""Load tests of edgesent as it is deployed, on real reviews.

``python -m benchmarks serve``: three ``edgesent serve`` processes side by side (the
default micro-batching, a 5 ms wait for fuller batches, batching off) at 1, 8 and 64
clients (one review per request, keep-alive), their cells alternating: requests/s,
p50/p99 latency, mean model batch (``/metrics``), then each server's RSS after each of
three more rounds at 64 clients. Clients share the CPU with the servers.

``python -m benchmarks scaleout --reviews 100000``: the same reviews (the shared product
review files, repeated as needed, whitespace folded to one line each) scored on
``--workers`` cores as a user would: ``edgesent predict --input --threads WORKERS``, the
documented ``examples/ray_classify.py`` (WORKERS one-thread actors) and
``examples/spark_classify.py`` (``local[WORKERS]``), each reading CSV from disk and writing
every answer back. Each command runs twice on 16 reviews (a warm-up, then its fixed cost:
interpreter, engine start-up, model load), then on all of them; throughput is taken after
the fixed cost.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.cell import proc_kb
from edgesent.output import markdown_table as table

ROOT = Path(__file__).resolve().parent.parent


PHRASES = ("the battery lasts two days", "it stopped charging after a week", "great value for "
           "the price", "the stitching came loose after one wash", "setup took all afternoon",
           "works exactly as described", "customer service never replied", "my kids love it",
           "too noisy at night", "the screen had a dead pixel", "comfortable and true to size")


def generated_reviews(n: int, seed: int = 13) -> list[str]:
    """Reviews of 1 to 60 sentences, log-normal (median 5: many short, a long tail)."""
    rng = random.Random(seed)
    return [" ".join(f"{rng.choice(PHRASES).capitalize()}, and {rng.choice(PHRASES)}." for _ in
                     range(min(60, max(1, round(rng.lognormvariate(1.6, 0.9)))))) for _ in range(n)]


def sample_reviews(data: Path | None, n: int, seed: int = 13,
                   files: tuple[str, ...] | None = None) -> list[str]:
    """``n`` texts (at most) from the first 20,000 rows of ``files`` (default: each
    ``*.jsonl.gz``) under ``data``, shuffled; generated reviews without data."""
    from edgesent.inputs import ReviewReader

    texts: list[str] = []
    for path in [data / f for f in files] if data and files else sorted(
            data.glob("*.jsonl.gz")) if data else []:
        with ReviewReader(path, text_column="text") as reviews:
            texts += [r.text for _, r in zip(range(20_000), reviews, strict=False) if r.text]
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
    proc = subprocess.Popen([sys.executable, "-m", "edgesent.cli", "serve", "--port", str(port),
                             "--log-level", "warning", *args], stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE)
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
@click.option("--requests", type=click.IntRange(min=1), default=1500, show_default=True,
              help="Requests per cell.")
@click.option("--max-seconds", type=click.FloatRange(min=0.1), default=60, show_default=True)
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
    cells: dict[str, list[dict[str, Any]]] = {}
    rss: dict[str, dict[str, Any]] = {}
    extra = [*(["--model", str(model)] if model else []),
             *(["--threads", str(threads)] if threads else [])]
    # The default (gather what arrived while the model was busy), a wait for fuller
    # batches, and no batching: all three servers up at once (idle servers do not spin)
    # and their cells alternating, so a drift in the machine's speed hits each alike.
    modes = {"on": ("32", "0"), "on, waiting": ("32", "5"), "off": ("1", "0")}
    with ExitStack() as stack:
        servers = {mode: stack.enter_context(server(["--max-batch", batch, "--max-wait-ms",
                                                     wait, *extra]))
                   for mode, (batch, wait) in modes.items()}
        for mode, (_, pid) in servers.items():
            cells[mode] = []
            rss[mode] = {"start_mb": (proc_kb("VmRSS", pid) or 0) / 1024, "after_rounds_mb": []}
        for n in counts:
            for mode, (port, _) in servers.items():
                load(port, n, texts[::-1], 2 * n + 10, 10)  # warm-up
                batch, wait = modes[mode]
                cells[mode].append({"batching": f"{mode} ({batch}/{wait} ms)",
                                    **load(port, n, texts, requests, max_seconds)})
                click.echo(cells[mode][-1], err=True)
        for _ in range(rss_rounds):
            for mode, (port, pid) in servers.items():
                load(port, max(counts), texts, requests, max_seconds)
                rss[mode]["after_rounds_mb"].append(round((proc_kb("VmRSS", pid) or 0) / 1024))
    rows = [row for mode in modes for row in cells[mode]]  # grouped by server
    click.echo("\n".join(table(list(rows[0]), [list(r.values()) for r in rows])))
    for mode, r in rss.items():
        click.echo(f"\nServer RSS, batching {mode}: {r['start_mb']:.0f} MB at start; after each "
                   f"round of {max(counts)} clients: {r['after_rounds_mb']} MB")
    if out:
        out.write_text(json.dumps({"texts": "shared review files" if data else "generated",
                                   "rows": rows, "rss": rss}, indent=2) + "\n", "utf-8")



FILES = ("fdu_mtl.jsonl.gz", "pycaret_amazon.jsonl.gz", "marc_en_val.jsonl.gz")
SHARDS = 16  # input files for the engines: Ray reads a block and Spark a partition each


def write_csv(folder: Path, texts: list[str], n: int, shards: int) -> Path:
    """``n`` rows (id, review) in ``shards`` CSV files under a new ``folder``."""
    folder.mkdir(parents=True)
    for k in range(shards):
        with open(folder / f"part-{k:02d}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "review"])
            writer.writerows((i, texts[i % len(texts)]) for i in range(k, n, shards))
    return folder


def commands(name: str, src: Path, out: Path, model: str | None, workers: int) -> list[str]:
    extra = ["--model", model] if model else []
    if name == "edgesent predict":
        return [sys.executable, "-m", "edgesent.cli", "predict", "--input", str(
            src / "part-00.csv"), "--text-column", "review", "--output", str(out),
                "--threads", str(workers), "--no-progress", *extra]
    script = {"Ray Data": "ray_classify.py", "Spark": "spark_classify.py"}[name]
    return [sys.executable, str(ROOT / "examples" / script), str(src), "--column", "review",
            "--output", str(out), "--workers", str(workers), *extra]


def labels(out: Path) -> list[str | None]:
    """The answers' labels in input (id) order: JSONL from the CLI, else Parquet."""
    if out.is_file():
        return [json.loads(line).get("label") for line in out.read_text("utf-8").splitlines()]
    import pyarrow.parquet as pq

    table = pq.read_table(out, columns=["id", "label"]).to_pydict()
    by_id = dict(zip(map(int, table["id"]), table["label"], strict=True))
    return [by_id[i] for i in range(len(by_id))]


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - started


@click.command()
@click.option("--reviews", "n", type=click.IntRange(min=SHARDS), default=100_000,
              show_default=True)
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              envvar="EDGESENT_DATA", required=True, help="The shared review files.")
@click.option("--model", default=None, help="Bundle directory [default: the embedded model].")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--only", multiple=True, type=click.Choice(["cli", "ray", "spark"]),
              help="Run only these systems (repeatable) [default: all three].")
def scaleout(n: int, data: Path, model: str | None, workers: int, only: tuple[str, ...]
             ) -> None:
    """Score N reviews through the CLI, Ray Data and Spark; print JSON and a table."""
    names = {"cli": "edgesent predict", "ray": "Ray Data", "spark": "Spark"}
    work, systems = Path(tempfile.mkdtemp(prefix="edgesent-scaleout-")), {}
    try:
        texts = [" ".join(t.split()) for t in sample_reviews(data, 10 ** 9, files=FILES)]
        for key in only or names:
            name, runs = names[key], {}
            for size in ("warm-up", "fixed", "all"):  # warm-up: page cache, JIT, JVM files
                src = write_csv(work / key / size, texts, n if size == "all" else SHARDS,
                                1 if key == "cli" else SHARDS)
                runs[size] = timed(commands(name, src, work / key / f"{size}-out", model, workers))
            seconds = runs["all"] - runs["fixed"]
            systems[name] = {"fixed_s": runs["fixed"], "wall_s": runs["all"], "seconds": seconds,
                             "reviews_per_s": (n - SHARDS) / seconds, "labels": labels(
                                 work / key / "all-out")}
            shutil.rmtree(work / key)
            click.echo(f"{name}: {systems[name]['reviews_per_s']:.0f} reviews/s", err=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base, first = systems.get("edgesent predict"), next(iter(systems.values()))["labels"]
    for r in systems.values():
        r.update(per_core=r["reviews_per_s"] / workers, ratio=r["reviews_per_s"] / base[
            "reviews_per_s"] if base else float("nan"), same_label_as_first=sum(map(
                str.__eq__, map(str, r["labels"]), map(str, first))) / n,
            labels=dict(sorted(Counter(map(str, r["labels"])).items())))
    print(json.dumps({"reviews": n, "workers": workers, "cpus": os.cpu_count(),
                      "systems": systems}, indent=2))
    print("\n".join(table(["system", "fixed cost (s)", "wall (s)", "reviews/s after it",
                           "per core", "× CLI", "same label"], [
        [k, f"{r['fixed_s']:.1f}", f"{r['wall_s']:.1f}", f"{r['reviews_per_s']:.0f}",
         f"{r['per_core']:.0f}", f"{r['ratio']:.2f}", f"{r['same_label_as_first']:.1%}"]
        for k, r in systems.items()])))

