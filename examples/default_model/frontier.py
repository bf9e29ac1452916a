"""The student-shape frontier: int8 validation accuracy against one review's latency.

    python examples/default_model/frontier.py OUT_PREFIX BUNDLE... [DATA_DIR]

Each BUNDLE is a bundle built from ``sources-v2.json`` (``build-v2.sh student``), so all
of them are scored on the one validation split those builds carve (the build's val
fraction and seed): the split shapes are chosen on, never a test set. Latency is the p50 of one
64-token review on one thread, every bundle and the shipped model taking turns in this
process, as a ratio to the shipped model. Writes ``OUT_PREFIX.json`` and
``OUT_PREFIX.png``: the points, the frontier through those no other point beats on both
axes, the 1.35x latency budget, and the most accurate bundle within it and 15 MB.
"""

import json
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
from timing import alternating_p50_ms

from edgesent import Classifier, load_bundle
from edgesent.bundle import MANIFEST_NAME
from edgesent.models import DEFAULT_MODEL
from edgesent.runner import Runner
from edgesent_export.build import BuildPlan
from edgesent_export.sources import load_sources

BUDGET, SIZE_MB, TOKENS = 1.35, 15.0, 64


def label(path: Path) -> str:
    """``4 x 768, 25,741 pieces, reads 256`` from the bundle's manifest."""
    manifest = load_bundle(path).manifest
    student = manifest["provenance"]["student"]
    pieces = (manifest["provenance"].get("vocabulary") or {}).get("new_vocab_size")
    reads = manifest["encoding"]["max_length"]
    vocab = f", {pieces:,} pieces" if pieces else ""
    return f"{student['layers']} x {student['ffn'] or 1536}{vocab}, reads {reads}"


def beats(q: dict, p: dict) -> bool:
    """Whether ``q`` is at least as fast and as accurate as ``p``, and better on one."""
    faster, better = q["x_shipped"] <= p["x_shipped"], q["val_accuracy"] >= p["val_accuracy"]
    return faster and better and (q["x_shipped"], q["val_accuracy"]) != (
        p["x_shipped"], p["val_accuracy"])


def frontier(points: list[dict]) -> list[str]:
    """Names of the points no other point beats.

    >>> frontier([{"name": "a", "x_shipped": 1.0, "val_accuracy": 0.93},
    ...           {"name": "b", "x_shipped": 1.2, "val_accuracy": 0.92},
    ...           {"name": "c", "x_shipped": 1.3, "val_accuracy": 0.94}])
    ['a', 'c']
    """
    return [p["name"] for p in points if not any(beats(q, p) for q in points)]


def main(argv: list[str]) -> None:
    data_dir = os.environ.get("EDGESENT_DATA", "../shared/data/reviews")
    if argv and Path(argv[-1]).is_dir() and not (Path(argv[-1]) / MANIFEST_NAME).exists():
        data_dir = argv.pop()
    out, bundles = Path(argv[0]), [Path(b) for b in argv[1:]]
    here = Path(__file__).resolve().parent
    val = load_sources(here / "sources-v2.json", data_dir=data_dir).format(
        val_fraction=BuildPlan.val_fraction, seed=BuildPlan.seed).val  # the build's split
    points = []
    for path in bundles:
        classifier = Classifier.load(path)
        labels = list(classifier.labels)
        logits = classifier.predict_logits([r.text for r in val], batch_size=32)
        truth = np.array([labels.index(r.label) for r in val])
        points.append({"name": f"{path.parent.name}/{path.name}", "shape": label(path),
                       "val_accuracy": round(float((logits.argmax(1) == truth).mean()), 4),
                       "size_mb": round(load_bundle(path).size_bytes / 1e6, 2)})
        print(points[-1], file=sys.stderr, flush=True)

    ids = np.array([[101] + [2000 + i for i in range(TOKENS - 2)] + [102]])
    mask = np.ones_like(ids)
    runners = {"shipped": Runner.from_bundle(DEFAULT_MODEL, threads=1)}
    runners |= {p["name"]: Runner.from_bundle(path, threads=1)
                for p, path in zip(points, bundles, strict=True)}
    if len(runners) != len(points) + 1:
        raise SystemExit("give each bundle once")
    p50 = alternating_p50_ms({name: partial(r.run, ids, mask) for name, r in runners.items()})
    for p in points:
        p["p50_ms"] = round(p50[p["name"]], 3)
        p["x_shipped"] = round(p50[p["name"]] / p50["shipped"], 3)
    best = frontier(points)
    within = [p for p in points if p["x_shipped"] <= BUDGET and p["size_mb"] <= SIZE_MB]
    chosen = max(within, key=lambda p: p["val_accuracy"])["name"] if within else None
    result = {"set": f"validation of sources-v2.json ({len(val)} rows)", "tokens": TOKENS,
              "threads": 1, "shipped_p50_ms": round(p50["shipped"], 3), "budget_x": BUDGET,
              "budget_mb": SIZE_MB,
              "points": points, "frontier": best, "chosen": chosen}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    plot(result, out.with_suffix(".png"))
    print(json.dumps(result, indent=2))


def plot(result: dict, path: Path) -> None:
    """The points numbered, listed under the axes, the frontier joined, the budget marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    fig, ax = plt.subplots(figsize=(8, 4.2 + 0.22 * len(points)))
    on = sorted((p for p in points if p["name"] in result["frontier"]),
                key=lambda p: p["x_shipped"])
    ax.plot([p["x_shipped"] for p in on], [p["val_accuracy"] for p in on], "-", color="C0",
            label="frontier")
    legend = []
    for number, p in enumerate(points, 1):
        ax.plot(p["x_shipped"], p["val_accuracy"], "o",
                color="C0" if p["name"] in result["frontier"] else "C7")
        ax.annotate(str(number), (p["x_shipped"], p["val_accuracy"]),
                    textcoords="offset points", xytext=(5, 3 + 6 * (number % 2)), fontsize=8)
        legend.append(f"{number}. {p['name']}: {p.get('shape', '')}, {p['size_mb']} MB, "
                      f"{p['val_accuracy']:.4f}, {p['x_shipped']:.3f}x")
    ax.axvline(1.0, color="C2", linestyle=":", label="shipped model's latency")
    ax.axvline(result["budget_x"], color="C3", linestyle="--",
               label=f"latency budget {result['budget_x']}x")
    ax.set_xlabel(f"latency, one {result['tokens']}-token review, 1 thread (x shipped, "
                  f"{result['shipped_p50_ms']} ms)")
    ax.set_ylabel("int8 validation accuracy")
    ax.set_title(result["set"], fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.text(0.01, 0.01, "\n".join(legend), fontsize=7, family="monospace", va="bottom")
    fig.tight_layout(rect=(0, 0.03 + 0.033 * len(points), 1, 1))
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
