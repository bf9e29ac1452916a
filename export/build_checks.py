"""Checks a build plan before any stage starts: a build that cannot finish fails in a
moment with one clear message, not hours later with a traceback.

What is checked without reading the data or loading a model: a test set for the accuracy
gate; every data file there; the base model or teacher (and ``--student-init``) a
directory with ``config.json`` (a hub id is taken on trust), long enough for
``--max-length`` and ``--bundle-max-length``; the student's initialisation deep enough
for ``--student-layers`` and of a family the student can be cut from; an output
directory that can be written.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edgesent.errors import InputError

from .provenance import looks_like_path
from .sources import Source

LAYER_KEYS = ("num_hidden_layers", "n_layers")
FFN_KEYS = ("intermediate_size", "hidden_dim")
POSITION_KEYS = ("max_position_embeddings",)
# Teachers whose graph export_onnx accepts (input_ids, attention_mask only).
ONNX_TEACHERS = ("mpnet", "distilbert")


def check_plan(plan: Any) -> None:
    """Raise :class:`~edgesent.errors.InputError` naming the first unusable input of a
    :class:`~edgesent_export.build.BuildPlan`."""
    sources = plan.sources
    if not sources.test:
        raise InputError("the build needs a test set for the accuracy gate: give --test FILE "
                         "(or a 'test' entry in the --sources file)")
    roles = [("training data", s) for s in sources.train]
    roles += [(f"test set {name!r}", s) for name, s in sources.test.items()]
    for role, source in [*roles, *(("unlabelled data", s) for s in sources.unlabelled)]:
        check_source(source, role)
    if plan.vocab_min_count is not None and plan.vocab_min_count < 1:
        raise InputError(f"the vocabulary min count must be at least 1, got {plan.vocab_min_count}")
    model = plan.teacher_dir if plan.teacher_dir is not None else plan.base_model
    option = "--teacher" if plan.teacher_dir is not None else "--model"
    check_distill(model, plan.distillation, plan.encoding.max_length, option)
    shortest = min(plan.bundle_max_lengths, default=plan.encoding.max_length)
    if shortest < plan.encoding.head_tokens:
        raise InputError(f"--bundle-max-length {shortest}: shorter than the "
                         f"{plan.encoding.head_tokens} --head-tokens kept from each review")
    longest = max(plan.bundle_max_lengths, default=0)
    if longest > plan.encoding.max_length:
        init = plan.distillation.student_init or model
        config = model_config(init, "--student-init")
        if config is not None:
            check_model_fits(config, init, None, longest, "--bundle-max-length")
    check_writable(plan.out_dir)


def check_distill(teacher: str | os.PathLike[str], settings: Any, max_length: int,
                  option: str = "TEACHER") -> None:
    """The teacher (and ``--student-init``) are model directories, the student fits the
    encoder it is cut from, reviews fit both models' positions, and the student can be
    cut from that encoder (a BERT or DistilBERT; an MPNet teacher needs a
    ``--student-init``). ``settings`` is a :class:`~edgesent_export.distill.DistillSettings`."""
    from .student import SUPPORTED_TEACHERS

    teacher_config = model_config(teacher, option)
    init = settings.student_init
    init_config = model_config(init, "--student-init") if init is not None else teacher_config
    source = init if init is not None else teacher
    if init_config is not None:
        check_model_fits(init_config, source, settings.layers, max_length)
        units = next((init_config[k] for k in FFN_KEYS if isinstance(init_config.get(k), int)),
                     None)
        if settings.ffn is not None and units is not None and settings.ffn > units:
            raise InputError(f"--student-ffn {settings.ffn}: {Path(source).name} has "
                             f"{units} feed-forward units per layer; prune to 1..{units}")
    if teacher_config is not None and init is not None:
        check_model_fits(teacher_config, teacher, None, max_length)
    if settings.teacher_logits == "onnx-int8" and teacher_config is not None and \
            teacher_config.get("model_type") not in ONNX_TEACHERS:
        raise InputError(f"--teacher-logits onnx-int8: the teacher {Path(teacher).name} is a "
                         f"{teacher_config.get('model_type')!r} model, whose graph the ONNX "
                         f"export refuses (it takes token_type_ids); use one of "
                         f"{', '.join(ONNX_TEACHERS)}, or --teacher-logits torch")
    _check_reuse(teacher, settings.reuse_logits)
    if init_config is None:
        return
    kind = init_config.get("model_type")
    if kind not in SUPPORTED_TEACHERS:
        where = "--student-init" if init is not None else option
        raise InputError(f"{where} {source}: a {kind!r} model cannot initialise the "
                         f"DistilBERT student; give --student-init DIR, a fine-tuned "
                         f"{' or '.join(SUPPORTED_TEACHERS)} encoder of the student's width "
                         f"(the teacher may stay {kind!r})")


def _check_reuse(teacher: str | os.PathLike[str], record: Path | None) -> None:
    """``--reuse-logits`` names a teacher record, and the teacher has weights to read the
    texts the record cannot give."""
    from .teacher_record import RECORD_FILE, is_record

    if record is None:
        return
    if not is_record(record):
        raise InputError(f"--reuse-logits {record}: not a teacher record (its best/ folder, "
                         f"with {RECORD_FILE} and no weights)")
    if is_record(teacher):
        raise InputError(f"--reuse-logits {record}: the teacher {teacher} is a record too, "
                         "with no weights to read the texts again; give the teacher itself")


def check_source(source: Source, role: str) -> None:
    """A local data file (anything that exists or has a file suffix) must be a file."""
    path = Path(source.path)
    if path.is_dir():
        raise InputError(f"{path}: a directory, not a file ({role})")
    if not path.exists() and path.suffix:
        raise InputError(f"{path}: no such file ({role})")


def model_config(model: str | os.PathLike[str], option: str) -> dict[str, Any] | None:
    """The ``config.json`` of a local model directory; None for a hub id."""
    path = Path(model)
    if not path.exists():
        if looks_like_path(model):
            raise InputError(f"{option} {model}: no such model directory")
        return None
    if not (path / "config.json").is_file():
        raise InputError(f"{option} {model}: not a model directory (no config.json)")
    try:
        return json.loads((path / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path / 'config.json'}: unreadable ({exc})") from None


def check_model_fits(config: dict[str, Any], model: Any, layers: int | None,
                     max_length: int, option: str = "--max-length") -> None:
    """The student cannot be deeper than the model it is cut from, nor reviews longer
    than its positions."""
    depth = next((config[k] for k in LAYER_KEYS if isinstance(config.get(k), int)), None)
    if layers is not None and depth is not None and layers > depth:
        raise InputError(f"--student-layers {layers}: {Path(model).name} has "
                         f"{depth} layers; the student needs 1..{depth} layers")
    positions = next((config[k] for k in POSITION_KEYS if isinstance(config.get(k), int)), None)
    if positions is not None and max_length > positions:
        raise InputError(f"{option} {max_length}: the model {Path(model).name} has "
                         f"{positions} positions")


def check_writable(out_dir: Path) -> None:
    """``out_dir`` is a directory (made here if need be) that this process can write in."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: the build directory exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot write the build there ({exc.strerror})") from None
