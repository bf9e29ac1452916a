"""The training loop shared by fine-tuning and distillation.

One code path for GPU and CPU: mixed precision where the hardware has it (bf16, else
fp16 with loss scaling on CUDA), length-grouped batches with dynamic padding, validation
every N steps, early stopping on validation loss, the best weights kept, checkpoints that
resume a killed run exactly where it stopped (same batches, same random state), and a
CUDA out-of-memory fallback that halves the micro-batch and doubles accumulation.

What training costs shows beside how it learns: every evaluation record in the history
carries samples per second, seconds per step, the process's resident memory and, on a
GPU, allocated and peak device memory; the progress bar shows the same; every
out-of-memory back-off is kept with the micro-batch it moved to.

Several processes train one model data-parallel when a launcher starts them (see
:mod:`edgesent_export.distributed`)::

    torchrun --standalone --nproc_per_node 2 -m edgesent_export train runs/teacher ...
    accelerate launch --multi_gpu --num_processes 2 -m edgesent_export train runs/teacher ...

Each global batch is split across the ranks, gradients are summed, validation logits
gathered, and only rank 0 writes checkpoints and the best weights; one process (the
default) trains exactly as before.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .distributed import context
from .torch_data import (
    IGNORE_LABEL,
    EncodedSet,
    collate,
    evaluate_logits,
    is_out_of_memory,
    length_grouped_batches,
    predict_logits,
    select_device_and_precision,
)

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


@dataclass
class TrainConfig:
    """Settings of one training run.

    >>> TrainConfig(epochs=2, batch_size=16).batch_size
    16
    """

    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    eval_every: int | None = None  # optimizer steps; None: once per epoch
    save_every: int = 200
    patience: int = 2
    seed: int = 13
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    max_grad_norm: float = 1.0
    threads: int | None = None
    eval_batch_size: int = 64
    stop_after_steps: int | None = None  # stop as if killed (for tests and time limits)


@dataclass
class TrainState:
    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    best_val_loss: float = math.inf
    best_step: int = -1
    bad_evals: int = 0
    accumulation: int = 1
    running_loss: float | None = None  # smoothed training loss, kept so a resume continues it
    oom_backoffs: list[dict[str, int]] = field(default_factory=list)
    train_seconds: float = 0.0  # time in the kept training steps, summed over resumes
    finished: bool = False
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


LossFn = Callable[[Any, dict[str, Any]], Any]
# Validation logits -> {"monitor": lower is better, any other figures for the history}.
Monitor = Callable[[np.ndarray], dict[str, float]]


class Trainer:
    """Runs :class:`TrainConfig` on a model with a loss function, with checkpoints.

    >>> trainer = Trainer(model, train_set, val_set, config, "runs/teacher",  # doctest: +SKIP
    ...                   loss_fn=cross_entropy_loss(), pad_id=0, label_names=["neg", "pos"])
    >>> trainer.train(resume=True)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        train_set: EncodedSet,
        val_set: EncodedSet,
        config: TrainConfig,
        out_dir: str | Path,
        *,
        loss_fn: LossFn,
        pad_id: int,
        label_names: Sequence[str],
        save_best: Callable[[Any, Path], None],
        progress: bool = True,
        monitor: Monitor | None = None,
    ) -> None:
        """``monitor``, when given, replaces the validation loss as what the best weights
        and patience follow (``best_val_loss`` then holds its best value)."""
        import torch

        self.config = config
        self.out_dir = Path(out_dir)
        self.checkpoint_dir = self.out_dir / "checkpoint"
        self.best_dir = self.out_dir / "best"
        self.train_set, self.val_set = train_set, val_set
        self.loss_fn, self.pad_id = loss_fn, pad_id
        self.label_names = list(label_names)
        self.save_best = save_best
        self.progress = progress
        self.monitor = monitor
        if config.threads:
            torch.set_num_threads(config.threads)
        self.dist = context()
        device, self.autocast_dtype = select_device_and_precision(config.precision)
        self.device = self.dist.device(device)
        self.model = model.to(self.device)
        self.dist.broadcast_model(self.model)
        self.steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
        self.total_steps = max(1, math.ceil(self.steps_per_epoch * config.epochs))
        self.eval_every = config.eval_every or self.steps_per_epoch
        self.optimizer = self._make_optimizer()
        warmup = int(self.total_steps * config.warmup_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _LinearWarmupDecay(warmup, self.total_steps)
        )
        use_scaler = self.autocast_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.state = TrainState()
        self._cost = _CostWindow()

    def _make_optimizer(self) -> Any:
        import torch

        decay: list[Any] = []
        no_decay: list[Any] = []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=self.config.learning_rate)

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(self) -> None:
        import torch

        rng_states = self.dist.gather(torch.get_rng_state())
        if not self.dist.is_main:
            self.dist.barrier()
            return
        tmp = self.out_dir / "checkpoint.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(tmp, safe_serialization=True)
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "torch_rng": rng_states[0],
                **({"torch_rng_ranks": rng_states} if self.dist.enabled else {}),
            },
            tmp / "optimizer.pt",
        )
        (tmp / STATE_FILE).write_text(json.dumps(asdict(self.state), indent=1), encoding="utf-8")
        old = self.out_dir / "checkpoint.old"
        if old.exists():  # left by a kill between the renames below
            _rmtree(old)
        if self.checkpoint_dir.exists():
            self.checkpoint_dir.rename(old)
        tmp.rename(self.checkpoint_dir)
        if old.exists():
            _rmtree(old)
        self.dist.barrier()

    def _load_checkpoint(self) -> bool:
        import torch
        from safetensors.torch import load_file

        state_path = self.checkpoint_dir / STATE_FILE
        if not state_path.exists():
            return False
        self.state = TrainState(**json.loads(state_path.read_text(encoding="utf-8")))
        weights = load_file(str(self.checkpoint_dir / "model.safetensors"), device="cpu")
        self.model.load_state_dict(weights, strict=False)
        extra = torch.load(self.checkpoint_dir / "optimizer.pt", weights_only=True)
        self.optimizer.load_state_dict(extra["optimizer"])
        self.scheduler.load_state_dict(extra["scheduler"])
        self.scaler.load_state_dict(extra["scaler"])
        ranks = extra.get("torch_rng_ranks")
        if ranks is not None and len(ranks) == self.dist.world_size:
            torch.set_rng_state(ranks[self.dist.rank])
        else:
            torch.set_rng_state(extra["torch_rng"])
        logger.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            self.checkpoint_dir, self.state.global_step, self.state.epoch,
            self.state.batch_in_epoch,
        )
        return True

    # ------------------------------------------------------------------ training

    def train(self, resume: bool = False) -> TrainState:
        """Train until the epochs run out or validation loss stops improving."""
        import torch

        if resume and not self._load_checkpoint():
            logger.info("no checkpoint in %s; starting fresh", self.checkpoint_dir)
        if not resume or self.state.global_step == 0:
            random.seed(self.config.seed)
            np.random.seed(self.config.seed)
            torch.manual_seed(self.config.seed + self.dist.rank)  # own dropout per rank
        if self.state.finished:
            return self.state
        lengths = [len(s) for s in self.train_set.ids]
        bar = self._progress_bar()
        self.model.train()
        while not self.state.finished:
            batches = length_grouped_batches(
                lengths, self.config.batch_size, self.config.seed, self.state.epoch
            )
            while self.state.batch_in_epoch < len(batches):
                indices = batches[self.state.batch_in_epoch]
                started = time.perf_counter()
                loss = self._step(indices)
                seconds = time.perf_counter() - started
                self._cost.add(len(indices), seconds)
                self.state.train_seconds += seconds
                running = self.state.running_loss
                running = loss if running is None else 0.98 * running + 0.02 * loss
                self.state.running_loss = running
                self.state.batch_in_epoch += 1
                self.state.global_step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{running:.4f}", epoch=self.state.epoch,
                                    **self._cost.postfix(self.device))
                if self._after_step(running):
                    break
            else:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
                continue
            break
        if bar is not None:
            bar.close()
        return self.state

    def _after_step(self, running_loss: float | None) -> bool:
        """Evaluate, checkpoint and decide whether to stop; True ends training."""
        state, config = self.state, self.config
        done = state.global_step >= self.total_steps
        if state.global_step % self.eval_every == 0 or done:
            self._evaluate(running_loss)
            if state.bad_evals >= config.patience:
                logger.info(
                    "early stopping: validation loss has not improved for %d evaluations",
                    state.bad_evals,
                )
                state.stopped_early = True
                done = True
        if done:
            state.finished = True
            self._save_checkpoint()
            return True
        if state.global_step % config.save_every == 0 or (
            state.global_step % self.eval_every == 0
        ):
            self._save_checkpoint()
        if config.stop_after_steps and state.global_step >= config.stop_after_steps:
            self._save_checkpoint()
            logger.warning("stopping after %d steps as asked", state.global_step)
            return True
        return False

    def _step(self, indices: np.ndarray) -> float:
        import torch

        local = self.dist.shard(indices)
        while True:
            failure: BaseException | None = None
            try:
                loss = self._accumulate(local, len(indices))
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                failure = exc
            if not self.dist.any(failure is not None):  # every rank must back off together
                break
            if len(local) // self.state.accumulation <= 1:
                raise failure or RuntimeError("out of memory on another training process")
            self.optimizer.zero_grad(set_to_none=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.state.accumulation *= 2
            micro_batch = math.ceil(len(local) / self.state.accumulation)
            backoff = {"step": self.state.global_step + 1, "micro_batch": micro_batch,
                       "accumulation": self.state.accumulation}
            self.state.oom_backoffs.append(backoff)
            self._cost.backoffs.append(backoff)
            logger.warning(
                "out of GPU memory: micro-batch halved to %d, gradient accumulation "
                "doubled to %d (effective batch unchanged at %d)",
                micro_batch, self.state.accumulation, self.config.batch_size,
            )
        self.dist.sum_gradients(self.model.parameters())
        loss = self.dist.sum(loss)
        if self.config.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def _accumulate(self, indices: np.ndarray, batch_rows: int) -> float:
        """Backpropagate this process's rows of a batch of ``batch_rows`` rows, each
        micro-batch's loss weighted by its share of the whole batch."""
        import torch

        if len(indices) == 0:  # fewer rows than processes: this one sits the batch out
            return 0.0
        parts = np.array_split(indices, min(self.state.accumulation, len(indices)))
        total = 0.0
        for part in parts:
            batch = collate(self.train_set, part, self.pad_id, self.device)
            with torch.autocast(
                self.device.type,
                dtype=self.autocast_dtype or torch.float32,
                enabled=self.autocast_dtype is not None,
            ):
                outputs = self.model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                )
                loss = self.loss_fn(outputs.logits.float(), batch)
            weight = len(part) / batch_rows
            self.scaler.scale(loss * weight).backward()
            total += float(loss.detach()) * weight
        return total

    def _evaluate(self, running_loss: float | None) -> None:
        started = time.perf_counter()
        logits = self._validation_logits()
        result = evaluate_logits(logits, self.val_set.labels, self.label_names)
        record = {
            "step": self.state.global_step,
            "epoch": round(self.state.global_step / self.steps_per_epoch, 3),
            "train_loss": running_loss,
            "val_loss": result["loss"],
            "val_accuracy": result["accuracy"],
            "val_macro_f1": result["macro_f1"],
            "lr": self.scheduler.get_last_lr()[0],
            "eval_seconds": round(time.perf_counter() - started, 1),
            "micro_batch": math.ceil(
                math.ceil(self.config.batch_size / self.dist.world_size) / self.state.accumulation
            ),
            **self._cost.record(self.device),
        }
        score = result["loss"]
        if self.monitor is not None:
            watched = self.monitor(logits)
            score = watched["monitor"]
            record.update(watched)
        self.state.history.append(record)
        logger.info(
            "step %d: val loss %.4f, accuracy %.4f, macro-F1 %.4f",
            record["step"], record["val_loss"], record["val_accuracy"], record["val_macro_f1"],
        )
        if score < self.state.best_val_loss - 1e-6:
            self.state.best_val_loss = score
            self.state.best_step = self.state.global_step
            self.state.bad_evals = 0
            if self.dist.is_main:
                self.save_best(self.model, self.best_dir)
            self.dist.barrier()
        else:
            self.state.bad_evals += 1
        self.model.train()

    def _validation_logits(self) -> np.ndarray:
        """Validation logits of every row once: each process predicts its share."""
        if not self.dist.enabled:
            return predict_logits(self.model, self.val_set, self.pad_id,
                                  self.config.eval_batch_size, autocast_dtype=self.autocast_dtype)
        rows = self.dist.shard(np.arange(len(self.val_set)))
        share = EncodedSet([self.val_set.ids[i] for i in rows], self.val_set.labels[rows])
        mine = predict_logits(self.model, share, self.pad_id, self.config.eval_batch_size,
                              autocast_dtype=self.autocast_dtype)
        logits = np.zeros((len(self.val_set), mine.shape[1]), dtype=np.float32)
        for their_rows, theirs in self.dist.gather((rows, mine)):
            logits[their_rows] = theirs
        return logits

    def _progress_bar(self) -> Any:
        if not self.progress or not self.dist.is_main:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.total_steps, initial=self.state.global_step, desc="train", unit="step"
        )


