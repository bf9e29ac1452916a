"""The torch side of encoded reviews, shared by the trainer, distillation and the reports:
device and precision, length-grouped batches, padding, prediction and evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgesent.metrics import classification_report

from .calibration import nll

IGNORE_LABEL = -100


@dataclass
class EncodedSet:
    """Token ids (unpadded), integer labels (-100 when unlabelled), optional teacher logits."""

    ids: list[list[int]]
    labels: np.ndarray
    teacher_logits: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """Shuffled batches of similar-length examples, the same for the same seed and epoch.

    >>> [len(b) for b in length_grouped_batches([5, 3, 9, 1], 2, seed=0, epoch=0)]
    [2, 2]
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    lengths_arr = np.asarray(lengths)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        block = order[start : start + chunk]
        block = block[np.argsort(-lengths_arr[block], kind="stable")]
        batches += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def select_device_and_precision(precision: str) -> tuple[Any, Any]:
    """The device to train on and the autocast dtype (None for fp32)."""
    import torch

    if torch.cuda.is_available():
        device = torch.device("cuda")
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        device = torch.device("cpu")
        if precision == "auto":
            precision = "bf16" if _cpu_has_bf16() else "fp32"
        if precision == "fp16":
            raise ValueError("fp16 training needs a CUDA GPU; use bf16 or fp32 on the CPU")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return device, dtype


def hardware(device: Any) -> dict[str, Any]:
    """What a run trained on, for its report: the device type, its name (the GPU's, or
    the CPU model) and the processes and threads it used."""
    import platform

    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_model() or platform.processor() or platform.machine()
    from .distributed import context

    return {"device": device.type, "name": name, "processes": context().world_size,
            "threads": torch.get_num_threads()}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_has_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def collate(
    data: EncodedSet, indices: np.ndarray, pad_id: int, device: Any
) -> dict[str, Any]:
    """Pad one batch to its longest member and move it to ``device``."""
    import torch

    seqs = [data.ids[i] for i in indices]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    batch = {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": torch.as_tensor(data.labels[indices], dtype=torch.long).to(device),
    }
    if data.teacher_logits is not None:
        batch["teacher_logits"] = torch.as_tensor(
            data.teacher_logits[indices], dtype=torch.float32
        ).to(device)
    return batch


def predict_logits(
    model: Any, data: EncodedSet, pad_id: int, batch_size: int = 64, progress: bool = False,
    autocast_dtype: Any = None,
) -> np.ndarray:
    """Logits of ``model`` over ``data``, in the original order; under autocast to
    ``autocast_dtype`` (bf16: twice fp32's speed for MPNet-base on a Zen 4 CPU) when
    given, as training ran."""
    import torch

    device = next(model.parameters()).device
    order = np.argsort([-len(s) for s in data.ids], kind="stable")
    out = np.zeros((len(data), model.config.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    steps = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="predict", unit="batch", leave=False)
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype,
                                                enabled=autocast_dtype is not None):
        for start in steps:
            idx = order[start : start + batch_size]
            batch = collate(data, idx, pad_id, device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            out[idx] = logits.logits.float().cpu().numpy()
    model.train(was_training)
    return out


def evaluate_logits(
    logits: np.ndarray, labels: np.ndarray, label_names: Sequence[str]
) -> dict[str, Any]:
    """Loss (mean NLL), accuracy and macro-F1 of logits against integer labels."""
    loss = nll(logits, labels)
    report = classification_report(labels, logits.argmax(axis=1), label_names)
    return {"loss": loss, **report}


