"""The systems under test: what each one is, where its files are, and how it is built.

A :class:`SystemSpec` is plain JSON: the worker and cold-start processes receive it and
load the system from it. :func:`prepare_systems` resolves the bundle and the build
directory (``edgesent build`` output), exporting or quantizing what the build did not
leave behind, into the benchmark work directory.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.config import REFERENCE, SLOW_SYSTEMS, RunConfig
from benchmarks.workload import LABELS, EvalData

logger = logging.getLogger(__name__)

TITLES = {
    "edgesent": "edgesent (int8 student, Classifier API)",
    "student-fp32": "student, fp32 ONNX",
    "teacher-int8": "teacher, int8 ONNX",
    "teacher-pytorch": "teacher, transformers pipeline (PyTorch fp32)",
    "distilbert-ref": "DistilBERT-base, transformers pipeline (PyTorch fp32)",
    "teacher-optimum": "teacher, Optimum ORTModel pipeline (fp32 ONNX)",
    "tfidf-lr": "TF-IDF + logistic regression (scikit-learn)",
    "vader": "VADER (rule-based, no training)",
}
# What `pip install` needs for each kind of system; their requirements follow.
ENV_ROOTS = {
    "edgesent": ("edgesent",),
    "onnx": ("edgesent",),  # the same runtime: onnxruntime + tokenizers + edgesent's encoder
    "pipeline": ("transformers", "torch"),
    "optimum": ("optimum-onnx", "onnxruntime", "torch"),
    "tfidf": ("scikit-learn",),
    "vader": ("vaderSentiment",),
}
PACKAGE_FP32 = "onnx-fp32/model.onnx"
SHIP_PATTERNS = ("*.onnx", "*.onnx_data", "*.safetensors", "pytorch_model.bin", "config.json",
                 "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.txt", "edgesent.json")


@dataclass
class SystemSpec:
    """One system: its runner kind, model and tokenizer paths, and what it ships."""

    name: str
    kind: str
    title: str
    model: str | None = None
    tokenizer: str | None = None
    encoding: dict[str, Any] | None = None
    max_length: int = 256
    precision: str = "fp32"
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    accuracy: bool = True
    model_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def slow(self) -> bool:
        return self.name in SLOW_SYSTEMS

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2), "utf-8")
        return path

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BuildLayout:
    """Where ``edgesent build`` leaves its models."""

    root: Path
    teacher: Path | None
    student: Path | None
    fp32_onnx: Path | None

    @classmethod
    def find(cls, root: Path) -> BuildLayout:
        """Teacher ``teacher/best``, student ``student-small`` (vocabulary shrunk, preferred)
        or ``student/best``, and the fp32 ONNX export of that student under ``work/``."""
        teacher = root / "teacher" / "best"
        student = next((p for p in (root / "student-small", root / "student" / "best")
                        if (p / "config.json").is_file()), None)
        fp32 = find_fp32_export(root / "work", student) if student else None
        return cls(root, teacher if (teacher / "config.json").is_file() else None, student, fp32)


def ship_files(directory: Path) -> list[str]:
    """Files of a model directory that a deployment needs (weights, config, tokenizer)."""
    found = {p for pattern in SHIP_PATTERNS for p in directory.glob(pattern) if p.is_file()}
    return sorted(str(p) for p in found)


def is_quantized(onnx_path: Path) -> bool:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    return bool(ops & {"MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul",
                       "DequantizeLinear", "QAttention", "DynamicQuantizeMatMul"})


def embedding_rows(onnx_path: Path) -> int | None:
    """Rows of the largest table a ``Gather`` reads: the vocabulary size of the graph."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    dims = {init.name: list(init.dims) for init in model.graph.initializer}
    rows = [dims[node.input[0]][0] for node in model.graph.node
            if node.op_type == "Gather" and node.input and dims.get(node.input[0])]
    return max(rows) if rows else None


def vocab_size(model_dir: Path) -> int | None:
    config = model_dir / "config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text("utf-8")).get("vocab_size")


