"""Write a run's results: ``results.json``, ``results.md`` and two PNG plots."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DISPLAY = {"fdu_mtl_test": "FDU-MTL test", "fdu_mtl_test:products": "FDU-MTL 14 products",
           "marc_en_val": "MARC-en val"}
MB = 1e6


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def figures(results: dict[str, Any], name: str) -> dict[str, float | None]:
    """The main table's raw figures of one system (None where not measured)."""
    s = results["systems"][name]
    typical = str(results["config"]["typical_length"])
    one = str(min(results["config"]["threads"]))
    timing = s.get("timing", {}).get(one, {})
    size = s.get("size", {})
    rss = (s.get("eval") or {}).get("peak_rss_kb")
    return {
        "latency_ms": _num(timing.get(f"latency@{typical}", {}).get("p50_ms")),
        "throughput": _num(timing.get("throughput", {}).get("reviews_per_s")),
        "model_mb": _num(size.get("model_bytes", 0) / MB) if size.get("model_bytes") else None,
        "env_mb": _num(size.get("environment_bytes", 0) / MB) if size.get(
            "environment_bytes") else None,
        "rss_mb": _num(rss / 1024) if rss else None,
        "cold_s": _num((s.get("cold_start") or {}).get("median_s")),
    }


def _ratio(value: float | None, ref: float | None) -> str:
    if value is None or ref is None or ref == 0:
        return "–"
    r = value / ref
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def accuracy_columns(results: dict[str, Any]) -> list[str]:
    """Groups shown in the main table: each test set, and its products-only part."""
    groups: list[str] = []
    for system in results["systems"].values():
        for group in (system.get("accuracy") or {}):
            shown = group.count(":") == 0 or group.endswith(":products")
            if shown and group not in groups:
                groups.append(group)
    return sorted(groups, key=lambda g: (g.split(":")[0], g))


def _acc_cell(system: dict[str, Any], group: str) -> str:
    if not system.get("has_accuracy", True):
        return "n/a (random weights)"
    acc = (system.get("accuracy") or {}).get(group)
    if not acc:
        return "–"
    mark = " †" if system.get("eval_cap") else ""
    return f"{100 * acc['accuracy']:.1f} / {100 * acc['macro_f1']:.1f}{mark}"


