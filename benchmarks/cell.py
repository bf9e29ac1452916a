"""One measurement in a fresh process: ``python -m benchmarks.cell JOB.json``.

A job names a system, its spec, its thread count and what to measure (``eval``,
``lengths``, ``batch``, ``independence``; see :func:`run`); one JSON
object goes to stdout, library chatter to stderr. ``cold SPEC.json`` loads the system,
prints one prediction and exits: the cold start a user sees.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

COLD_TEXT = "The battery died after two days and support never answered my emails."


def proc_kb(key: str, pid: int | str = "self") -> int | None:
    """A ``/proc/PID/status`` figure in KiB (``VmHWM``: peak RSS, ``VmRSS``: now)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in lines if line.startswith(key + ":")), None)


def environment(modules: set[str]) -> dict[str, Any]:
    """Installed bytes of the distributions these modules come from (the files their
    RECORD lists); a source checkout (editable install): its package folder without
    ``models/`` (bundles count as model size)."""
    tops = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {"benchmarks"}
    owners, sizes = md.packages_distributions(), {}
    for top in sorted(tops):
        for name in set(owners.get(top, [])) - set(sizes):
            sizes[name] = sum(p.stat().st_size for f in md.distribution(name).files or []
                              if (p := Path(f.locate())).is_file())
        path = Path(getattr(sys.modules.get(top), "__file__", None) or ".")
        if top not in owners and path.name == "__init__.py":
            sizes[top] = sum(p.stat().st_size for p in path.parent.rglob("*") if p.is_file()
                             and not {"models", "__pycache__"} & set(p.parts))
    return {"bytes": sum(sizes.values()), "distributions": sizes}


def timed(call: Any, seconds: float, low: int, high: int) -> list[float]:
    """Durations of repeated ``call()`` for about ``seconds`` (``low`` to ``high`` calls)."""
    times: list[float] = []
    while len(times) < low or (sum(times) < seconds and len(times) < high):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def independence(model: Any, texts: list[str], seed: int) -> dict[str, Any]:
    """Reviews whose label at batch 8 or 32, in input or shuffled order, differs from
    the label alone (batch 1), the largest probability change, and the seconds of the
    in-order batch-32 pass (the runner alone: tokenize, sort, model)."""
    import numpy as np

    alone, rng, out = model.probs(texts, 1), random.Random(seed), {"n": len(texts)}
    flipped, worst = np.zeros(len(texts), dtype=bool), 0.0
    for batch_size, shuffle in ((8, False), (32, False), (8, True), (32, True), (32, True)):
        order = rng.sample(range(len(texts)), len(texts)) if shuffle else list(range(len(texts)))
        probs, start = np.empty_like(alone), time.perf_counter()
        probs[order] = model.probs([texts[i] for i in order], batch_size)
        if batch_size == 32:
            out.setdefault("runner_s", time.perf_counter() - start)
        flipped |= probs.argmax(axis=1) != alone.argmax(axis=1)
        worst = max(worst, float(np.nanmax(np.abs(probs - alone))))
    return {**out, "label_flips": int(flipped.sum()), "max_prob_diff": worst}


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Labels of the ``eval`` texts (seconds, then peak RSS and the size of what was
    imported); batch-1 latency per ``lengths`` and batch-32 throughput on ``batch`` for
    ``cell_s`` seconds each; :func:`independence`."""
    from benchmarks.systems import SYSTEMS

    before, start = set(sys.modules), time.perf_counter()
    model = SYSTEMS[job["system"]].load(job["spec"], int(job["threads"]))
    out: dict[str, Any] = {"load_s": time.perf_counter() - start, "latency": {}}
    model.predict([COLD_TEXT], 1)
    out["environment"] = environment(set(sys.modules) - before)
    lengths = {int(n): texts for n, texts in job.get("lengths", {}).items()}
    out["tokens"] = {str(n): model.tokens(texts[0]) for n, texts in lengths.items()}
    if "eval" in job:
        start = time.perf_counter()
        out["labels"] = model.predict(job["eval"], 32)
        out.update(eval_s=time.perf_counter() - start, peak_rss_kb=proc_kb("VmHWM"))
    if job.get("independence") and model.probs:
        out["independence"] = {"threads": job["threads"], **independence(
            model, job["independence"], job.get("seed", 13))}
    if cell_s := job.get("cell_s"):
        for n, texts in lengths.items():
            for text in texts[:2]:  # warm-up
                model.predict([text], 1)
            cycle = iter(texts * 200)
            out["latency"][str(n)] = timed(lambda c=cycle: model.predict([next(c)], 1), cell_s,
                                           3, 200)
        model.predict(job["batch"], 32)
        out["throughput"] = timed(lambda: model.predict(job["batch"], 32), cell_s, 2, 50)
    return out


def main(argv: list[str]) -> int:
    from benchmarks.systems import SYSTEMS

    if argv[:1] == ["cold"]:
        spec = json.loads(Path(argv[1]).read_text("utf-8"))
        print(SYSTEMS[spec["system"]].load(spec, len(os.sched_getaffinity(0))).predict(
            [COLD_TEXT], 1)[0], flush=True)
        return 0
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library chatter goes to stderr
    replies.write(json.dumps(run(json.loads(Path(argv[0]).read_text("utf-8")))) + "\n")
    replies.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
