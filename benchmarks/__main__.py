"""``python -m benchmarks run``: edgesent beside the systems people would run instead.

Each measurement runs in a fresh ``benchmarks.cell`` process, one per system × thread
setting × round, the systems rotated each round so that drift hits all alike; writes
results.json, results.md and an accuracy-against-latency plot. ``serve`` and ``scaleout``:
the load tests in benchmarks/deploy.py. What each figure means: benchmarks/README.md.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import logging
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.cell import COLD_TEXT
from benchmarks.deploy import generated_reviews, scaleout, serve
from benchmarks.systems import LABELS, REFERENCE, SYSTEMS, Context, Skip, minilm_dir
from edgesent.output import markdown_table as table

log = logging.getLogger("benchmarks")
ROOT = Path(__file__).resolve().parent.parent
MODES = {"full": {"max_eval": None, "max_eval_slow": 1000, "rss_reviews": 10_000,
                  "independence": 5000, "rounds": 3, "cell_seconds": 2.0, "cold_runs": 3},
         "quick": {"max_eval": 200, "max_eval_slow": 50, "rss_reviews": 300,
                   "independence": 64, "rounds": 1, "cell_seconds": 0.2, "cold_runs": 1}}
LENGTHS, TYPICAL, MOVIES = [16, 64, 256], 64, {"imdb", "MR"}
VNNI_MACS = 64  # int8 multiply-accumulates per cycle per core: one 512-bit VPDPBUSD
DISPLAY = {"fdu_mtl_test": "FDU-MTL test", "fdu_mtl_test:products": "FDU-MTL 14 products",
           "marc_en_val": "MARC-en val", "marc_en_val_text_only": "MARC-en val, text only"}
Test = tuple[list[str], list[str], list[Any]]  # texts, labels, domains


def load_data(data_dir: Path, seed: int) -> dict[str, Any]:
    """The default model's training rows and the shared test sets (MARC with and without
    titles), formatted as ``edgesent build`` formats them, less the test rows whose text
    also stands in the raw training files."""
    from edgesent_export.data import DropCounts, dedup_key
    from edgesent_export.sources import load_sources

    logging.getLogger("edgesent_export").setLevel(logging.ERROR)
    sources = load_sources(ROOT / "examples" / "default_model" / "sources-v2.json", data_dir)
    data = sources.format(seed=seed)
    seen = {dedup_key(r.text) for source in sources.train for r in source.read(DropCounts())}
    tests = {n: [r for r in rows if dedup_key(r.text) not in seen] for n, rows in data.test.items()}
    return {"train": ([r.text for r in data.train], [str(r.label) for r in data.train]),
            "val": ([r.text for r in data.val], [str(r.label) for r in data.val]),
            "tests": {n: ([r.text for r in v], [str(r.label) for r in v], [r.domain for r in v])
                      for n, v in tests.items()},
            "summary": {"rows": {"train": len(data.train), **{n: len(v) for n, v in tests.items()}},
                        "test_rows_also_in_training_data_removed": {
                            n: len(data.test[n]) - len(v) for n, v in tests.items()}}}


def length_texts(tokenizer_file: Path, pool: list[str], n: int, variants: int, seed: int
                 ) -> list[str]:
    """Consecutive words of real reviews cut after the ``n``-th token ([CLS] and [SEP]
    included) of a WordPiece tokenizer: exactly ``n`` tokens when re-encoded."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_padding()
    tok.enable_truncation(n)
    rng, out = random.Random(f"{seed}:{n}"), []
    for k in (rng.randrange(len(pool)) for _ in range(variants)):
        text = " ".join(pool[(k + j) % len(pool)] for j in range(n))
        out.append(text[:tok.encode(text).offsets[-2][1]])  # the last token before [SEP]
    return out


