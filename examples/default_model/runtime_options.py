"""Throughput and memory of the runner's settings on real reviews, one process each.

    python examples/default_model/runtime_options.py [DATA_DIR]

3,000 shuffled FDU-MTL test reviews through ``Runner.logits`` (batch 32) of the embedded
model, in a fresh process per setting: ONNX Runtime's arena on or off, the token budget,
the threads. Prints reviews per second, peak RSS and RSS after the run.
"""

import gzip
import json
import os
import random
import resource
import subprocess
import sys
import time

SETTINGS = [  # (arena, token budget, threads)
    (False, 1024, 1), (False, 512, 1), (True, 1024, 1), (True, 512, 1), (True, 256, 1),
    (True, 512, 2),
]


def measure(data_dir: str, arena: bool, budget: int, threads: int) -> dict:
    from edgesent.models import DEFAULT_MODEL
    from edgesent.runner import Runner

    with gzip.open(os.path.join(data_dir, "fdu_mtl.jsonl.gz"), "rt", encoding="utf-8") as fh:
        texts = [row["text"] for row in map(json.loads, fh) if row["split"] == "test"]
    random.Random(0).shuffle(texts)
    texts = texts[:3000]
    runner = Runner.from_bundle(DEFAULT_MODEL, threads=threads, token_budget=budget,
                                memory_arena=arena)
    runner.logits(texts[:50])  # warm-up
    start = time.perf_counter()
    runner.logits(texts, batch_size=32)
    seconds = time.perf_counter() - start
    with open("/proc/self/status") as status:
        rss_kb = int(status.read().split("VmRSS:")[1].split()[0])
    return {"arena": arena, "token_budget": budget, "threads": threads,
            "reviews_per_s": round(len(texts) / seconds, 1),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "rss_after_mb": rss_kb // 1024}


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        _, _, data_dir, arena, budget, threads = sys.argv
        print(json.dumps(measure(data_dir, arena == "1", int(budget), int(threads))))
        return
    data_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "EDGESENT_DATA", "../shared/data/reviews")
    print("| arena | token budget | threads | reviews/s | peak RSS MB | RSS after MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for arena, budget, threads in SETTINGS:
        out = subprocess.run([sys.executable, __file__, "--one", data_dir, str(int(arena)),
                              str(budget), str(threads)], check=True, capture_output=True,
                             text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print(f"| {'on' if arena else 'off'} | {budget} | {threads} | {row['reviews_per_s']} "
              f"| {row['peak_rss_mb']} | {row['rss_after_mb']} |", flush=True)


if __name__ == "__main__":
    main()