class _CostWindow:
    """Samples, training seconds and OOM back-offs since the last evaluation."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.samples, self.seconds, self.steps = 0, 0.0, 0
        self.backoffs: list[dict[str, int]] = []

    def add(self, samples: int, seconds: float) -> None:
        self.samples += samples
        self.seconds += seconds
        self.steps += 1

    def postfix(self, device: Any) -> dict[str, str]:
        """The progress bar's cost fields."""
        figures = memory_figures(device)
        out = {"samples/s": f"{self.samples / max(self.seconds, 1e-9):.1f}",
               "rss": f"{figures['rss_mb']:.0f}MB"}
        if "cuda_allocated_mb" in figures:
            out["gpu"] = f"{figures['cuda_allocated_mb']:.0f}/{figures['cuda_peak_mb']:.0f}MB"
        return out

    def record(self, device: Any) -> dict[str, Any]:
        """The history's cost fields, then a new window."""
        record: dict[str, Any] = {
            "samples_per_s": round(self.samples / self.seconds, 2) if self.seconds else None,
            "step_seconds": round(self.seconds / self.steps, 4) if self.steps else None,
            **memory_figures(device),
            "oom_backoffs": self.backoffs,
        }
        self.reset()
        return record


def memory_figures(device: Any) -> dict[str, float]:
    """This process's resident memory and, on a GPU, allocated and peak device memory (MB).

    >>> import torch
    >>> memory_figures(torch.device("cpu"))["rss_mb"] > 0
    True
    """
    figures = {"rss_mb": round(process_rss_mb(), 1)}
    if getattr(device, "type", None) == "cuda":
        import torch

        figures["cuda_allocated_mb"] = round(torch.cuda.memory_allocated(device) / 2**20, 1)
        figures["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return figures


def process_rss_mb() -> float:
    """Resident set size of this process in MB (peak RSS where /proc is absent)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class _LinearWarmupDecay:
    """Linear warm-up then linear decay to zero (a picklable schedule)."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.total = warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))


def cross_entropy_loss(class_weights: Sequence[float] | None = None) -> LossFn:
    """Hard-label cross-entropy, optionally class-weighted."""
    import torch

    weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None

    def loss_fn(logits: Any, batch: dict[str, Any]) -> Any:
        w = weights.to(logits.device) if weights is not None else None
        return torch.nn.functional.cross_entropy(
            logits, batch["labels"], weight=w, ignore_index=IGNORE_LABEL
        )

    return loss_fn


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
