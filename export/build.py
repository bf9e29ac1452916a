"""``edgesent build``: every stage from reviews to a model bundle, resumable.

Stages, each in its own folder of the build directory and skipped when its result is
already there (so a rerun after a crash or a session's end picks up where it stopped):

``teacher/`` fine-tune → ``student/`` distil (from the teacher's soft labels, the student
cut from the teacher or from ``--student-init``) → ``student-small/`` shrink the vocabulary
(optional) → ``bundle/`` export to ONNX, quantize to int8, gate, calibrate, write bundle.

Under ``torchrun`` every process trains the teacher and the student data-parallel; the
stages that write without training (the build directory's checks, the vocabulary, the
bundle, the summary) run on rank 0 alone while the others wait, and every rank returns
rank 0's summary or raises its error, so all exit with the same status::

    torchrun --standalone --nproc_per_node 2 -m edgesent_export build runs/build \\
        --train reviews.csv --test test.csv --threads 1

>>> plan = BuildPlan(load_sources("sources.json"), Path("runs/build"))  # doctest: +SKIP
>>> summary = run_build(plan)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgesent.bundle import MANIFEST_NAME
from edgesent.errors import EdgesentError
from edgesent.tokenization import EncodingSettings

from . import DEFAULT_BASE_MODEL
from .build_checks import check_plan
from .distill import DistillSettings
from .distributed import context, main_process_only
from .gate import GateConfig, LabelledSet
from .provenance import model_label, model_provenance, redacted_command
from .sources import Sources
from .training import TrainConfig
from .training_run import RESULT_FILE, TrainingResult

logger = logging.getLogger(__name__)

SUMMARY_FILE = "build_summary.json"
# Where a build may end early: the teacher trained, or its logits cached as well (what
# edgesent record-teacher keeps).
STOP_AFTER = ("teacher", "logits")


@dataclass
class BuildPlan:
    """Everything one build needs; the defaults are the ones the default model used."""

    sources: Sources
    out_dir: Path
    # the teacher: fine-tuned from base_model, or reused from teacher_dir
    base_model: str = DEFAULT_BASE_MODEL
    teacher_dir: Path | None = None
    teacher: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3.0))
    class_weights: bool = False
    # the student
    student: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=3.0, learning_rate=1e-4)
    )
    distillation: DistillSettings = field(default_factory=DistillSettings)
    # data and encoding, shared by every stage
    encoding: EncodingSettings = field(default_factory=EncodingSettings)
    val_fraction: float = 0.05
    seed: int = 13
    # the bundle: vocabulary, quantization and gate, what the manifest records
    vocab_min_count: int | None = None
    bundle_max_lengths: tuple[int, ...] = ()  # reading lengths to choose from on validation
    gate: GateConfig = field(default_factory=GateConfig)
    name: str | None = None
    licences: dict[str, str] = field(default_factory=dict)
    progress: bool = True
    # end after this stage (one of STOP_AFTER): a big teacher's stages in one session
    stop_after: str | None = None

    def __post_init__(self) -> None:
        if self.stop_after not in (None, *STOP_AFTER):
            raise ValueError(f"stop after {self.stop_after!r}: expected one of {STOP_AFTER}")


def _done(stage_dir: Path) -> bool:
    """Whether a training stage finished, as rank 0 sees it (every rank skips alike)."""
    return bool(context().broadcast((stage_dir / RESULT_FILE).exists()))


def run_build(plan: BuildPlan) -> dict[str, Any]:
    """Run (or finish) every stage of ``plan`` and return the build summary.

    Every input is checked first (:func:`~edgesent_export.build_checks.check_plan`), so a
    build that cannot finish fails before any training.
    """
    from .distill import distill
    from .finetune import finetune

    main_process_only(check_plan, plan)  # it makes the build directory
    out = plan.out_dir
    started = time.perf_counter()
    data = plan.sources.format(val_fraction=plan.val_fraction, seed=plan.seed)
    if context().is_main:
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
    if plan.stop_after is not None:
        return _stop_early(plan, data, teacher_best, student_out, timings, started)
    if _done(student_out):
        logger.info("student: done already (%s), skipping", student_out / RESULT_FILE)
    else:
        t0 = time.perf_counter()
        settings = plan.distillation
        result = distill(
            teacher_best, data, student_out, student_init=settings.student_init,
            unlabelled=plan.sources.read_unlabelled(), n_layers=settings.layers,
            ffn=settings.ffn,
            config=plan.student, encoding=plan.encoding, temperature=settings.temperature,
            alpha=settings.alpha, logits_from=settings.teacher_logits,
            early_stop=settings.early_stop, teacher_max_length=settings.teacher_max_length,
            reuse_logits=settings.reuse_logits, resume=True,
            progress=plan.progress,
        )
        _check_finished(result, "student")
        timings["student"] = time.perf_counter() - t0
    return main_process_only(_finish, plan, data, teacher_best, timings, started)


def _finish(plan: BuildPlan, data: Any, teacher_best: Path, timings: dict[str, float],
            started: float) -> dict[str, Any]:
    """The stages after training (vocabulary, bundle) and the build summary: rank 0's."""
    out = plan.out_dir
    student_best = out / "student" / "best"
    model_for_bundle = student_best
    vocab_info = None
    if plan.vocab_min_count:
        from .vocab import shrink_vocabulary

        small = out / "student-small"
        if (small / "config.json").exists():
            vocab_info = json.loads((small / "vocab_shrink.json").read_text())
            _check_same(small, "vocabulary min count", vocab_info.get("min_count"),
                        plan.vocab_min_count)
            logger.info("vocabulary: shrunk already (%s), skipping", small)
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
        manifest = json.loads((bundle_dir / MANIFEST_NAME).read_text())
        metrics = manifest["metrics"]
        _check_same(bundle_dir, "vocabulary min count",
                    (manifest["provenance"].get("vocabulary") or {}).get("min_count"),
                    plan.vocab_min_count)
        tried = sorted(int(n) for n in metrics.get("max_length", {}).get("fp32_accuracy", {}))
        _check_same(bundle_dir, "reading lengths", tried or [manifest["encoding"]["max_length"]],
                    sorted({plan.encoding.max_length, *plan.bundle_max_lengths}))
        logger.info("bundle: written already (%s), skipping", bundle_dir)
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