def find_fp32_export(work: Path, student: Path) -> Path | None:
    """An fp32 ``*.onnx`` under the build's work directory whose vocabulary matches the
    student's (so the export of the full-vocabulary student is not taken for the shrunk
    one)."""
    if not work.is_dir():
        return None
    wanted = vocab_size(student)
    # edgesent_export.package writes the fp32 export to work/onnx-fp32/model.onnx.
    candidates = [work / PACKAGE_FP32] if (work / PACKAGE_FP32).is_file() else []
    candidates += sorted(work.rglob("*.onnx"), key=lambda p: (len(p.parts), str(p)))
    for path in candidates:
        try:
            if is_quantized(path):
                continue
            if wanted is not None and embedding_rows(path) not in (None, wanted):
                continue
        except Exception as exc:  # an unreadable file is not the export we look for
            logger.debug("skipping %s: %s", path, exc)
            continue
        return path
    return None


def _bundle_spec(cfg: RunConfig) -> tuple[SystemSpec, Any]:
    from edgesent.bundle import load_bundle
    from edgesent.models import DEFAULT_MODEL

    path = Path(cfg.bundle) if cfg.bundle else Path(DEFAULT_MODEL)
    bundle = load_bundle(path)
    spec = SystemSpec(
        name="edgesent", kind="edgesent", title=TITLES["edgesent"], model=str(bundle.path),
        tokenizer=str(bundle.tokenizer_path), encoding=vars(bundle.encoding),
        max_length=bundle.encoding.max_length,
        precision=str(bundle.manifest.model.get("precision", "int8")), labels=list(bundle.labels),
        model_files=sorted(str(p) for p in bundle.path.iterdir() if p.is_file()),
        notes=[f"bundle {bundle.path} ({bundle.manifest.model.get('precision', '?')})"],
    )
    return spec, bundle


def prepare_systems(cfg: RunConfig, data: EvalData | None, work: Path
                    ) -> tuple[list[SystemSpec], dict[str, str], dict[str, Any]]:
    """Specs of the selected systems that could be prepared, the reasons the others could
    not, and facts about the sources (bundle quantization, build layout)."""
    from benchmarks import prepare

    wanted = set(cfg.systems)
    specs: dict[str, SystemSpec] = {}
    skipped: dict[str, str] = {}
    facts: dict[str, Any] = {}
    bundle = None
    try:
        spec, bundle = _bundle_spec(cfg)
        facts["bundle"] = {"path": spec.model, "quantization": bundle.manifest.model.get(
            "quantization"), "encoding": spec.encoding}
        if "edgesent" in wanted:
            specs["edgesent"] = spec
    except Exception as exc:
        skipped["edgesent"] = f"no usable bundle: {exc}"
    encoding = dict(bundle.encoding.__dict__) if bundle else {
        "max_length": 256, "truncation": "head_tail", "head_tokens": 64}
    labels = list(bundle.labels) if bundle else list(LABELS)
    layout = BuildLayout.find(Path(cfg.build_dir)) if cfg.build_dir else None
    if layout:
        facts["build"] = {k: str(v) if v else None for k, v in vars(layout).items()}
    need_build = {"student-fp32", "teacher-int8", "teacher-pytorch", "teacher-optimum"} & wanted
    no_build = ("no build directory (--build-dir DIR, made by `edgesent build`)"
                if layout is None else None)
    for name in sorted(need_build, key=cfg.systems.index):
        reason = no_build or (None if (layout.student if name == "student-fp32" else
                                       layout.teacher) else f"{layout.root}: no {name} model")
        if reason:
            skipped[name] = reason
            continue
        try:
            specs[name] = prepare.build_dir_system(name, layout, work, encoding, labels, bundle)
        except Exception as exc:
            logger.exception("preparing %s failed", name)
            skipped[name] = f"preparing failed: {type(exc).__name__}: {exc}"
    if REFERENCE in wanted:
        tokenizer_dir = layout.teacher if layout and layout.teacher else prepare.minilm_dir()
        if tokenizer_dir is None:
            skipped[REFERENCE] = "needs a BERT WordPiece tokenizer: give --build-dir"
        else:
            specs[REFERENCE] = prepare.reference_system(cfg.reference_config, tokenizer_dir,
                                                        work, encoding, labels)
    if "tfidf-lr" in wanted:
        if data is None:
            skipped["tfidf-lr"] = "needs the training data (--data DIR)"
        else:
            specs["tfidf-lr"] = prepare.tfidf_system(data, work, cfg.seed)
    if "vader" in wanted:
        specs["vader"] = prepare.vader_system()
    ordered = [specs[name] for name in cfg.systems if name in specs]
    for name, reason in skipped.items():
        logger.warning("system %s skipped: %s", name, reason)
    return ordered, skipped, facts
