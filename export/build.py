"""``edgesent build``: every stage from reviews to a model bundle, resumable.

Stages, each in its own folder of the build directory and skipped when its result is
already there (so a rerun after a crash or a session's end picks up where it stopped):

``teacher/`` fine-tune → ``student/`` distil → ``student-small/`` shrink the vocabulary
(optional) → ``bundle/`` export to ONNX, quantize to int8, gate, calibrate, write bundle.

>>> plan = BuildPlan(load_sources("sources.json"), Path("runs/build"))  # doctest: +SKIP
>>> summary = run_build(plan)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesent.bundle import MANIFEST_NAME
from edgesent.tokenization import EncodingSettings

from .finetune import RESULT_FILE, FinetuneResult
from .sources import Sources
from .training import TrainConfig

logger = logging.getLogger(__name__)

SUMMARY_FILE = "build_summary.json"


@dataclass
class BuildPlan:
    """Everything one build needs; the defaults are the ones the default model used."""

    sources: Sources
    out_dir: Path
    base_model: str = "distilbert-base-uncased"
    teacher_dir: Path | None = None  # reuse an already fine-tuned teacher
    teacher: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3.0))
    student: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=3.0, learning_rate=1e-4)
    )
    student_layers: int | None = None
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5
    encoding: EncodingSettings = field(default_factory=EncodingSettings)
    class_weights: bool = False
    vocab_min_count: int | None = None
    target: str = "avx512_vnni"
    quantization_mode: str = "dynamic"
    max_drop: float = 1.0
    val_fraction: float = 0.05
    seed: int = 13
    name: str | None = None
    licences: dict[str, str] = field(default_factory=dict)
    progress: bool = True


def _done(stage_dir: Path) -> bool:
    return (stage_dir / RESULT_FILE).exists()


def run_build(plan: BuildPlan) -> dict[str, Any]:
    """Run (or finish) every stage of ``plan`` and return the build summary."""
    from .distill import distill
    from .finetune import finetune

    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = plan.sources.format(val_fraction=plan.val_fraction, seed=plan.seed)
    data.save_summary(out / "data_summary.json")
    timings: dict[str, float] = {}

    teacher_out = out / "teacher"
    if plan.teacher_dir is not None:
        teacher_best = Path(plan.teacher_dir)
        logger.info("teacher: using the fine-tuned model in %s", teacher_best)
    elif _done(teacher_out):
        teacher_best = teacher_out / "best"
        logger.info("teacher: done already (%s), skipping", teacher_out / RESULT_FILE)
    else:
        t0 = time.perf_counter()
        result = finetune(
            plan.base_model, data, teacher_out, config=plan.teacher, encoding=plan.encoding,
            weighting="auto" if plan.class_weights else None, resume=True,
            progress=plan.progress,
        )
        _check_finished(result, "teacher")
        teacher_best = result.model_dir
        timings["teacher"] = time.perf_counter() - t0

    student_out = out / "student"
    if _done(student_out):
        logger.info("student: done already (%s), skipping", student_out / RESULT_FILE)
    else:
        t0 = time.perf_counter()
        result = distill(
            teacher_best, data, student_out, unlabelled=plan.sources.read_unlabelled(),
            n_layers=plan.student_layers, config=plan.student, encoding=plan.encoding,
            temperature=plan.distill_temperature, alpha=plan.distill_alpha, resume=True,
            progress=plan.progress,
        )
        _check_finished(result, "student")
        timings["student"] = time.perf_counter() - t0
    student_best = student_out / "best"

    model_for_bundle = student_best
    vocab_info = None
    if plan.vocab_min_count:
        from .vocab import shrink_vocabulary

        small = out / "student-small"
        if (small / "config.json").exists():
            logger.info("vocabulary: shrunk already (%s), skipping", small)
            vocab_info = json.loads((small / "vocab_shrink.json").read_text())
        else:
            t0 = time.perf_counter()
            corpus = [r.text for r in data.train] + [r.text for r in data.val]
            corpus += [r.text for r in plan.sources.read_unlabelled()]
            shrink = shrink_vocabulary(student_best, corpus, small, min_count=plan.vocab_min_count)
            vocab_info = shrink.to_dict()
            (small / "vocab_shrink.json").write_text(json.dumps(vocab_info, indent=2))
            timings["vocabulary"] = time.perf_counter() - t0
        model_for_bundle = small

    bundle_dir = out / "bundle"
    if (bundle_dir / MANIFEST_NAME).exists():
        logger.info("bundle: written already (%s), skipping", bundle_dir)
        metrics = json.loads((bundle_dir / MANIFEST_NAME).read_text())["metrics"]
    else:
        t0 = time.perf_counter()
        metrics = _package(plan, data, model_for_bundle, bundle_dir, teacher_best, vocab_info)
        timings["package"] = time.perf_counter() - t0
    summary = {
        "out_dir": str(out),
        "bundle": str(bundle_dir),
        "teacher": str(teacher_best),
        "student": str(student_best),
        "stage_seconds": {k: round(v, 1) for k, v in timings.items()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "metrics": metrics,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    return summary


def _check_finished(result: FinetuneResult, stage: str) -> None:
    if not result.val_metrics:
        raise RuntimeError(f"{stage} stopped before the end; rerun the build to resume it")


def _package(
    plan: BuildPlan,
    data: Any,
    model_dir: Path,
    bundle_dir: Path,
    teacher_dir: Path,
    vocab_info: dict[str, Any] | None,
) -> dict[str, Any]:
    from .package import package_model

    teacher_result = _read_result(teacher_dir.parent)
    student_result = _read_result(plan.out_dir / "student")
    tests = {name: rows for name, rows in data.test.items()}
    first = next(iter(tests)) if tests else None
    if first is None:
        raise RuntimeError("the build needs at least one test set for the accuracy gate")
    provenance = {
        "base_model": plan.base_model,
        "teacher": {
            "path": str(teacher_dir),
            "architecture": _architecture(teacher_dir),
            "test": {k: v.get("accuracy") for k, v in teacher_result.get("test", {}).items()},
        },
        "student": {
            "layers": student_result.get("n_layers"),
            "distillation": student_result.get("distillation"),
        },
        "data": {
            "sources": plan.sources.describe(),
            "rows": data.summary.get("rows"),
            "rows_dropped": data.summary.get("rows_dropped"),
        },
        "licences": plan.licences,
        "vocabulary": vocab_info,
        "encoding": vars(plan.encoding),
        "test_set": first,
        "command": " ".join(shlex.quote(a) for a in ["edgesent", *sys.argv[1:]]),
    }
    result = package_model(
        model_dir,
        bundle_dir,
        labels=data.labels,
        encoding=plan.encoding,
        test_texts=[r.text for r in tests[first]],
        test_labels=[data.labels.index(r.label) for r in tests[first]],
        val_texts=[r.text for r in data.val],
        val_labels=[data.labels.index(r.label) for r in data.val],
        target=plan.target,
        mode=plan.quantization_mode,
        max_drop=plan.max_drop,
        extra_test_sets={
            name: ([r.text for r in rows], [data.labels.index(r.label) for r in rows])
            for name, rows in tests.items()
            if name != first
        },
        provenance=provenance,
        work_dir=plan.out_dir / "work",
        name=plan.name,
        progress=plan.progress,
    )
    return result.metrics


def _architecture(model_dir: Path) -> dict[str, Any]:
    config = json.loads((model_dir / "config.json").read_text())
    keys = ("model_type", "num_hidden_layers", "n_layers", "hidden_size", "dim", "vocab_size")
    return {k: config[k] for k in keys if k in config}


def _read_result(stage_dir: Path) -> dict[str, Any]:
    path = stage_dir / RESULT_FILE
    return json.loads(path.read_text()) if path.exists() else {}