def _stop_early(plan: BuildPlan, data: Any, teacher_best: Path, student_out: Path,
                timings: dict[str, float], started: float) -> dict[str, Any]:
    """End after the teacher, or after caching its logits where the student stage will
    look for them; the summary says where it stopped."""
    from .distill import TEACHER_LOGITS_FILE, TEACHER_ONNX_DIR, distillation_texts, teacher_logits
    from .distributed import main_process_first

    logits = student_out / TEACHER_LOGITS_FILE
    if plan.stop_after == "logits":
        t0 = time.perf_counter()
        student_out.mkdir(parents=True, exist_ok=True)
        _, texts = distillation_texts(data, plan.sources.read_unlabelled())
        with main_process_first():
            teacher_logits(teacher_best, texts, plan.distillation.teacher_encoding(plan.encoding),
                           source=plan.distillation.teacher_logits, cache=logits,
                           work_dir=student_out / TEACHER_ONNX_DIR,
                           threads=plan.student.threads, progress=plan.progress,
                           reuse=plan.distillation.reuse_logits)
        timings["logits"] = time.perf_counter() - t0
    summary = {
        "out_dir": str(plan.out_dir),
        "stopped_after": plan.stop_after,
        "teacher": str(teacher_best),
        "teacher_logits": str(logits) if plan.stop_after == "logits" else None,
        "stage_seconds": {k: round(v, 1) for k, v in timings.items()},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if context().is_main:
        (plan.out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    return summary


def _check_same(path: Path, what: str, before: Any, now: Any) -> None:
    """A finished stage rerun with other settings: say so rather than reuse or overwrite it."""
    if before != now:
        raise EdgesentError(f"{path} was made with {what} {before}, this build asks for "
                            f"{now}: move it away (or build in a new folder) to redo it")


def _check_finished(result: TrainingResult, stage: str) -> None:
    if not result.finished:
        raise EdgesentError(f"{result.out_dir}: the {stage} stopped before the end; "
                            "rerun the build to resume it")


def _package(
    plan: BuildPlan,
    data: Any,
    model_dir: Path,
    bundle_dir: Path,
    teacher_dir: Path,
    vocab_info: dict[str, Any] | None,
) -> dict[str, Any]:
    from .package import PackageInputs, package_model

    teacher_result = _read_result(teacher_dir.parent)
    student_result = _read_result(plan.out_dir / "student")
    first = next(iter(data.test))  # check_plan made sure there is one

    def labelled(rows: list[Any]) -> LabelledSet:
        return LabelledSet([r.text for r in rows], [data.labels.index(r.label) for r in rows],
                           [r.domain for r in rows])

    base = plan.base_model if plan.teacher_dir is None else teacher_result.get(
        "base_model", str(plan.teacher_dir))
    provenance = {
        **model_provenance(base),
        "teacher": {
            "path": _inside(teacher_dir, plan.out_dir),
            "architecture": _architecture(teacher_dir),
            "trained_on": teacher_result.get("hardware"),
            "wall_seconds": teacher_result.get("wall_seconds"),
            "train_seconds": teacher_result.get("train_seconds"),
            "test": {k: {"accuracy": v.get("accuracy"), "per_domain": v.get("per_domain")}
                     for k, v in teacher_result.get("test", {}).items()},
        },
        "student": {
            "layers": student_result.get("n_layers"),
            "ffn": student_result.get("ffn"),
            "trained_on": student_result.get("hardware"),
            "init": _init_label(plan),
            "distillation": student_result.get("distillation"),
            "val_teacher": student_result.get("val_teacher"),
        },
        "data": {
            "sources": plan.sources.describe(),
            "rows": data.summary.get("rows"),
            "rows_dropped": data.summary.get("rows_dropped"),
        },
        "licences": plan.licences,
        "vocabulary": vocab_info,
        "encoding": asdict(plan.encoding),
        "test_set": first,
        "command": redacted_command(),
    }
    inputs = PackageInputs(
        model_dir, data.labels, plan.encoding, test=labelled(data.test[first]),
        val=labelled(data.val),
        extra_test_sets={name: labelled(rows) for name, rows in data.test.items()
                         if name != first},
        provenance=provenance, name=plan.name, max_lengths=plan.bundle_max_lengths,
    )
    result = package_model(inputs, bundle_dir, plan.gate, work_dir=plan.out_dir / "work")
    return result.metrics


def _init_label(plan: BuildPlan) -> str:
    """What initialised the student: ``"teacher"``, or the --student-init model's name."""
    init = plan.distillation.student_init
    return "teacher" if init is None else model_label(init)


def _inside(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else as :func:`model_label` names it
    (a run's or record's ``best`` folder with its parent's name, which tells it apart).

    >>> _inside(Path("/elsewhere/teacher-mpnet/best"), Path("runs/v2"))
    'teacher-mpnet/best'
    """
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        if path.name == "best" and path.parent.name:
            return f"{path.parent.name}/best"
        return model_label(path)


def _architecture(model_dir: Path) -> dict[str, Any]:
    config = json.loads((model_dir / "config.json").read_text())
    keys = ("model_type", "num_hidden_layers", "n_layers", "hidden_size", "dim", "vocab_size")
    return {k: config[k] for k in keys if k in config}


def _read_result(stage_dir: Path) -> dict[str, Any]:
    path = stage_dir / RESULT_FILE
    return json.loads(path.read_text()) if path.exists() else {}
