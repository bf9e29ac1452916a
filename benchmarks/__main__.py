"""``python -m benchmarks run``: edgesent beside the systems people would run instead.

Each measurement runs in a fresh ``benchmarks.cell`` process, one per system × thread
setting × round, the systems in a rotated order each round so that drift hits all alike;
writes results.json, results.md and two PNG plots. ``python -m benchmarks serve``: the
HTTP load test. See benchmarks/README.md.
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
from benchmarks.serve_bench import generated_reviews, serve
from benchmarks.systems import LABELS, REFERENCE, SYSTEMS, Context, Skip, minilm_dir

log = logging.getLogger("benchmarks")
ROOT = Path(__file__).resolve().parent.parent
MODES = {"full": {"max_eval": None, "max_eval_slow": 1000, "rss_reviews": 10_000,
                  "independence": 5000, "rounds": 3, "cell_seconds": 2.0, "cold_runs": 3},
         "quick": {"max_eval": 200, "max_eval_slow": 50, "rss_reviews": 300,
                   "independence": 64, "rounds": 1, "cell_seconds": 0.2, "cold_runs": 1}}
LENGTHS, TYPICAL, MOVIES = [16, 64, 256], 64, {"imdb", "MR"}
VNNI_MACS = 64  # int8 multiply-accumulates per cycle per core: one 512-bit VPDPBUSD
DISPLAY = {"fdu_mtl_test": "FDU-MTL test", "fdu_mtl_test:products": "FDU-MTL 14 products",
           "marc_en_val": "MARC-en val"}
Test = tuple[list[str], list[str], list[Any]]  # texts, labels, domains


def load_data(data_dir: Path, seed: int) -> dict[str, Any]:
    """The default model's sources, formatted as ``edgesent build`` formats them; test
    rows whose text also stands in the training files are removed."""
    from edgesent_export.data import DropCounts, dedup_key, format_dataset
    from edgesent_export.sources import load_sources

    sources = load_sources(ROOT / "examples" / "default_model" / "sources.json", data_dir)
    drops = DropCounts()
    train = [s.read(drops) for s in sources.train]
    logging.getLogger("edgesent_export").setLevel(logging.ERROR)
    data = format_dataset(train, {n: s.read(drops) for n, s in sources.test.items()},
                          seed=seed, labels=LABELS, drops=drops)
    seen = {dedup_key(r.text) for rows in train for r in rows}
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
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "edgesent.cli",
                                                         *args]


def macs_per_review(onnx_path: str, tokens: int) -> int:
    """Multiply-accumulates of one review: every activation × 2-D weight product (MatMul,
    Gemm and their integer and QDQ forms) for every token, plus attention's two length² products
    (Q·Kᵀ, scores·V) per Softmax at the model's width."""
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
    info = Path("/proc/cpuinfo").read_text().splitlines()

    def field(key: str) -> str:
        return next((line.split(":", 1)[1].strip() for line in info if line.startswith(key)), "")

    installed = {d.metadata["Name"]: d.version for d in md.distributions()}
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "cpu": field("model name"), "cpu_mhz": float(field("cpu MHz") or 0) or None,
            "instruction_sets": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16",
                                             "amx_int8") if f in field("flags").split()],
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
@click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), help="`edgesent "
              "build` output (teacher/best, student/best); without it, what needs it is left out.")
@click.option("--data", type=click.Path(path_type=Path), envvar="EDGESENT_DATA",
              help="Review data directory [default: $EDGESENT_DATA].")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output folder [default: benchmarks/results/full or quick].")
@click.option("--work-dir", type=click.Path(path_type=Path),
              help="Cache of prepared models [default: BUILD_DIR/bench or runs/bench-work].")
@click.option("--systems", help="Comma-separated subset of: " + ", ".join(SYSTEMS) + ".")
@click.option("--threads", default="1,2", show_default=True, help="Thread settings.")
@click.option("--rounds", type=click.IntRange(min=1), help="Timing rounds [3; quick: 1].")
@click.option("--cell-seconds", type=click.FloatRange(min=0.01),
              help="Seconds per timing cell and round [2; quick: 0.2].")