def main_table(results: dict[str, Any]) -> list[str]:
    ref_name = results["reference"]
    ref = figures(results, ref_name) if ref_name in results["systems"] else {}
    groups = accuracy_columns(results)
    typical = results["config"]["typical_length"]
    one = min(results["config"]["threads"])
    head = ["system", *(f"{DISPLAY.get(g, g)} acc / F1 (%)" for g in groups),
            f"p50 latency @{typical} tok, {one} thr (ms)", "× ref",
            f"reviews/s @batch 32, {one} thr", "× ref", "model (MB)", "× ref",
            "environment (MB)", "× ref", "peak RSS (MB)", "× ref", "cold start (s)", "× ref"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, system in results["systems"].items():
        f = figures(results, name)
        label = f"**{name}**" if name == "edgesent" else name
        if name == ref_name:
            label += " (ref)"
        row = [label, *(_acc_cell(system, g) for g in groups)]
        for key in ("latency_ms", "throughput", "model_mb", "env_mb", "rss_mb", "cold_s"):
            value = f[key]
            digits = 2 if key in ("latency_ms", "cold_s") or (value or 10) < 10 else 1
            row += [_fmt(value, digits), _ratio(value, ref.get(key))]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def detail_tables(results: dict[str, Any]) -> list[str]:
    cfg = results["config"]
    lines = ["", "### Latency at batch 1 (ms, p50 / p95) and throughput at batch 32", ""]
    head = ["system", "threads"] + [f"{n} tok" for n in cfg["lengths"]] + ["reviews/s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, system in results["systems"].items():
        for threads, cells in sorted(system.get("timing", {}).items(), key=lambda kv: int(kv[0])):
            row = [name, threads]
            for n in cfg["lengths"]:
                c = cells.get(f"latency@{n}", {})
                row.append(f"{_fmt(c.get('p50_ms'), 2)} / {_fmt(c.get('p95_ms'), 2)}"
                           if c.get("n") else "–")
            row.append(_fmt(cells.get("throughput", {}).get("reviews_per_s")))
            lines.append("| " + " | ".join(row) + " |")
    domains = sorted({g for s in results["systems"].values() for g in (s.get("accuracy") or {})
                      if g.count(":") == 1 and not g.endswith(":products")})
    sampled = {n: max(g["n"] for g in s["accuracy"].values())
               for n, s in results["systems"].items() if s.get("accuracy")}
    names = [n for n, rows in sampled.items() if rows == max(sampled.values(), default=0)]
    if domains and names:
        left_out = [n for n in sampled if n not in names]
        lines += ["", "### Accuracy per domain (%)", ""]
        if left_out:
            note = f"Systems evaluated on a smaller sample are left out: {', '.join(left_out)}."
            lines += [note, ""]
        lines += ["| domain | n | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
        for group in domains:
            ns = [results["systems"][n]["accuracy"].get(group, {}).get("n") for n in names]
            accs = [results["systems"][n]["accuracy"].get(group, {}).get("accuracy")
                    for n in names]
            lines.append(f"| {group} | {max((x for x in ns if x), default=0)} | " + " | ".join(
                f"{100 * a:.1f}" if a is not None else "–" for a in accs) + " |")
    subset = results.get("subset_accuracy") or {}
    if subset:
        lines += ["", f"### Accuracy on the capped subset ({subset['rows_per_set']} rows per set, "
                  "the † rows), every system (%)", "",
                  "| system | " + " | ".join(DISPLAY.get(g, g) for g in subset["groups"]) + " |",
                  "|" + "---|" * (len(subset["groups"]) + 1)]
        for name, accs in subset["systems"].items():
            lines.append(f"| {name} | " + " | ".join(
                f"{100 * accs[g]:.1f}" if g in accs else "–" for g in subset["groups"]) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    cfg, machine = results["config"], results["machine"]
    isa = ", ".join(machine.get("instruction_sets") or []) or "unknown"
    lines = [f"# edgesent benchmark ({results['mode']} run, {machine['date']})", "",
             f"Machine: {machine.get('cpu')} ({isa}); {machine.get('cpus_usable')} usable "
             f"CPUs, threads measured {cfg['threads']}; Python {machine.get('python')}, "
             f"onnxruntime {machine['versions'].get('onnxruntime')}, "
             f"torch {machine['versions'].get('torch')}, "
             f"transformers {machine['versions'].get('transformers')}. "
             f"Load average at start {machine.get('load_average_start')}, "
             f"at end {results.get('load_average_end')}. Wall time "
             f"{results['duration_s'] / 60:.1f} min.", ""]
    lines += main_table(results)
    lines += ["", "Ratios are this system's figure divided by the reference's "
              f"({results['reference']}: a randomly initialised model of "
              "distilbert-base-uncased's configuration run through the transformers pipeline, "
              "measured for speed and size only; latency does not depend on the weights' "
              "values, so it shows no accuracy). Accuracy: percent accuracy / macro-F1."]
    caps: dict[int, list[str]] = {}
    for name, system in results["systems"].items():
        if system.get("eval_cap") and system.get("has_accuracy", True):
            caps.setdefault(system["eval_cap"], []).append(name)
    if caps:
        lines.append("† evaluated on a fixed random sample of at most " + "; ".join(
            f"{cap} rows per test set ({', '.join(names)})" for cap, names in sorted(
                caps.items(), reverse=True)) + ". "
            + ("The capped-subset table below compares every system on the same rows."
               if len(caps) > 1 or results.get("subset_accuracy") else ""))
    counts: dict[int, list[str]] = {}
    for name, system in results["systems"].items():
        if (system.get("eval") or {}).get("n"):
            counts.setdefault(system["eval"]["n"], []).append(name)
    if counts:
        lines.append("Peak RSS: a fresh process that loaded the model and classified " + "; ".join(
            f"{n:,} reviews ({', '.join(names)})" for n, names in sorted(
                counts.items(), reverse=True)) + ".")
    for name, system in results["systems"].items():
        for note in system.get("notes", []):
            lines.append(f"- {name}: {note}")
    for name, reason in results.get("skipped", {}).items():
        lines.append(f"- {name}: not measured: {reason}")
    if results.get("data_note"):
        lines.append(f"- accuracy: {results['data_note']}")
    lines += detail_tables(results)
    threads = cfg["eval_threads"]
    lines += ["", f"Peak RSS is the process's VmHWM at batch 32 on {threads} "
              f"thread{'s' if threads > 1 else ''}. Environment: installed size of the system's "
              "root distributions and everything they require (`results.json` lists them, "
              "and what the process imported). Cold start: median wall time from launch to "
              "the first printed prediction (the scripts are under the work directory)."]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """``accuracy_vs_latency.png`` and ``latency_vs_length.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")

    paths = []
    groups = accuracy_columns(results)
    main_group = groups[0] if groups else None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, system in results["systems"].items():
        latency = figures(results, name)["latency_ms"]
        acc = (system.get("accuracy") or {}).get(main_group or "", {}).get("accuracy")
        if latency is None:
            continue
        if name == results["reference"]:
            ax.axvline(latency, linestyle="--", color="grey")
            ax.annotate(f"{name} (speed only)", (latency, 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=8, color="grey")
        elif acc is not None:
            ax.scatter([latency], [100 * acc], s=40)
            ax.annotate(name, (latency, 100 * acc), textcoords="offset points", xytext=(5, 4),
                        fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel(f"p50 latency, batch 1, {results['config']['typical_length']} tokens, "
                  f"{min(results['config']['threads'])} thread (ms, log)")
    ax.set_ylabel(f"accuracy on {DISPLAY.get(main_group or '', main_group)} (%)")
    ax.set_title("Accuracy against latency")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    paths.append(out_dir / "accuracy_vs_latency.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (name, system) in enumerate(results["systems"].items()):
        color = f"C{index % 10}"
        for threads, cells in sorted(system.get("timing", {}).items()):
            xs = [n for n in results["config"]["lengths"] if cells.get(f"latency@{n}", {}).get("n")]
            ys = [cells[f"latency@{n}"]["p50_ms"] for n in xs]
            if xs:
                style = "-" if int(threads) == min(results["config"]["threads"]) else "--"
                ax.plot(xs, ys, style, marker="o", color=color,
                        label=f"{name}, {threads} thr")
    ax.set_xscale("log", base=2)
    ax.set_xticks(results["config"]["lengths"])
    ax.xaxis.set_major_formatter(plain)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(plain)
    ax.set_xlabel("review length (tokens)")
    ax.set_ylabel("p50 latency, batch 1 (ms, log)")
    ax.set_title("Latency against review length")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    paths.append(out_dir / "latency_vs_length.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def write_all(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write the JSON, the Markdown and the plots; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=2, default=str) + "\n", "utf-8")
    paths["markdown"].write_text(markdown(results), "utf-8")
    accuracy_png, length_png = plot(results, out_dir)
    paths["accuracy_plot"], paths["latency_plot"] = accuracy_png, length_png
    for kind, path in paths.items():
        logger.info("wrote %s: %s", kind, path)
    return paths
