"""Benchmark harness of edgesent: accuracy, latency, throughput, size, memory, cold start.

One command measures edgesent and the systems people would use instead, on the same
machine in the same run, and writes ``results.json``, ``results.md`` and two PNG plots::

    python -m benchmarks run --build-dir runs/build-L3 --data ../shared/data/reviews
    python -m benchmarks run --quick            # a few minutes; CI runs it on tiny models

See ``benchmarks/README.md`` for what each figure means and how it is measured.
"""

RESULT_SCHEMA = 1
