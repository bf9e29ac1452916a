"""One benchmark run, phase by phase: data, systems, estimate, accuracy and timing,
cold start and sizes, report.

>>> results = run(RunConfig.for_mode(quick=True, build_dir=Path("runs/build")))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from benchmarks import RESULT_SCHEMA
from benchmarks.coldstart import imported_modules, measure_cold_starts
from benchmarks.config import BATCH_SIZE, REFERENCE, RunConfig
from benchmarks.estimate import estimate, log_estimate
from benchmarks.measure import environment, files_size, load_average, machine_info
from benchmarks.report import write_all
from benchmarks.systems import ENV_ROOTS, SystemSpec, prepare_systems
from benchmarks.timing import EvalJob, run_workers
from benchmarks.workload import EvalData, eval_groups, length_texts, load_eval_data, rss_texts

logger = logging.getLogger(__name__)

BUILD_SOURCES = Path(__file__).resolve().parent.parent / "examples" / "default_model" / \
    "sources.json"


def default_work_dir(cfg: RunConfig) -> Path:
    """``BUILD_DIR/bench`` beside the build, else ``runs/bench-work``."""
    if cfg.build_dir is not None:
        return Path(cfg.build_dir) / "bench"
    return Path("runs") / "bench-work"


def timing_tokenizer(specs: list[SystemSpec]) -> Path:
    """The tokenizer that counts tokens for the timing texts: the teacher's (the WordPiece
    vocabulary most systems share), else any system's."""
    preference = ["teacher-int8", "teacher-pytorch", "distilbert-ref", "teacher-optimum",
                  "edgesent", "student-fp32"]
    by_name = {s.name: s for s in specs}
    for name in preference:
        spec = by_name.get(name)
        if spec is None or spec.tokenizer is None:
            continue
        path = Path(spec.tokenizer)
        path = path / "tokenizer.json" if path.is_dir() else path
        if path.is_file():
            return path
    from benchmarks.prepare import minilm_dir

    fallback = minilm_dir()
    if fallback is None:
        raise RuntimeError("no tokenizer to build timing texts with: give --bundle or --build-dir")
    return fallback / "tokenizer.json"


def eval_rows(cfg: RunConfig, data: EvalData | None, spec: SystemSpec
              ) -> dict[str, list[int]]:
    if data is None:
        return {}
    cap = cfg.eval_cap(spec.name)
    return {name: test.rows(cap, cfg.seed) for name, test in data.tests.items()}


