"""Score a CSV of reviews with Spark: a ``sentiment`` column on any DataFrame.

    python examples/spark_classify.py                        # 2,000 generated reviews
    python examples/spark_classify.py reviews.csv --column review --output scored/
    python examples/spark_classify.py reviews.csv --model ./my-bundle --ship
    python examples/spark_classify.py reviews.csv --master spark://host:7077

Needs ``pip install "edgesent[spark]"`` and Java 17+. It runs ``local[--workers]`` unless
``--master`` names a cluster (whose executors need edgesent installed). ``--output`` writes
Parquet files (every input column plus label, score, p_<label>, error) into a new
directory. ``--ship`` sends the bundle to the executors with ``SparkContext.addFile``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

from edgesent import EdgesentError
from edgesent.integrations.spark import sentiment

PHRASES = ["Broke after a week", "Lovely fabric, fits perfectly", "Arrived late and scratched",
           "Great value for the price", "Battery lasts all day", "Would not buy again"]


def generated(n: int) -> list[tuple[int, str]]:
    rng = random.Random(0)
    return [(i, f"{rng.choice(PHRASES)}. {rng.choice(PHRASES).lower()}.") for i in range(n)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Classify reviews with Spark.")
    parser.add_argument("input", nargs="?", help="CSV file (default: generated reviews)")
    parser.add_argument("--column", default="review", help="column holding the review")
    parser.add_argument("--model", default=None, help="bundle directory (default: embedded)")
    parser.add_argument("--ship", action="store_true", help="send the bundle with the job")
    parser.add_argument("--output", type=Path, help="new directory for Parquet output")
    parser.add_argument("--workers", type=int, default=2, help="local task slots")
    parser.add_argument("--master", help="Spark master URL (default: local[--workers])")
    parser.add_argument("--rows", type=int, default=2000, help="generated reviews")
    args = parser.parse_args(argv)
    if args.output is not None and args.output.exists():
        parser.error(f"--output {args.output} already exists; name a new directory")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need edgesent too
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.appName("edgesent").config("spark.ui.enabled", "false")
             .master(args.master or f"local[{args.workers}]").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    reviews = (spark.read.csv(args.input, header=True, multiLine=True, escape='"')
               if args.input else spark.createDataFrame(generated(args.rows), ["id", "review"]))
    started = time.perf_counter()
    try:
        if args.column not in reviews.columns:
            raise ValueError(f"{args.input}: no column {args.column!r} "
                             f"(columns: {', '.join(reviews.columns)})")
        scored = reviews.withColumn("s", sentiment(args.column, args.model, ship=args.ship))
        scored = scored.select(*reviews.columns, "s.*").cache()
        counts = dict(scored.groupBy("label").count().collect())
    except (EdgesentError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    seconds = time.perf_counter() - started
    if args.output is not None:
        scored.write.parquet(str(args.output))
    summary = ", ".join(f"{label or 'errors'} {n}" for label, n in sorted(
        counts.items(), key=lambda item: str(item[0])))
    print(f"scored {sum(counts.values())} reviews on {spark.sparkContext.master} in "
          f"{seconds:.1f} s: {summary}", file=sys.stderr)
    spark.stop()


if __name__ == "__main__":
    main()
