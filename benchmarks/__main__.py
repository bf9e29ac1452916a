"""``python -m benchmarks run [--quick] ...``: run the benchmark and write its report.

Examples::

    python -m benchmarks run --quick
    python -m benchmarks run --build-dir runs/build-L3 --data ../shared/data/reviews
    python -m benchmarks run --quick --systems edgesent,vader --threads 1
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmarks.config import SYSTEMS, RunConfig

logger = logging.getLogger("benchmarks")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown systems {', '.join(unknown)}; choose among {', '.join(SYSTEMS)}")
    return names


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m benchmarks",
                                  description="Benchmarks of edgesent against the systems "
                                  "people would use instead.")
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmark and write results.json, results.md "
                         "and PNG plots")
    run.add_argument("--quick", action="store_true",
                     help="small samples and short timings: a few minutes (CI uses it)")
    run.add_argument("--bundle", type=Path, help="edgesent bundle (default: the embedded "
                     "edgesent.models.DEFAULT_MODEL)")
    run.add_argument("--build-dir", type=Path, help="output of `edgesent build` (teacher/best, "
                     "student/best, student-small, work/) for the comparison systems")
    run.add_argument("--data", type=Path, help="review data directory (default: $EDGESENT_DATA)")
    run.add_argument("--sources", type=Path, help="sources JSON file as `edgesent build "
                     "--sources` reads (default: examples/default_model/sources.json)")
    run.add_argument("--out", type=Path, help="output directory (default: "
                     "benchmarks/results/quick or benchmarks/results/full)")
    run.add_argument("--work-dir", type=Path, help="cache of exports and scratch files "
                     "(default: BUILD_DIR/bench, else runs/bench-work)")
    run.add_argument("--systems", type=_names, help="comma-separated subset of: "
                     + ", ".join(SYSTEMS))
    run.add_argument("--threads", type=_ints, help="thread settings to time (default: 1,2)")
    run.add_argument("--lengths", type=_ints, help="review lengths in tokens (default: "
                     "16,64,256)")
    run.add_argument("--max-eval", type=int, help="test rows per set for every system "
                     "(default: all; quick: 200)")
    run.add_argument("--max-eval-slow", type=int, help="test rows per set for the PyTorch and "
                     "Optimum systems (default: 1000; quick: 50)")
    run.add_argument("--rss-reviews", type=int, help="reviews the peak-RSS process classifies "
                     "(default: 10000; quick: 300)")
    run.add_argument("--ref-reviews", type=int, help="reviews the reference classifies for "
                     "its peak RSS (it has no accuracy to measure) (default: 300; quick: 100)")
    run.add_argument("--reference-config", choices=("base", "tiny"), help="configuration of "
                     "the random DistilBERT reference (tiny: for tests) (default: base)")
    run.add_argument("--cell-seconds", type=float, help="time spent on each timing cell")
    run.add_argument("--rounds", type=int, help="interleaved timing rounds")
    run.add_argument("--cold-runs", type=int, help="measured cold starts per system")
    run.add_argument("--seed", type=int, help="seed of the capped samples and timing texts")
    run.add_argument("--dry-run", action="store_true", help="prepare the systems, print the "
                     "expected duration and stop")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, datefmt="%H:%M:%S",
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("benchmarks", "edgesent_export"):  # the libraries' INFO chatter stays quiet
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    import os

    data = args.data or (Path(os.environ["EDGESENT_DATA"]) if os.environ.get("EDGESENT_DATA")
                         else None)
    cfg = RunConfig.for_mode(
        args.quick, bundle=args.bundle, build_dir=args.build_dir, data_dir=data,
        sources=args.sources, out_dir=args.out, work_dir=args.work_dir, systems=args.systems,
        threads=args.threads, lengths=args.lengths, max_eval=args.max_eval,
        max_eval_slow=args.max_eval_slow, rss_reviews=args.rss_reviews,
        ref_reviews=args.ref_reviews,
        reference_config=args.reference_config, cell_seconds=args.cell_seconds,
        rounds=args.rounds, cold_runs=args.cold_runs, seed=args.seed, dry_run=args.dry_run)
    try:
        cfg.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from benchmarks.harness import run

    try:
        results = run(cfg)
    except (RuntimeError, OSError) as exc:
        logger.error("%s", exc)
        return 1
    if cfg.dry_run:
        return 0
    print(f"results: {Path(cfg.out_dir) / 'results.md'}")
    failed = [n for n, s in results["systems"].items() if s.get("errors")]
    if failed:
        logger.error("measurements failed for %s (see results.json, `errors`)", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