def eval_jobs(cfg: RunConfig, data: EvalData | None, specs: list[SystemSpec],
              lengths: dict[int, list[str]], work: Path) -> tuple[dict[str, EvalJob],
                                                                  dict[str, dict[str, list[int]]]]:
    """Texts each system classifies: its test rows, topped up to ``--rss-reviews`` for
    uncapped systems so that the peak RSS comes from that many reviews."""
    jobs, rows_of = {}, {}
    n_sets = len(data.tests) if data else 1
    for spec in specs:
        rows = eval_rows(cfg, data, spec)
        texts = [data.tests[name].texts[i] for name, idx in rows.items() for i in idx] \
            if data else []
        cap = cfg.eval_cap(spec.name)
        target = cfg.rss_reviews if cap is None else min(cfg.rss_reviews, cap * n_sets)
        if not spec.accuracy:  # the reference: memory only, on a spread of the same rows
            target = min(target, cfg.ref_reviews)
            step = max(1, len(texts) // target) if texts else 1
            texts = texts[::step][:target]
        if len(texts) < target:
            extra = rss_texts(data, lengths, target)
            texts += extra[len(texts):target]
        path = work / "eval" / f"{spec.name}.texts.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(texts), "utf-8")
        jobs[spec.name] = EvalJob(path, work / "eval" / f"{spec.name}.labels.json", len(texts))
        rows_of[spec.name] = rows
    return jobs, rows_of


def accuracy(data: EvalData, rows: dict[str, list[int]], predicted: list[str],
             restrict: dict[str, set[int]] | None = None) -> dict[str, dict[str, Any]]:
    """Accuracy and macro-F1 per reported group (``restrict``: only those test rows)."""
    from edgesent.metrics import classification_report

    out: dict[str, dict[str, Any]] = {}
    offset = 0
    labels = data.labels
    for name, idx in rows.items():
        test = data.tests[name]
        preds = predicted[offset:offset + len(idx)]
        offset += len(idx)
        keep = [k for k, i in enumerate(idx) if restrict is None or i in restrict[name]]
        idx = [idx[k] for k in keep]
        preds = [preds[k] for k in keep]
        truth = [labels.index(test.labels[i]) for i in idx]
        guess = [labels.index(p) if p in labels else (t + 1) % len(labels)
                 for p, t in zip(preds, truth, strict=True)]
        for group, positions in eval_groups(test, idx).items():
            if not positions:
                continue
            report = classification_report([truth[k] for k in positions],
                                           [guess[k] for k in positions], labels)
            out[group] = {"n": report["n"], "accuracy": report["accuracy"],
                          "macro_f1": report["macro_f1"]}
    return out


def subset_accuracy(cfg: RunConfig, data: EvalData, specs: list[SystemSpec],
                    rows_of: dict[str, dict[str, list[int]]], preds: dict[str, list[str]]
                    ) -> dict[str, Any]:
    """Every system's accuracy on the rows the capped (slow) systems saw."""
    caps = {_effective_cap(cfg, data, s.name) for s in specs if s.accuracy and s.name in preds}
    if len(caps) <= 1:
        return {}
    smallest = min(c for c in caps if c is not None)
    restrict = {name: set(test.rows(smallest, cfg.seed)) for name, test in data.tests.items()}
    systems = {}
    for spec in specs:
        if spec.accuracy and spec.name in preds:
            acc = accuracy(data, rows_of[spec.name], preds[spec.name], restrict)
            systems[spec.name] = {g: v["accuracy"] for g, v in acc.items() if g.count(":") == 0
                                  or g.endswith(":products")}
    groups = sorted({g for accs in systems.values() for g in accs})
    return {"rows_per_set": smallest, "groups": groups, "systems": systems}


def run(cfg: RunConfig) -> dict[str, Any]:
    """Run every phase and write the report; returns the results dict."""
    cfg.validate()
    started = time.perf_counter()
    work = Path(cfg.work_dir) if cfg.work_dir else default_work_dir(cfg)
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    logger.info("%s run: systems %s, threads %s; work dir %s", "quick" if cfg.quick else "full",
                ", ".join(cfg.systems), cfg.threads, work)
    machine = machine_info(cfg.threads)
    sources = cfg.sources
    if sources is None and cfg.data_dir is not None and BUILD_SOURCES.is_file():
        sources = BUILD_SOURCES  # the sources the default model was built from
    data, data_note = load_eval_data(cfg.data_dir, sources, cfg.seed)
    if data_note:
        logger.warning(data_note)
    logger.info("preparing systems (exports, int8 teacher, reference model; cached in %s)", work)
    specs, skipped, facts = prepare_systems(cfg, data, work)
    if not specs:
        raise RuntimeError("no system could be prepared: " + "; ".join(
            f"{k}: {v}" for k, v in skipped.items()))
    counter = timing_tokenizer(specs)
    lengths = length_texts(counter, data, cfg.lengths, variants=BATCH_SIZE, seed=cfg.seed)
    batch = lengths[cfg.typical_length][:BATCH_SIZE]
    jobs, rows_of = eval_jobs(cfg, data, specs, lengths, work)
    sizes = {s.name: (jobs[s.name].n, _mean_tokens(counter, jobs[s.name].texts, s.max_length))
             for s in specs}
    est = estimate(cfg, specs, sizes)
    est["prepare_s"] = round(time.perf_counter() - started)
    log_estimate(est, cfg, est["prepare_s"])
    if cfg.dry_run:
        logger.info("dry run: stopping before the measurements")
        return {"estimate_s": est, "systems": {s.name: {} for s in specs}, "skipped": skipped}

    spec_files = {s.name: s.write(work / f"spec-{s.name}.json") for s in specs}
    measured = run_workers(cfg, spec_files, jobs, lengths, batch, logs)
    logger.info("measuring cold starts (%d runs each, %d warm-up)", cfg.cold_runs,
                cfg.cold_warmup)
    cold = measure_cold_starts(specs, work / "coldstart", cfg.cold_runs, cfg.cold_warmup)

    systems: dict[str, Any] = {}
    preds: dict[str, list[str]] = {}
    for spec in specs:
        systems[spec.name] = _system_entry(cfg, spec, data, measured[spec.name],
                                           cold.get(spec.name) or {}, work)
        if "accuracy" in systems[spec.name]:
            preds[spec.name] = json.loads(jobs[spec.name].out.read_text("utf-8"))
            systems[spec.name]["accuracy"] = accuracy(data, rows_of[spec.name],
                                                      preds[spec.name])
    results = {
        "schema": RESULT_SCHEMA, "mode": "quick" if cfg.quick else "full",
        "config": {**cfg.as_dict(), "typical_length": cfg.typical_length,
                   "eval_threads": cfg.eval_threads},
        "machine": machine, "reference": REFERENCE, "estimate_s": est, "facts": facts,
        "data": data.summary if data else None, "data_note": data_note,
        "systems": systems, "skipped": skipped,
        "subset_accuracy": subset_accuracy(cfg, data, specs, rows_of, preds) if data else {},
        "load_average_end": load_average(),
        "duration_s": time.perf_counter() - started,
    }
    write_all(results, Path(cfg.out_dir))
    logger.info("done in %.1f min", results["duration_s"] / 60)
    return results


def _system_entry(cfg: RunConfig, spec: SystemSpec, data: EvalData | None,
                  measured: dict[str, Any], cold: dict[str, Any], work: Path) -> dict[str, Any]:
    """Everything measured about one system (accuracy is filled in by the caller)."""
    errors = list(measured["errors"])
    if cold.get("error"):
        errors.append(f"cold start: {cold['error']}")
    try:
        env = environment(ENV_ROOTS[spec.kind], imported_modules(spec, work / "coldstart"))
    except Exception as exc:
        errors.append(f"environment size: {exc}")
        env = {"bytes": None, "distributions": {}}
    entry: dict[str, Any] = {
        "title": spec.title, "kind": spec.kind, "notes": spec.notes, "spec": spec.as_dict(),
        "has_accuracy": spec.accuracy, "eval_cap": _effective_cap(cfg, data, spec.name),
        "timing": measured["timing"], "tokens": measured["tokens"],
        "load_seconds": measured["load_seconds"], "eval": measured.get("eval"),
        "cold_start": cold or None, "errors": errors,
        "size": {"model_bytes": files_size(spec.model_files), "model_files": spec.model_files,
                 "environment_bytes": env["bytes"], "distributions": env["distributions"],
                 "imported": env.get("imported", []), "missing": env.get("missing", [])},
    }
    if measured.get("eval") and data is not None and spec.accuracy:
        entry["accuracy"] = {}
    return entry


def _mean_tokens(tokenizer_file: Path, texts_file: Path, max_length: int,
                 sample: int = 2000) -> float:
    """Mean token count (capped at ``max_length``) of a sample of the evaluation texts."""
    from tokenizers import Tokenizer

    texts = json.loads(texts_file.read_text("utf-8"))
    if not texts:
        return 0.0
    texts = texts[:: max(1, len(texts) // sample)]
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return sum(min(max_length, len(e.ids)) for e in tokenizer.encode_batch(texts)) / len(texts)


def _effective_cap(cfg: RunConfig, data: EvalData | None, name: str) -> int | None:
    """The per-set row cap of ``name`` when it left out rows of some test set, else None."""
    cap = cfg.eval_cap(name)
    if data is None or cap is None or all(len(t) <= cap for t in data.tests.values()):
        return None
    return cap
