"""Logits of the build half's models on texts, batched the way the run half batches.

ONNX graphs run through :class:`edgesent.runner.Runner` (session options, token budget,
feed: nothing of its own); the PyTorch student gets the same token ids and the same
length-sorted batches from :func:`edgesent.runner.plan_batches`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesent.runner import DEFAULT_BATCH_SIZE, DEFAULT_TOKEN_BUDGET, Runner, plan_batches
from edgesent.tokenization import TextEncoder


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text", disable=not enabled, leave=False)


def onnx_logits(onnx_path: str | Path, encoder: TextEncoder, texts: Sequence[str], *,
                threads: int = 2, batch_size: int = DEFAULT_BATCH_SIZE,
                progress: bool = False) -> np.ndarray:
    """Logits of an ONNX graph through :meth:`edgesent.runner.Runner.from_onnx`, the way
    :class:`edgesent.Classifier` runs a bundle's graph."""
    runner = Runner.from_onnx(onnx_path, encoder, threads)
    with _progress(len(texts), f"onnx {Path(onnx_path).name}", progress) as bar:
        return runner.logits(texts, batch_size=batch_size, on_progress=bar.update)


def torch_logits(model_dir: str | Path, encoder: TextEncoder, texts: Sequence[str], *,
                 threads: int = 2, batch_size: int = DEFAULT_BATCH_SIZE,
                 progress: bool = False) -> np.ndarray:
    """Logits of the fp32 PyTorch model saved in ``model_dir`` (safetensors only), fed
    the token ids and batches (:func:`edgesent.runner.plan_batches`) the runner uses;
    texts with no content tokens get NaN rows, as there. Runs on the GPU when there is
    one (a big teacher's logits), else on ``threads`` CPU threads."""
    import torch
    from transformers import AutoModelForSequenceClassification

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, use_safetensors=True).eval().to(device)
    seqs = encoder.token_ids(texts)
    live = [k for k, seq in enumerate(seqs) if len(seq) > encoder.frame_length]
    out = np.full((len(texts), model.config.num_labels), np.nan, dtype=np.float32)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode(), _progress(len(live), "pytorch fp32", progress) as bar:
            for batch in plan_batches([len(seqs[k]) for k in live], batch_size,
                                      DEFAULT_TOKEN_BUDGET):
                rows = [live[k] for k in batch]
                ids, mask = encoder.pad([seqs[k] for k in rows])
                out[rows] = model(input_ids=torch.from_numpy(ids).to(device),
                                  attention_mask=torch.from_numpy(mask).to(device)
                                  ).logits.float().cpu().numpy()
                bar.update(len(rows))
    finally:
        torch.set_num_threads(previous)
    return out
