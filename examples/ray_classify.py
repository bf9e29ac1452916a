"""Score a CSV of reviews with Ray Data: one edgesent actor per CPU, on one machine or many.

    python examples/ray_classify.py                          # 2,000 generated reviews
    python examples/ray_classify.py reviews.csv --column review --output scored/
    python examples/ray_classify.py reviews.csv --address auto --model /mnt/models/my-bundle
    python examples/ray_classify.py reviews.csv --model ./my-bundle --ship

Needs ``pip install "edgesent[ray]"``. Without ``--address`` it starts a local Ray cluster
for ``--workers`` actors; with ``--address auto`` it joins a running cluster. ``--output``
writes Parquet files (every input column plus label, score, p_<label>, error) into a new
directory. ``--ship`` sends the bundle with the job instead of reading it on each node.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from edgesent import EdgesentError
from edgesent.integrations.ray import classify

PHRASES = ["Broke after a week", "Lovely fabric, fits perfectly", "Arrived late and scratched",
           "Great value for the price", "Battery lasts all day", "Would not buy again"]


def generated(n: int) -> list[dict]:
    rng = random.Random(0)
    return [{"id": i, "review": f"{rng.choice(PHRASES)}. {rng.choice(PHRASES).lower()}."}
            for i in range(n)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Classify reviews with Ray Data.")
    parser.add_argument("input", nargs="?", help="CSV file (default: generated reviews)")
    parser.add_argument("--column", default="review", help="column holding the review")
    parser.add_argument("--model", default=None, help="bundle directory (default: embedded)")
    parser.add_argument("--ship", action="store_true", help="send the bundle with the job")
    parser.add_argument("--output", type=Path, help="new directory for Parquet output")
    parser.add_argument("--workers", type=int, default=2, help="actors (and local CPUs)")
    parser.add_argument("--rows", type=int, default=2000, help="generated reviews")
    parser.add_argument("--address", help="a running cluster ('auto'); default: start one")
    args = parser.parse_args(argv)
    if args.output is not None and args.output.exists():
        parser.error(f"--output {args.output} already exists; name a new directory")
    import ray

    if args.address:
        ray.init(address=args.address)
    else:
        # one CPU more than actors: the read and write tasks need one the actors do not hold
        ray.init(num_cpus=args.workers + 1, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    reviews = (ray.data.read_csv(args.input) if args.input
               else ray.data.from_items(generated(args.rows)))
    started = time.perf_counter()
    try:
        if args.column not in reviews.columns():
            raise ValueError(f"{args.input}: no column {args.column!r} "
                             f"(columns: {', '.join(reviews.columns())})")
        scored = classify(reviews, args.column, model=args.model, ship=args.ship,
                          concurrency=args.workers).materialize()
    except (EdgesentError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    seconds = time.perf_counter() - started
    counts = {row["label"]: row["count()"] for row in scored.groupby("label").count().take_all()}
    if args.output is not None:
        scored.write_parquet(str(args.output))
    summary = ", ".join(f"{label or 'errors'} {n}" for label, n in sorted(
        counts.items(), key=lambda item: str(item[0])))
    print(f"scored {scored.count()} reviews with {args.workers} actors in {seconds:.1f} s: "
          f"{summary}", file=sys.stderr)
    ray.shutdown()


if __name__ == "__main__":
    main()
