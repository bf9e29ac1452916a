"""How long a run will take, printed before the measurements start.

A coarse cost model: model FLOPs per token (from the checkpoints' configs or the ONNX
graph's weight matrices) divided by a nominal speed of each runtime on two cores of a
recent AVX-512 CPU, plus fixed process start-up costs. It errs on the slow side; a
busy machine takes longer.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from benchmarks.config import BATCH_SIZE, RunConfig

logger = logging.getLogger(__name__)

# FLOP/s of a runtime on 2 threads (batch 32); halved for 1 thread and for batch 1.
# Measured per CPU-second on a busy 2-core AVX512-VNNI EPYC: int8 ORT 165 G, fp32 ORT 69 G,
# PyTorch 72 G (one thread, batch 32 x 128 tokens).
SPEED = {"int8": 2.5e11, "onnx": 1.2e11, "torch": 1.2e11}
PIPELINE_PADDING = 1.4  # the pipeline does not sort by length
CALL_OVERHEAD_S = {"edgesent": 2e-4, "onnx": 2e-4, "pipeline": 4e-3, "optimum": 4e-3,
                   "tfidf": 3e-4, "vader": 1.5e-3}
START_S = {"edgesent": 1.0, "onnx": 1.0, "pipeline": 8.0, "optimum": 10.0, "tfidf": 2.5,
           "vader": 0.6}
MATMUL_OPS = {"MatMul", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul",
              "Attention", "QAttention", "MatMulNBits"}


def config_flops(model_dir: Path) -> float | None:
    """2 x weights of the encoder's matrices, per token, from a transformers config."""
    path = model_dir / "config.json"
    if not path.is_file():
        return None
    c = json.loads(path.read_text("utf-8"))
    layers = c.get("n_layers") or c.get("num_hidden_layers")
    dim = c.get("dim") or c.get("hidden_size")
    ffn = c.get("hidden_dim") or c.get("intermediate_size") or (4 * dim if dim else None)
    if not (layers and dim and ffn):
        return None
    return 2.0 * layers * (4 * dim * dim + 2 * dim * ffn)


def graph_flops(onnx_path: Path) -> float | None:
    """2 x the elements of the weight matrices that matrix products read, per token."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:
        return None
    dims = {init.name: list(init.dims) for init in model.graph.initializer}
    seen: set[str] = set()
    total = 0
    for node in model.graph.node:
        if node.op_type not in MATMUL_OPS:
            continue
        for name in node.input:
            shape = dims.get(name)
            if shape and len(shape) == 2 and name not in seen:
                seen.add(name)
                total += shape[0] * shape[1]
    return 2.0 * total or None


def spec_flops(spec: Any) -> float | None:
    if spec.kind in ("tfidf", "vader") or spec.model is None:
        return None
    model = Path(spec.model)
    if model.is_dir() and (model / "config.json").is_file():
        return config_flops(model)
    onnx = model / "model.onnx" if model.is_dir() else model
    return graph_flops(onnx) if onnx.is_file() else None


def _speed(spec: Any) -> float:
    if spec.kind == "pipeline":
        return SPEED["torch"]
    if spec.kind in ("edgesent", "onnx") and spec.precision == "int8":
        return SPEED["int8"]
    return SPEED["onnx"]


def call_seconds(spec: Any, tokens: float, batch: int, threads: int) -> float:
    """Estimated seconds of one call on ``batch`` texts of ``tokens`` tokens each."""
    flops = spec_flops(spec)
    overhead = CALL_OVERHEAD_S.get(spec.kind, 1e-3) * batch
    if flops is None:
        return overhead
    efficiency = (threads / 2.0) * (0.5 if batch == 1 else 1.0)
    padding = PIPELINE_PADDING if spec.kind in ("pipeline", "optimum") and batch > 1 else 1.0
    return overhead + batch * tokens * flops * padding / (_speed(spec) * efficiency)


def estimate(cfg: RunConfig, specs: list[Any], eval_sizes: dict[str, tuple[int, float]],
             cached_exports: bool = True) -> dict[str, float]:
    """Seconds per phase; ``eval_sizes`` maps a system to (reviews, mean tokens)."""
    evals = 0.0
    for spec in specs:
        n, tokens = eval_sizes.get(spec.name, (0, 0.0))
        per_batch = call_seconds(spec, tokens, BATCH_SIZE, cfg.eval_threads)
        evals += math.ceil(n / BATCH_SIZE) * per_batch
    timing = 0.0
    for threads in cfg.threads:
        timing += sum(START_S.get(s.kind, 2.0) for s in specs) / 2  # 2 cores load them
        for spec in specs:
            for length in cfg.lengths:
                call = call_seconds(spec, length, 1, threads)
                timing += 3 * call + max(cfg.cell_seconds, cfg.min_reps * call)
            call = call_seconds(spec, cfg.typical_length, BATCH_SIZE, threads)
            timing += 3 * call + max(cfg.cell_seconds, cfg.min_batches * call)
    cold = (cfg.cold_runs + cfg.cold_warmup + 1) * sum(START_S.get(s.kind, 2.0) for s in specs)
    return {"accuracy_s": round(evals), "timing_s": round(timing), "cold_start_s": round(cold),
            "total_s": round(evals + timing + cold)}


def log_estimate(est: dict[str, float], cfg: RunConfig, spent: float) -> None:
    total = (est["total_s"] + spent) / 60
    logger.info("expected duration: about %.1f min in all (%.1f min spent preparing; then "
                "accuracy %.1f, timing %.1f, cold start and sizes %.1f min)", total, spent / 60,
                est["accuracy_s"] / 60, est["timing_s"] / 60, est["cold_start_s"] / 60)
    if total > cfg.time_limit_min:
        logger.warning("the estimate exceeds %.0f min: lower --max-eval-slow or --max-eval, "
                       "or pick fewer --systems", cfg.time_limit_min)
