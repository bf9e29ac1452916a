"""Classify a large file of reviews with several processes, keeping the input order.

One review per line in, one JSON object per line out (line i of the output is the
answer for line i of the input). Run it:

    python examples/batch_job.py reviews.txt predictions.jsonl --workers 4
    python examples/batch_job.py reviews.txt predictions.jsonl --model path/to/bundle

Each worker process loads its own Classifier once, in the pool initializer, with one
ONNX Runtime thread, so N workers use N cores without oversubscribing them. The file is
read in chunks and at most two chunks per worker are in flight, so memory stays flat
whatever the file size.

This is the one-machine recipe that needs nothing but edgesent and the standard library.
For data that lives in Ray or Spark, or for more than one machine, see ray_classify.py
and spark_classify.py (edgesent.integrations).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import IO, Any

from edgesent import Classifier, EdgesentError

_classifier: Classifier | None = None


def init_worker(model: str | None) -> None:
    """Pool initializer: load the model once per worker process."""
    global _classifier
    _classifier = Classifier.load(model, threads=1)


def classify_chunk(texts: list[str]) -> list[dict[str, Any]]:
    """Runs in a worker: one chunk of texts to plain (picklable) dicts."""
    assert _classifier is not None, "init_worker did not run"
    return [pred.to_dict() for pred in _classifier.predict(texts)]


def read_chunks(lines: IO[str], size: int) -> Iterator[list[str]]:
    stripped = (line.rstrip("\r\n") for line in lines)
    while chunk := list(itertools.islice(stripped, size)):
        yield chunk


def run(src: IO[str], dst: IO[str], *, model: str | None, workers: int, chunk_size: int) -> int:
    """Classify every line of ``src`` into ``dst``; returns the number of lines."""
    done = 0
    context = multiprocessing.get_context("spawn")  # same behaviour on Linux, macOS, Windows
    with ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker,
                             initargs=(model,)) as pool:
        in_flight: deque[Future[list[dict[str, Any]]]] = deque()
        for chunk in read_chunks(src, chunk_size):
            in_flight.append(pool.submit(classify_chunk, chunk))
            if len(in_flight) >= 2 * workers:
                done += write(dst, in_flight.popleft().result())
        while in_flight:
            done += write(dst, in_flight.popleft().result())
    return done


def write(dst: IO[str], results: list[dict[str, Any]]) -> int:
    dst.writelines(json.dumps(result) + "\n" for result in results)
    return len(results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Multi-process batch classification.")
    parser.add_argument("input", help="text file, one review per line")
    parser.add_argument("output", help="JSON Lines file to write")
    parser.add_argument("--model", default=None, help="bundle directory (default: embedded)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk-size", type=int, default=256, help="lines per task")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.chunk_size < 1:
        parser.error("--workers and --chunk-size must be at least 1")
    try:  # fail fast, in one line, on a bad bundle rather than in every worker
        Classifier.load(args.model, threads=1)
    except EdgesentError as exc:
        raise SystemExit(f"error: {exc}") from None
    started = time.perf_counter()
    with open(args.input, encoding="utf-8") as src, \
            open(args.output, "w", encoding="utf-8") as dst:
        n = run(src, dst, model=args.model, workers=args.workers, chunk_size=args.chunk_size)
    seconds = time.perf_counter() - started
    print(f"classified {n} lines with {args.workers} workers in {seconds:.1f} s "
          f"({n / max(seconds, 1e-9):.0f} lines/s) -> {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