def cell(job: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one job in a fresh ``python -m benchmarks.cell`` process; its JSON reply."""
    path, t = work / "jobs" / f"{job['system']}-{job['threads']}.json", str(job["threads"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(job), "utf-8")
    done = subprocess.run([sys.executable, "-m", "benchmarks.cell", str(path)], env={
        **os.environ, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "RAYON_NUM_THREADS": t,
        "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
        "TRANSFORMERS_VERBOSITY": "error"}, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{job['system']} (threads={t}): "
                           + " | ".join(done.stderr.strip().splitlines()[-3:]))
    return json.loads(done.stdout.splitlines()[-1])


def first_line_s(cmd: list[str]) -> float:
    """Seconds from launching ``cmd`` to its first line on stdout (a prediction)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    line, seconds = proc.stdout.readline() if proc.stdout else "", time.perf_counter() - start
    if proc.wait() != 0 or not line.strip():
        raise RuntimeError(f"{' '.join(cmd[:4])}: exit {proc.returncode}, no prediction")
    return seconds


def edgesent_cmd(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "edgesent"
    return [str(script) if script.exists() else sys.executable, *(
        [] if script.exists() else ["-m", "edgesent.cli"]), *args]


def macs_per_review(onnx_path: str, tokens: int) -> int:
    """Multiply-accumulates of one review: every activation × 2-D weight product (MatMul,
    Gemm, their integer and QDQ forms) for every token, plus attention's two length²
    products (Q·Kᵀ, scores·V) per Softmax at the model's width."""
    import onnx

    graph = onnx.load(onnx_path, load_external_data=False).graph
    dims = {i.name: list(i.dims) for i in graph.initializer}
    for n in graph.node:  # QDQ graphs: the weight reaches MatMul through DequantizeLinear
        if n.op_type == "DequantizeLinear" and n.input[0] in dims:
            dims[n.output[0]] = dims[n.input[0]]
    weights = [dims[n.input[1]] for n in graph.node if n.op_type in (
        "MatMul", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
        and len(dims.get(n.input[1], [])) == 2]
    width = weights[0][0] if weights else 0
    return tokens * sum(k * m for k, m in weights) + 2 * tokens**2 * width * sum(
        n.op_type == "Softmax" for n in graph.node)


def machine(threads: list[int]) -> dict[str, Any]:
    first_cpu = Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
    field = {k.strip(): v.strip() for k, _, v in (x.partition(":") for x in first_cpu)}.get
    installed = {d.metadata["Name"]: d.version for d in md.distributions()}
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "cpu": field("model name"), "cpu_mhz": float(field("cpu MHz") or 0) or None,
            "instruction_sets": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16",
                                             "amx_int8") if f in (field("flags") or "").split()],
            "cpus_usable": len(os.sched_getaffinity(0)), "threads": threads,
            "python": platform.python_version(), "versions": {n: installed[n] for n in (
                "onnxruntime", "numpy", "tokenizers", "torch", "transformers", "scikit-learn",
                "vaderSentiment", "fasttext-wheel", "model2vec") if n in installed},
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def accuracy(labels: list[str], test: Test, rows: list[int], name: str) -> dict[str, Any]:
    """Accuracy and macro-F1 on the whole set, its product domains and each domain."""
    from edgesent.metrics import classification_report

    truth = [LABELS.index(test[1][i]) for i in rows]
    guess = [LABELS.index(p) if p in LABELS else 1 - t for p, t in zip(labels, truth, strict=True)]
    domains = [test[2][i] for i in rows]
    groups: dict[str, Any] = {name: range(len(rows))}
    if set(domains) & MOVIES and set(domains) - MOVIES - {None}:
        groups[f"{name}:products"] = [k for k, d in enumerate(domains) if d and d not in MOVIES]
    for d in sorted(set(domains) - {None}):
        groups[f"{name}:{d}"] = [k for k, x in enumerate(domains) if x == d]
    return {g: {key: r[key] for key in ("n", "accuracy", "macro_f1")} for g, ks in groups.items()
            for r in [classification_report([truth[k] for k in ks], [guess[k] for k in ks],
                                            LABELS)]}


@click.group()
def main() -> None:
    """Benchmarks of edgesent against the systems people would use instead."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


@main.command()
@click.option("--quick", is_flag=True, help="Small samples, short cells (the tests use it).")
@click.option("--bundle", type=click.Path(exists=True, path_type=Path),
              help="edgesent bundle [default: the embedded model].")
@click.option("--data", type=click.Path(path_type=Path), envvar="EDGESENT_DATA",
              help="Review data directory [default: $EDGESENT_DATA].")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output folder [default: benchmarks/results/full or quick].")
@click.option("--work-dir", type=click.Path(path_type=Path), default=ROOT / "runs" / "bench-work",
              help="Cache of prepared models [default: runs/bench-work].")
@click.option("--systems", help="Comma-separated subset of: " + ", ".join(SYSTEMS) + ".")
@click.option("--threads", default="1,2", show_default=True, help="Thread settings.")
@click.option("--rounds", type=click.IntRange(min=1), help="Timing rounds [3; quick: 1].")
@click.option("--cell-seconds", type=click.FloatRange(min=0.01),
              help="Seconds per timing cell and round [2; quick: 0.2].")
@click.option("--tiny", is_flag=True, help="Tiny reference config, short training (tests).")
@click.option("--model2vec-base", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Encoder model2vec distils [default: all-MiniLM-L6-v2].")
@click.option("--mpnet", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="all-mpnet-base-v2 directory, for model2vec-mpnet [else left out].")
@click.option("--seed", type=int, default=13, show_default=True)
def run(quick: bool, bundle: Path | None, data: Path | None, out: Path | None, work_dir: Path,
        systems: str | None, threads: str, tiny: bool, model2vec_base: Path | None,
        mpnet: Path | None, seed: int, **overrides: Any) -> None:
    """Measure every system; write results.json, results.md and a plot."""
    from edgesent.models import DEFAULT_MODEL

    names = [n.strip() for n in (systems or ",".join(SYSTEMS)).split(",") if n.strip()]
    if unknown := [n for n in names if n not in SYSTEMS]:
        raise click.BadParameter(f"unknown systems {', '.join(unknown)}; choose among "
                                 f"{', '.join(SYSTEMS)}", param_hint="--systems")
    counts = sorted({int(t) for t in threads.split(",") if t.strip().isdigit()})
    if not counts or counts[0] < 1 or len(counts) < len(set(threads.split(","))):
        raise click.BadParameter(f"{threads!r}: expected positive integers like 1,2",
                                 param_hint="--threads")
    mode, started = "quick" if quick else "full", time.perf_counter()
    cfg = {"mode": mode, "threads": counts, "lengths": LENGTHS, "typical_length": TYPICAL,
           "seed": seed, **MODES[mode], **{k: v for k, v in overrides.items() if v is not None}}
    dataset = load_data(data, seed) if data and data.is_dir() else None
    res: dict[str, Any] = {"config": cfg, "machine": machine(counts), "systems": {}, "skipped": {},
                           "data": dataset and dataset["summary"], "data_note": None if dataset
                           else f"no data directory ({data or '--data, EDGESENT_DATA'}): "
                           "accuracy and the trained systems left out"}
    ctx = Context(Path(bundle or DEFAULT_MODEL), work_dir, dataset and dataset["train"],
                  dataset and dataset["val"], tiny, model2vec_base, mpnet)
    specs = {}
    for name in names:
        try:
            specs[name] = {"system": name, **SYSTEMS[name].prepare(ctx)}
        except Skip as exc:
            res["skipped"][name] = str(exc)
            log.warning("%s left out: %s", name, exc)
    if not specs:
        raise click.ClickException("no system could be prepared")
    try:  # bert-base-uncased WordPiece counts tokens (--tiny: the tiny base's tokenizer)
        counter = (ctx.m2v_base if ctx.tiny and ctx.m2v_base else minilm_dir()) / "tokenizer.json"
    except Skip:
        counter = ctx.bundle / "tokenizer.json"
    tests: dict[str, Test] = dataset["tests"] if dataset else {}
    pool = [t for test in tests.values() for t in test[0]] or generated_reviews(500, seed)
    timing = {n: length_texts(counter, dataset["train"][0][:4000] if dataset else pool, n, 32,
                             seed) for n in LENGTHS}
    shared = [pool[i % len(pool)] for i in range(cfg["independence"])]
    measured = {n: evaluate(specs[n], tests, pool, shared, timing, cfg, work_dir) for n in specs}
    order = [n for n in specs if not measured[n]["errors"]]
    time_rounds(order, specs, measured, timing, cfg, work_dir)
    commands = cold_starts(order, specs, measured, cfg, work_dir)
    for name, spec in specs.items():
        res["systems"][name] = summarize(spec, measured[name], shared, cfg,
                                         res["machine"]["cpu_mhz"], work_dir)
        res["systems"][name]["cold_start"]["command"] = commands.get(name)
    res["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    res["duration_s"] = time.perf_counter() - started
    write(res, out := out or ROOT / "benchmarks" / "results" / mode)
    click.echo(f"results: {out / 'results.md'}")
    if failed := [n for n, s in res["systems"].items() if s["errors"]]:
        raise click.ClickException(f"measurements failed for {', '.join(failed)} (results.json)")


def evaluate(spec: dict[str, Any], tests: dict[str, Test], pool: list[str], shared: list[str],
             timing: dict[int, list[str]], cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    """One cell on the most threads: accuracy on the test rows (a sample for slow systems),
    peak RSS after them (topped up to ``rss_reviews`` for the others), environment, token
    counts, batch independence."""
    name, seed, threads = spec["system"], cfg["seed"], cfg["threads"][-1]
    system, m = SYSTEMS[name], {"errors": [], "timing": {}}
    cap = cfg["max_eval_slow"] if system.capped else cfg["max_eval"]
    m["rows"] = {t: sorted(random.Random(f"{seed}:{t}").sample(range(len(v[0])), cap))
                 if cap and cap < len(v[0]) else list(range(len(v[0]))) for t, v in tests.items()}
    texts = [tests[t][0][i] for t, rows in m["rows"].items() for i in rows]
    if not system.capped:  # peak RSS after as many reviews as every system sees
        texts += [pool[i % len(pool)] for i in range(max(0, cfg["rss_reviews"] - len(texts)))]
    log.info("%s: classifying %d reviews (threads=%d)", name, len(texts), threads)
    try:
        reply = cell({"system": name, "spec": spec, "threads": threads, "eval": texts,
                      "lengths": {n: v[:1] for n, v in timing.items()}, "seed": seed,
                      "independence": name == "edgesent" and shared}, work)
    except RuntimeError as exc:
        return {**m, "errors": [str(exc)]}
    m["eval"] = {"n": len(texts), "seconds": reply["eval_s"], "threads": threads,
                 "peak_rss_kb": reply["peak_rss_kb"]}
    m.update({k: reply.get(k) for k in ("tokens", "environment", "load_s", "independence")})
    if system.accuracy and tests:
        m["accuracy"], k = {}, 0
        for t, rows in m["rows"].items():
            m["accuracy"].update(accuracy(reply["labels"][k:k + len(rows)], tests[t], rows, t))
            k += len(rows)
    return m


def time_rounds(order: list[str], specs: dict[str, Any], measured: dict[str, Any],
                timing: dict[int, list[str]], cfg: dict[str, Any], work: Path) -> None:
    """Latency per length and batch-32 throughput: a fresh process per system, thread
    setting and round, the systems rotated each round."""
    for t in cfg["threads"]:
        for r in range(cfg["rounds"]):
            for name in order[r % len(order):] + order[:r % len(order)]:
                try:
                    reply = cell({"system": name, "spec": specs[name], "threads": t, "lengths":
                                  timing, "batch": timing[TYPICAL], "cell_s": cfg["cell_seconds"]},
                             work)
                except RuntimeError as exc:
                    measured[name]["errors"].append(str(exc))
                    continue
                cells = measured[name]["timing"].setdefault(str(t), {"latency": {}, "batch": []})
                for n, times in reply["latency"].items():
                    cells["latency"].setdefault(n, []).extend(times)
                cells["batch"] += reply["throughput"]
            log.info("timing round %d/%d on %d thread(s) done", r + 1, cfg["rounds"], t)


def cold_starts(order: list[str], specs: dict[str, Any], measured: dict[str, Any],
                cfg: dict[str, Any], work: Path) -> dict[str, list[str]]:
    """Launch to first printed prediction, rotated; a full run discards its first round
    (page cache). Returns each system's command."""
    commands, quick = {}, cfg["mode"] == "quick"
    for name in order:
        (path := work / "jobs" / f"{name}.spec.json").write_text(json.dumps(specs[name]))
        commands[name] = edgesent_cmd("predict", COLD_TEXT, "--model", specs[name]["bundle"]) \
            if name == "edgesent" else [sys.executable, "-m", "benchmarks.cell", "cold", str(path)]
        measured[name]["cold"] = []
    for r in range(cfg["cold_runs"] + (not quick)):
        for name in order[r % len(order):] + order[:r % len(order)]:
            try:
                measured[name]["cold"] += [first_line_s(commands[name])] * (quick or r > 0)
            except RuntimeError as exc:
                measured[name]["errors"].append(f"cold start: {exc}")
    return commands


def summarize(spec: dict[str, Any], m: dict[str, Any], shared: list[str], cfg: dict[str, Any],
              mhz: float | None, work: Path) -> dict[str, Any]:
    """Percentiles, throughput, share of int8 peak, ``predict --input``, sizes."""
    one, cold = cfg["threads"][0], m.pop("cold", [])
    m["cold_start"] = {"runs": len(cold), "median_s": float(np.median(cold)) if cold else None}
    for cells in m["timing"].values():
        cells["latency"] = {n: {"n": len(v), "p50_ms": 1e3 * np.percentile(v, 50),
                                "p95_ms": 1e3 * np.percentile(v, 95)}
                            for n, v in cells["latency"].items()}
        cells["throughput"] = {"n": len(cells["batch"]),
                               "reviews_per_s": 32 / float(np.median(cells.pop("batch")))}
    if spec.get("precision") == "int8" and str(one) in m["timing"]:
        macs = macs_per_review(spec["onnx"], m["tokens"][str(TYPICAL)])
        seconds = m["timing"][str(one)]["latency"][str(TYPICAL)]["p50_ms"] / 1e3
        m["int8_peak"] = {"macs": macs, "threads": one, "cpu_mhz": mhz, "seconds": seconds,
                          "share": macs / seconds / (VNNI_MACS * mhz * 1e6 * one) if mhz else None}
    if (same := m.get("independence")) and "bundle" in spec:  # predict --input, same texts
        (path := work / "predict-input.jsonl").write_text("".join(
            json.dumps({"text": t}) + "\n" for t in shared), "utf-8")
        start = time.perf_counter()
        subprocess.run(edgesent_cmd("predict", "--input", str(path), "-o", str(work / "predict-"
                       "output.jsonl"), "--model", spec["bundle"], "-t", str(same["threads"]),
                       "-b", "32"), check=True, capture_output=True)
        wall = time.perf_counter() - start
        m["predict_file"] = {"n": len(shared), "threads": same["threads"], "wall_s": wall,
                             "reviews_per_s": len(shared) / wall, "after_start": len(shared) / max(
                                 1e-9, wall - (m["cold_start"]["median_s"] or 0)),
                             "runner_reviews_per_s": same["n"] / same["runner_s"]}
    system, m["rows"] = SYSTEMS[spec["system"]], {t: len(v) for t, v in m.get("rows", {}).items()}
    return {"title": system.title, "spec": spec, "has_accuracy": system.accuracy,
            "capped": system.capped, **m,
            "model_bytes": sum(Path(f).stat().st_size for f in spec["files"])}


def figures(s: dict[str, Any], cfg: dict[str, Any]) -> dict[str, float | None]:
    """The main table's figures of one system (None where not measured)."""
    timing = s["timing"].get(str(cfg["threads"][0]), {})
    return {"latency": timing.get("latency", {}).get(str(TYPICAL), {}).get("p50_ms"),
            "throughput": timing.get("throughput", {}).get("reviews_per_s"),
            "model": s["model_bytes"] / 1e6 or None,
            "env": (s.get("environment") or {}).get("bytes", 0) / 1e6 or None,
            "rss": (s.get("eval") or {}).get("peak_rss_kb", 0) / 1024 or None,
            "cold": s["cold_start"]["median_s"]}


def num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.{digits}f}"