@click.option("--tiny", is_flag=True, help="Tiny reference config, short training (tests).")
@click.option("--model2vec-base", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Encoder model2vec distils [default: all-MiniLM-L6-v2].")
@click.option("--seed", type=int, default=13, show_default=True)
def run(quick: bool, bundle: Path | None, build_dir: Path | None, data: Path | None,
        out: Path | None, work_dir: Path | None, systems: str | None, threads: str,
        tiny: bool, model2vec_base: Path | None, seed: int, **overrides: Any) -> None:
    """Measure every system; write results.json, results.md and two PNG plots."""
    from edgesent.models import DEFAULT_MODEL

    names = [n.strip() for n in (systems or ",".join(SYSTEMS)).split(",") if n.strip()]
    if unknown := [n for n in names if n not in SYSTEMS]:
        raise click.BadParameter(f"unknown systems {', '.join(unknown)}; choose among "
                                 f"{', '.join(SYSTEMS)}", param_hint="--systems")
    counts = sorted({int(t) for t in threads.split(",") if t.strip().isdigit()})
    if not counts or counts[0] < 1 or len(counts) < len(set(threads.split(","))):
        raise click.BadParameter(f"{threads!r}: expected positive integers like 1,2",
                                 param_hint="--threads")
    mode = "quick" if quick else "full"
    cfg = {"mode": mode, "threads": counts, "lengths": LENGTHS, "typical_length": TYPICAL,
           "seed": seed, **MODES[mode], **{k: v for k, v in overrides.items() if v is not None}}
    out = out or ROOT / "benchmarks" / "results" / mode
    work = work_dir or (build_dir / "bench" if build_dir else ROOT / "runs" / "bench-work")
    res: dict[str, Any] = {"config": cfg, "machine": machine(counts), "systems": {},
                           "skipped": {}, "data": None, "data_note": None}
    started = time.perf_counter()
    dataset = load_data(data, seed) if data and data.is_dir() else None
    if dataset:
        res["data"] = dataset["summary"]
    else:
        res["data_note"] = f"no data directory ({data or '--data, EDGESENT_DATA'}): accuracy " \
                           "and the trained systems left out"
    ctx = Context(Path(bundle or DEFAULT_MODEL), build_dir, work, dataset and dataset["train"],
                  dataset and dataset["val"], tiny, model2vec_base)
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
    measured: dict[str, dict[str, Any]] = {n: {"errors": [], "timing": {}} for n in specs}
    for name, spec in specs.items():  # accuracy, peak RSS, environment, batch independence
        system, m = SYSTEMS[name], measured[name]
        cap = min(filter(None, [cfg["max_eval"], system.capped and cfg["max_eval_slow"]]),
                  default=None)
        m["rows"] = {t: sorted(random.Random(f"{seed}:{t}").sample(range(len(v[0])), cap))
                     if cap and cap < len(v[0]) else list(range(len(v[0])))
                     for t, v in tests.items()}
        texts = [tests[t][0][i] for t, rows in m["rows"].items() for i in rows]
        target = min(cfg["rss_reviews"], len(texts) or 100) if system.capped else cfg[
            "rss_reviews"]
        if not system.accuracy:  # the reference: memory only, on a spread of 300 reviews
            texts, target = (texts or pool)[::max(1, len(texts or pool) // 300)][:300], 0
            m["rows"] = {}
        texts += [pool[i % len(pool)] for i in range(max(0, target - len(texts)))]
        log.info("%s: classifying %d reviews (threads=%d)", name, len(texts), counts[-1])
        try:
            reply = cell({"system": name, "spec": spec, "threads": counts[-1], "eval": texts,
                          "lengths": {n: v[:1] for n, v in timing.items()}, "seed": seed,
                          "independence": "onnx" in spec and shared}, work)
        except RuntimeError as exc:
            m["errors"].append(str(exc))
            continue
        m["eval"] = {"n": len(texts), "seconds": reply["eval_s"], "threads": counts[-1],
                     "peak_rss_kb": reply["peak_rss_kb"]}
        m.update({k: reply.get(k) for k in ("tokens", "environment", "load_s", "independence")})
        if system.accuracy and tests:
            m["accuracy"], k = {}, 0
            for t, rows in m["rows"].items():
                m["accuracy"].update(accuracy(reply["labels"][k:k + len(rows)], tests[t], rows, t))
                k += len(rows)
    order = [n for n in specs if not measured[n]["errors"]]
    for t in counts:  # timing: a fresh process per system, thread setting and round
        for r in range(cfg["rounds"]):
            for name in order[r % len(order):] + order[:r % len(order)]:
                own = name == "edgesent" and t == counts[0] and r == 0 and shared
                try:
                    reply = cell({"system": name, "spec": specs[name], "threads": t, "lengths":
                                  timing, "batch": timing[TYPICAL], "own_throughput": own,
                                  "cell_s": cfg["cell_seconds"]}, work)
                except RuntimeError as exc:
                    measured[name]["errors"].append(str(exc))
                    continue
                cells = measured[name]["timing"].setdefault(str(t), {"latency": {}, "batch": []})
                for n, times in reply["latency"].items():
                    cells["latency"].setdefault(n, []).extend(times)
                cells["batch"] += reply["throughput"]
                measured[name].setdefault("own_throughput", reply.get("own_throughput"))
            log.info("timing round %d/%d on %d thread(s) done", r + 1, cfg["rounds"], t)
    commands, cold = {}, {n: [] for n in order}
    for name in order:
        path = work / "jobs" / f"{name}.spec.json"
        path.write_text(json.dumps(specs[name]), "utf-8")
        commands[name] = edgesent_cmd("predict", COLD_TEXT, "--model", specs[name]["bundle"]) \
            if name == "edgesent" else [sys.executable, "-m", "benchmarks.cell", "cold", str(path)]
    for r in range(cfg["cold_runs"] + (not quick)):  # a full run discards one (page cache)
        for name in order[r % len(order):] + order[:r % len(order)]:
            try:
                seconds = first_line_s(commands[name])
                cold[name] += [seconds] * (quick or r > 0)
            except RuntimeError as exc:
                measured[name]["errors"].append(f"cold start: {exc}")
    for name, spec in specs.items():
        res["systems"][name] = summarize(spec, measured[name], cold.get(name, []), shared, cfg,
                                         res["machine"]["cpu_mhz"], work)
        res["systems"][name]["cold_start"]["command"] = commands.get(name)
    res["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    res["duration_s"] = time.perf_counter() - started
    write(res, out)
    click.echo(f"results: {out / 'results.md'}")
    if failed := [n for n, s in res["systems"].items() if s["errors"]]:
        raise click.ClickException(f"measurements failed for {', '.join(failed)} (results.json)")


def summarize(spec: dict[str, Any], m: dict[str, Any], cold: list[float], shared: list[str],
              cfg: dict[str, Any], mhz: float | None, work: Path) -> dict[str, Any]:
    """Percentiles, throughput, share of int8 peak, ``predict --input``, sizes."""
    system, one = SYSTEMS[spec["system"]], cfg["threads"][0]
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
    if own := m.get("own_throughput"):  # `edgesent predict --input` on the same texts
        path = work / "predict-input.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in shared), "utf-8")
        start = time.perf_counter()
        subprocess.run(edgesent_cmd("predict", "--input", str(path), "-o", str(
            work / "predict-output.jsonl"), "--model", spec["bundle"], "-t", str(one), "-b", "32"),
            check=True, capture_output=True)
        wall = time.perf_counter() - start
        m["predict_file"] = {"n": len(shared), "threads": one, "wall_s": wall,
                             "reviews_per_s": len(shared) / wall, "after_start": len(shared) / max(
                                 1e-9, wall - (m["cold_start"]["median_s"] or 0)),
                             "runner_reviews_per_s": own["n"] / own["seconds"]}
    m["rows"] = {t: len(v) for t, v in m.get("rows", {}).items()}
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


def table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def markdown(res: dict[str, Any]) -> str:
    cfg, mach, systems = res["config"], res["machine"], res["systems"]
    groups = sorted({g for s in systems.values() for g in s.get("accuracy", {})
                     if ":" not in g or g.endswith(":products")})
    ref, one = figures(systems[REFERENCE], cfg) if REFERENCE in systems else {}, cfg["threads"][0]
    rows = []
    for name, s in systems.items():
        row = [f"**{name}**" if name == "edgesent" else name + " (ref)" * (name == REFERENCE)]
        for g in groups:
            acc = s.get("accuracy", {}).get(g)
            row.append("n/a (random weights)" if not s["has_accuracy"] else "–" if not acc else
                       f"{100 * acc['accuracy']:.1f} / {100 * acc['macro_f1']:.1f}"
                       + " †" * s["capped"])
        for key, value in figures(s, cfg).items():
            ratio = value / ref[key] if value and ref.get(key) else None
            row += [num(value, 2 if key in ("latency", "cold") or (value and value < 10) else 1),
                    "–" if ratio is None else f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.0f}×"]
        rows.append(row)
    head = ["system", *(f"{DISPLAY.get(g, g)} acc / F1 (%)" for g in groups),
            f"p50 latency @{TYPICAL} tok, {one} thr (ms)", "× ref", f"reviews/s @batch 32, "
            f"{one} thr", "× ref", "model (MB)", "× ref", "environment (MB)", "× ref",
            "peak RSS (MB)", "× ref", "cold start (s)", "× ref"]
    lines = [f"# edgesent benchmark ({cfg['mode']} run, {mach['date']})", "",
             f"Machine: {mach['cpu']} ({', '.join(mach['instruction_sets'])}), "
             f"{mach['cpus_usable']} usable CPUs; Python {mach['python']}, " + ", ".join(
                 f"{k} {v}" for k, v in mach["versions"].items()) + ". Load average at start "
             f"{mach['load_average_start']}, at end {mach['load_average_end']}. Wall time "
             f"{res['duration_s'] / 60:.1f} min.", "", *table(head, rows), "",
             f"× ref: the figure divided by the reference's ({REFERENCE}: a randomly initialised "
             "model of distilbert-base-uncased's configuration through the transformers "
             "pipeline, for speed and size only). Accuracy: percent accuracy / macro-F1; † on a "
             f"fixed random sample of {cfg['max_eval_slow']} rows per test set. Peak RSS: VmHWM "
             "of a fresh process that loaded the model and classified its evaluation reviews "
             f"(`eval.n` in results.json) at batch 32 on {cfg['threads'][-1]} threads. "
             "Environment: installed size of the distributions the process imported (their "
             "RECORD files; for a source checkout its package folder). Cold start: median "
             "from launch to the first printed prediction.", ""]
    lines += [f"- {k}: {s['spec']['note']}" for k, s in systems.items()]
    lines += [f"- {k}: not measured: {why}" for k, why in res["skipped"].items()]
    lines += [f"- {k}: errors: {'; '.join(s['errors'])}" for k, s in systems.items() if s["errors"]]
    lines += [f"- {res['data_note']}"] * bool(res["data_note"])
    lines += ["", "### Latency at batch 1 (ms, p50 / p95) and throughput at batch 32", "", *table(
        ["system", "threads", *(f"{n} tok" for n in LENGTHS), "reviews/s"],
        [[k, t, *(f"{num(c['latency'][str(n)]['p50_ms'], 2)} / "
                  f"{num(c['latency'][str(n)]['p95_ms'], 2)}" for n in LENGTHS),
          num(c["throughput"]["reviews_per_s"])]
         for k, s in systems.items() for t, c in sorted(s["timing"].items())])]
    domains = sorted({g for s in systems.values() for g in s.get("accuracy", {})
                      if g.count(":") == 1 and not g.endswith(":products")})
    if full := [k for k, s in systems.items() if s.get("accuracy") and not s["capped"]]:
        lines += ["", "### Accuracy per domain (%)", "", *table(["domain", "n", *full], [
            [g, systems[full[0]]["accuracy"][g]["n"], *(
                f"{100 * systems[k]['accuracy'][g]['accuracy']:.1f}" for k in full)]
            for g in domains])]
    if peak := {k: s["int8_peak"] for k, s in systems.items()
                if (s.get("int8_peak") or {}).get("share")}:
        lines += ["", f"### Share of int8 peak ({TYPICAL} tokens, batch 1, {one} thread)", "",
                  f"Assumed peak: {VNNI_MACS} int8 multiply-accumulates per cycle per core (one "
                  "512-bit VPDPBUSD per cycle with AVX512-VNNI) at the clock /proc/cpuinfo "
                  "reports ('cpu MHz'). Work per review: every weight product for every token "
                  "plus attention's two length² products per layer, counted in the ONNX graph.",
                  "", *table(["system", "MACs per review (M)", "p50 (ms)", "cpu MHz",
                              "share of peak"], [[k, num(p["macs"] / 1e6), num(
                                  1e3 * p["seconds"], 2), num(p["cpu_mhz"]), f"{p['share']:.0%}"]
                                                 for k, p in peak.items()])]
    if same := {k: s["independence"] for k, s in systems.items() if s.get("independence")}:
        lines += ["", "### Batch independence", "", "Reviews scored alone (batch 1), then at "
                  "batch 8 and 32, in input order and shuffled: reviews whose label flips in "
                  "any setting, and the largest probability change.", "", *table(
                      ["system", "reviews", "label flips", "largest probability change"],
                      [[k, v["n"], v["label_flips"], f"{v['max_prob_diff']:.2g}"]
                       for k, v in same.items()])]
    if f := systems.get("edgesent", {}).get("predict_file"):
        lines += ["", f"### `edgesent predict --input` against the model alone ({f['n']:,} "
                  f"reviews, {f['threads']} thread, batch 32)", "", *table(["path", "reviews/s"], [
                      ["`edgesent predict --input FILE.jsonl -o OUT.jsonl`, process wall time",
                       num(f["reviews_per_s"])], ["the same, less the median cold start",
                                                  num(f["after_start"])],
                      ["`Runner.logits` on the same texts (tokenize, sort, model)",
                       num(f["runner_reviews_per_s"])]])]
    return "\n".join(lines) + "\n"


def plots(res: dict[str, Any], out: Path) -> None:
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
    fig2, ax2 = plt.subplots(figsize=(7, 4.5))
    for i, (name, s) in enumerate(systems.items()):
        for t, c in sorted(s["timing"].items()):
            ax2.plot(LENGTHS, [c["latency"][str(n)]["p50_ms"] for n in LENGTHS], marker="o",
                     linestyle="-" if int(t) == cfg["threads"][0] else "--", color=f"C{i % 10}",
                     label=f"{name}, {t} thr")
    ax2.set(xscale="log", yscale="log", xlabel="review length (tokens)", title="Latency against "
            "review length", ylabel="p50 latency, batch 1 (ms, log)")
    ax2.set_xticks(LENGTHS, [str(n) for n in LENGTHS])
    ax2.legend(fontsize=6, ncol=2)
    for figure, axes, name in ((fig, ax, "accuracy_vs_latency"), (fig2, ax2, "latency_vs_length")):
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        figure.savefig(out / f"{name}.png", dpi=120)
    plt.close("all")


def write(res: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n", "utf-8")
    (out / "results.md").write_text(markdown(res), "utf-8")
    plots(res, out)


main.add_command(serve)

if __name__ == "__main__":
    main()
