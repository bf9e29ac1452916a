"""Scale-out scoring on one machine: Ray Data and Spark against one ``edgesent predict``.

    python -m benchmarks.scaleout --reviews 100000 --data ../shared/data/reviews

The same reviews (the shared product-review files, repeated as needed) are scored three
ways on ``--workers`` cores: one ``edgesent predict --input`` process with ``--threads
WORKERS``; Ray Data with WORKERS actors of one thread (``edgesent.integrations.ray``);
Spark ``local[WORKERS]`` with one thread per task (``edgesent.integrations.spark``). Each
reads the reviews from disk and writes every answer back. Throughput counts from the
start of the job to the last answer written; engine start-up is timed apart. Prints a
JSON result, then a markdown table.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

FILES = ("fdu_mtl.jsonl.gz", "pycaret_amazon.jsonl.gz", "marc_en_val.jsonl.gz")
SHARDS = 16  # input files for the engines: Ray reads a block and Spark a partition each


def write_reviews(data: Path, n: int, work: Path) -> tuple[Path, Path]:
    """``n`` reviews as one JSONL file (for the CLI) and as SHARDS files (for the engines)."""
    texts: list[str] = []
    for name in FILES:
        with gzip.open(data / name, "rt", encoding="utf-8") as fh:
            texts += [row["text"] for row in map(json.loads, fh) if row.get("text")]
    if not texts:
        raise click.ClickException(f"no review texts in {data}")
    rows = [json.dumps({"id": i, "review": texts[i % len(texts)]}) + "\n" for i in range(n)]
    single, shards = work / "reviews.jsonl", work / "shards"
    single.write_text("".join(rows), encoding="utf-8")
    shards.mkdir()
    for k in range(SHARDS):
        (shards / f"part-{k:02d}.jsonl").write_text("".join(rows[k::SHARDS]), encoding="utf-8")
    return single, shards


def parquet_labels(folder: Path) -> list[str | None]:
    """The label column of an engine's Parquet output, in input (id) order."""
    import pyarrow.parquet as pq

    table = pq.read_table(folder, columns=["id", "label"]).to_pydict()
    by_id = dict(zip(table["id"], table["label"], strict=True))
    return [by_id[i] for i in range(len(by_id))]


def run_cli(single: Path, work: Path, model: str | None, workers: int) -> dict[str, Any]:
    out = work / "cli.jsonl"
    command = [sys.executable, "-m", "edgesent.cli", "predict", "--input", str(single),
               "--text-column", "review", "--output", str(out), "--threads", str(workers),
               "--no-progress", *(["--model", model] if model else [])]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    with open(out, encoding="utf-8") as fh:
        labels = [json.loads(line).get("label") for line in fh]
    return {"setup": f"1 process, --threads {workers}", "startup_s": 0.0,
            "seconds": seconds, "labels": labels}


def run_ray(shards: Path, work: Path, model: str | None, workers: int) -> dict[str, Any]:
    import ray

    from edgesent.integrations.ray import classify

    started = time.perf_counter()
    # one logical CPU more than actors, for the read and write tasks (the actors hold theirs)
    ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    startup = time.perf_counter() - started
    started = time.perf_counter()
    reviews = ray.data.read_json(str(shards))
    classify(reviews, "review", model, concurrency=workers).write_parquet(str(work / "ray"))
    seconds = time.perf_counter() - started
    ray.shutdown()
    return {"setup": f"{workers} actors × 1 thread", "startup_s": startup,
            "seconds": seconds, "labels": parquet_labels(work / "ray")}


def run_spark(shards: Path, work: Path, model: str | None, workers: int) -> dict[str, Any]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    from edgesent.integrations.spark import sentiment

    started = time.perf_counter()
    spark = (SparkSession.builder.master(f"local[{workers}]").appName("edgesent-scaleout")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - started
    started = time.perf_counter()
    reviews = spark.read.schema("id long, review string").json(str(shards))
    scored = reviews.withColumn("s", sentiment("review", model)).select("id", "review", "s.*")
    scored.write.parquet(str(work / "spark"))
    seconds = time.perf_counter() - started
    spark.stop()
    return {"setup": f"local[{workers}], 1 thread per task", "startup_s": startup,
            "seconds": seconds, "labels": parquet_labels(work / "spark")}


def table(result: dict[str, Any]) -> str:
    lines = ["| system | setup | start-up s | s | reviews/s | per core | × CLI | same label |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in result["systems"].items():
        lines.append(f"| {name} | {r['setup']} | {r['startup_s']:.1f} | {r['seconds']:.1f} | "
                     f"{r['reviews_per_s']:.0f} | {r['per_core']:.0f} | "
                     f"{r['ratio']:.2f} | {r['same_label_as_first']:.1%} |")
    return "\n".join(lines)


@click.command()
@click.option("--reviews", "n", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              envvar="EDGESENT_DATA", required=True, help="The shared review files.")
@click.option("--model", default=None, help="Bundle directory [default: the embedded model].")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--only", multiple=True, type=click.Choice(["cli", "ray", "spark"]),
              help="Run only these systems (repeatable) [default: all three].")
def main(n: int, data: Path, model: str | None, workers: int, only: tuple[str, ...]) -> None:
    """Score N reviews through the CLI, Ray Data and Spark; print JSON and a table."""
    work = Path(tempfile.mkdtemp(prefix="edgesent-scaleout-"))
    try:
        single, shards = write_reviews(data, n, work)
        runs = {"edgesent predict": lambda: run_cli(single, work, model, workers),
                "Ray Data": lambda: run_ray(shards, work, model, workers),
                "Spark": lambda: run_spark(shards, work, model, workers)}
        keys = {"cli": "edgesent predict", "ray": "Ray Data", "spark": "Spark"}
        chosen = [keys[o] for o in only] if only else list(runs)
        systems = {}
        for name in chosen:
            systems[name] = runs[name]()
            click.echo(f"{name}: {n / systems[name]['seconds']:.0f} reviews/s", err=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = systems.get("edgesent predict")
    for r in systems.values():
        r["reviews_per_s"] = n / r["seconds"]
        r["per_core"] = r["reviews_per_s"] / workers
        r["ratio"] = base["seconds"] / r["seconds"] if base else float("nan")
    first = next(iter(systems.values()))["labels"]
    for r in systems.values():  # int8 answers shift a little with their batch neighbours
        r["same_label_as_first"] = sum(map(str.__eq__, map(str, r["labels"]),
                                           map(str, first))) / n
        r["labels"] = {str(k): v for k, v in sorted(Counter(r["labels"]).items(), key=str)}
    result = {"reviews": n, "workers": workers, "cpus": os.cpu_count(), "systems": systems}
    print(json.dumps(result, indent=2))
    print(table(result))


if __name__ == "__main__":
    main()