def markdown(res: dict[str, Any]) -> str:
    """results.md: the main table, latency per length, accuracy per domain, the rest."""
    cfg, mach, systems = res["config"], res["machine"], res["systems"]
    one, accs = cfg["threads"][0], {k: s.get("accuracy", {}) for k, s in systems.items()}
    groups = sorted({g for a in accs.values() for g in a
                     if ":" not in g or g.endswith(":products")})
    ref, rows = figures(systems[REFERENCE], cfg) if REFERENCE in systems else {}, []
    for name, s in systems.items():
        row = [f"**{name}**" if name == "edgesent" else name + " (ref)" * (name == REFERENCE)]
        row += ["n/a (random weights)" if not s["has_accuracy"] else "–" if not (
            a := accs[name].get(g)) else f"{100 * a['accuracy']:.1f} / {100 * a['macro_f1']:.1f}"
                + " †" * s["capped"] for g in groups]
        for key, value in figures(s, cfg).items():
            ratio = value / ref[key] if value and ref.get(key) else None
            row += [num(value, 2 if key in ("latency", "cold") or (value and value < 10) else 1),
                    "–" if ratio is None else f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.0f}×"]
        rows.append(row)
    head = ["system", *(f"{DISPLAY.get(g, g)} acc / F1 (%)" for g in groups), f"p50 latency "
            f"@{TYPICAL} tok, {one} thr (ms)", "× ref", f"reviews/s @batch 32, {one} thr", "× ref",
            "model (MB)", "× ref", "environment (MB)", "× ref", "peak RSS (MB)", "× ref",
            "cold start (s)", "× ref"]
    lines = [f"# edgesent benchmark ({cfg['mode']} run, {mach['date']})", "", f"Machine: "
             f"{mach['cpu']} ({', '.join(mach['instruction_sets'])}), {mach['cpus_usable']} "
             f"usable CPUs; Python {mach['python']}, " + ", ".join(f"{k} {v}" for k, v in mach[
                 "versions"].items()) + f". Load average {mach['load_average_start']} at start, "
             f"{mach['load_average_end']} at end; {res['duration_s'] / 60:.1f} min. Ratios "
             f"against {REFERENCE}; † on {cfg['max_eval_slow']} sampled rows per set; what each "
             "column means: benchmarks/README.md.", "", *table(head, rows), ""]
    lines += [f"- {k}: {s['spec']['note']}" for k, s in systems.items()]
    lines += [f"- {k}: not measured: {why}" for k, why in res["skipped"].items()]
    lines += [f"- {k}: errors: {'; '.join(s['errors'])}" for k, s in systems.items() if s["errors"]]
    lines += [f"- {res['data_note']}"] * bool(res["data_note"])
    for k, s in systems.items():
        if (p := s.get("int8_peak") or {}).get("share"):
            lines.append(f"- {k}, share of int8 peak: {num(p['macs'] / 1e6)} M multiply-"
                         f"accumulates per {TYPICAL}-token review in {num(1e3 * p['seconds'], 2)}"
                         f" ms on {one} thread at {num(p['cpu_mhz'])} MHz: **{p['share']:.0%}** of"
                         f" {VNNI_MACS} per cycle")
        if v := s.get("independence"):
            lines.append(f"- {k}, batch independence: {v['n']:,} reviews alone, then at batch 8 "
                         f"and 32, in order and shuffled: **{v['label_flips']}** label flips, "
                         f"largest probability change **{v['max_prob_diff']:.2g}**")
        if f := s.get("predict_file"):
            lines.append(f"- {k}, `predict --input` on {f['n']:,} reviews, {f['threads']} "
                         f"thread{'s' * (f['threads'] > 1)}, batch 32: "
                         f"**{num(f['reviews_per_s'])}** reviews/s (process wall time), "
                         f"{num(f['after_start'])} less the cold start; `Runner.logits` alone on "
                         f"the same texts: **{num(f['runner_reviews_per_s'])}**")
    lines += ["", "### Latency at batch 1 (ms, p50 / p95) and throughput at batch 32", "", *table(
        ["system", "threads", *(f"{n} tok" for n in LENGTHS), "reviews/s"],
        [[k, t, *(f"{num(c['latency'][str(n)]['p50_ms'], 2)} / "
                  f"{num(c['latency'][str(n)]['p95_ms'], 2)}" for n in LENGTHS),
          num(c["throughput"]["reviews_per_s"])]
         for k, s in systems.items() for t, c in sorted(s["timing"].items())])]
    domains = sorted({g for a in accs.values() for g in a if g.count(":") == 1} - set(groups))
    if full := [k for k, s in systems.items() if accs[k] and not s["capped"]]:
        lines += ["", "### Accuracy per domain (%)", "", *table(["domain", "n", *full], [
            [g, accs[full[0]][g]["n"], *(f"{100 * accs[k][g]['accuracy']:.1f}" for k in full)]
            for g in domains])]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], out: Path) -> None:
    """accuracy_vs_latency.png: one point per system, the reference as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, systems = res["config"], res["systems"]
    group = min((g for s in systems.values() for g in s.get("accuracy", {}) if ":" not in g),
                default="")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, s in systems.items():
        latency, acc = figures(s, cfg)["latency"], s.get("accuracy", {}).get(group)
        if latency and name == REFERENCE:
            ax.axvline(latency, linestyle="--", color="grey")
            ax.annotate(f"{name} (speed only)", (latency, 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=8, color="grey")
        elif latency and acc:
            ax.scatter([latency], [100 * acc["accuracy"]], s=40)
            ax.annotate(name, (latency, 100 * acc["accuracy"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
    ax.set(xscale="log", title="Accuracy against latency", ylabel=f"accuracy on "
           f"{DISPLAY.get(group, group)} (%)", xlabel=f"p50 latency, batch 1, {TYPICAL} tokens, "
           f"{cfg['threads'][0]} thread (ms, log)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_latency.png", dpi=120)
    plt.close(fig)


def write(res: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n", "utf-8")
    (out / "results.md").write_text(markdown(res), "utf-8")
    plot(res, out)


main.add_command(serve)
main.add_command(scaleout)

if __name__ == "__main__":
    main()
