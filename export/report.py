"""The table ``edgesent build`` ends with: size, accuracy and single-review latency of the
teacher (PyTorch fp32), the student (ONNX fp32) and the shipped student (ONNX int8).

Latency is the median of repeated single-review predictions of a typical (about 64-token)
review, measured side by side in this process, one model after the other, interleaved.

>>> print(build_table(json.load(open("runs/build/build_summary.json"))))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgesent.bundle import load_bundle
from edgesent.output import markdown_table
from edgesent.runner import Runner
from edgesent.tokenization import TextEncoder

from .teacher_record import is_record

TYPICAL_REVIEW = (
    "I bought this blender for smoothies and it worked well for the first month, but then "
    "the motor started to smell and the lid cracked. Customer service was polite yet slow, "
    "and the replacement part took three weeks to arrive. Not terrible, not great either."
)


def dir_size(path: Path) -> int:
    """Bytes of every file under ``path`` (or of ``path`` itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _time_calls(calls: dict[str, Callable[[], Any]], repeats: int = 30) -> dict[str, float]:
    for call in calls.values():
        for _ in range(3):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():  # interleaved, so drift hits every model alike
            started = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(s) * 1000 for name, s in samples.items()}


def measure_latency(
    teacher_dir: Path | None, student_onnx: Path | None, bundle_dir: Path, threads: int = 1
) -> dict[str, float]:
    """Median milliseconds per single typical review, for each of the three models (the
    teacher's only when ``teacher_dir`` is given)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from edgesent import Classifier

    from .training_run import load_tokenizer, make_encoder

    torch.set_num_threads(threads)
    bundle = load_bundle(bundle_dir)
    classifier = Classifier.load(bundle_dir, threads=threads)
    calls: dict[str, Callable[[], Any]] = {
        "student int8 (bundle)": lambda: classifier.predict(TYPICAL_REVIEW),
    }
    if teacher_dir is not None:
        teacher = AutoModelForSequenceClassification.from_pretrained(str(teacher_dir)).eval()
        teacher_encoder = make_encoder(load_tokenizer(teacher_dir), bundle.encoding)
        ids, mask = teacher_encoder.encode([TYPICAL_REVIEW])
        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)

        def run_teacher() -> None:
            with torch.inference_mode():
                teacher(input_ids=t_ids, attention_mask=t_mask)

        calls["teacher (PyTorch fp32)"] = run_teacher
    if student_onnx is not None and student_onnx.exists():
        from tokenizers import Tokenizer

        tokenizer = student_onnx.parent / "tokenizer.json"
        if not tokenizer.exists():
            tokenizer = bundle.tokenizer_path
        encoder = TextEncoder(Tokenizer.from_file(str(tokenizer)), bundle.encoding)
        runner = Runner.from_onnx(student_onnx, encoder, threads)
        calls["student fp32 (ONNX)"] = lambda: runner.logits([TYPICAL_REVIEW], batch_size=1)
    return _time_calls(calls)


def find_fp32_onnx(work_dir: Path) -> Path | None:
    """The student's fp32 export inside a build's work directory, if it is there."""
    path = work_dir / "onnx-fp32" / "model.onnx"
    return path if path.exists() else None


def build_table(summary: dict[str, Any], threads: int = 1) -> str:
    """A Markdown table comparing teacher, student fp32 and student int8."""
    out_dir = Path(summary["out_dir"])
    bundle_dir = Path(summary["bundle"])
    teacher_dir = Path(summary["teacher"])
    fp32 = find_fp32_onnx(out_dir / "work")
    timed_teacher = None if is_record(teacher_dir) else teacher_dir  # a record has no weights
    latency = measure_latency(timed_teacher, fp32, bundle_dir, threads=threads)
    manifest = json.loads((bundle_dir / "edgesent.json").read_text())
    teacher_result = json.loads((teacher_dir.parent / "result.json").read_text()) if (
        teacher_dir.parent / "result.json"
    ).exists() else {}
    rows = [
        ("teacher (PyTorch fp32)", dir_size(teacher_dir / "model.safetensors"),
         _accuracies(teacher_result.get("test", {})), latency.get("teacher (PyTorch fp32)")),
        ("student fp32 (ONNX)", dir_size(fp32) if fp32 else None,
         _accuracies(_variant(manifest, "onnx_fp32")), latency.get("student fp32 (ONNX)")),
        ("student int8 (bundle)", dir_size(bundle_dir),
         _accuracies(_variant(manifest, "onnx_int8")), latency.get("student int8 (bundle)")),
    ]
    sets = sorted({name for _, _, acc, _ in rows for name in acc})
    header = ["model", "size (MB)", *[f"accuracy {s}" for s in sets],
              f"latency ms (batch 1, {threads} thread)"]
    body = [[name, f"{size / 1e6:.1f}" if size else "-",
             *[f"{acc[s]:.4f}" if s in acc else "-" for s in sets],
             f"{ms:.1f}" if ms is not None else "-"] for name, size, acc, ms in rows]
    return "\n".join(markdown_table(header, body))


def _variant(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    """Per-test-set metrics of one model variant (``onnx_fp32``, ``onnx_int8``)."""
    metrics = manifest.get("metrics", {})
    first = manifest.get("provenance", {}).get("test_set", "test")
    found: dict[str, Any] = {}
    if isinstance(metrics.get("test", {}).get(key), dict):
        found[first] = metrics["test"][key]
    for name, value in metrics.get("extra_test_sets", {}).items():
        if isinstance(value.get(key), dict):
            found[name] = value[key]
    return found


def _accuracies(per_set: dict[str, Any]) -> dict[str, float]:
    return {
        name: float(v["accuracy"])
        for name, v in per_set.items()
        if isinstance(v, dict) and isinstance(v.get("accuracy"), (int, float, np.floating))
    }

