"""Data-parallel training across processes: what the trainer needs from ``torch.distributed``.

A launcher (``torchrun``, or ``accelerate launch``, which starts the same processes) sets
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`context` reads them and joins the
process group (NCCL on GPUs, gloo on CPUs). Without them, or with ``WORLD_SIZE=1``, it
is a single process and every method below is a no-op that costs nothing, so the
single-process path stays exactly what it was.

Every rank builds the same global batches (same seed, same epoch) and takes every
``world_size``-th row of each (:meth:`Distributed.shard`); gradients are summed across
ranks after each rank scaled its loss by its share of the global batch, which gives the
gradient of the whole batch, as gradient accumulation does within a process. Validation
rows are split the same way and the logits gathered, so every rank sees every row once
and takes the same early-stopping decision; only rank 0 writes files. Work that trains
nothing runs on rank 0 alone: :func:`main_process_first` (rank 0 caches, the others read
its cache) and :func:`main_process_only` (rank 0 packages; the others get its result or
its error, so every process exits with the same status).

``accelerate launch`` starts the processes through torchrun when given ``--multi_gpu``
(which also works without a GPU: the processes then use gloo); its ``--cpu`` route
starts several processes only through MPI. Nothing here imports accelerate. Launch, for
example, two CPU processes or two GPUs on one machine::

    torchrun --standalone --nproc_per_node 2 -m edgesent_export train runs/teacher \\
        --train reviews.csv --threads 1
    accelerate launch --multi_gpu --num_processes 2 -m edgesent_export train runs/teacher ...

>>> single = Distributed()
>>> single.enabled, single.is_main, single.sum(2.5), single.shard([0, 1, 2]).tolist()
(False, True, 2.5, [0, 1, 2])
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

logger = logging.getLogger(__name__)

# Rank 0 scores the test sets while the others wait at a barrier: allow it hours.
TIMEOUT = datetime.timedelta(hours=3)


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes (one process by default)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ set-up

    def device(self, device: Any) -> Any:
        """``device``, made this rank's own GPU when there are several processes."""
        import torch

        if self.enabled and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def _tensor_device(self) -> Any:
        import torch
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    # ------------------------------------------------------------------ collectives

    def shard(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """This rank's rows of a batch: every ``world_size``-th, starting at ``rank``."""
        return np.asarray(indices)[self.rank :: self.world_size]

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks."""
        if not self.enabled:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64, device=self._tensor_device())
        dist.all_reduce(tensor)
        return float(tensor.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on one."""
        return self.sum(1.0 if flag else 0.0) > 0 if self.enabled else flag

    def sum_gradients(self, parameters: Iterable[Any]) -> None:
        """Sum the gradients of ``parameters`` over the ranks, in one flat buffer
        (a rank that saw no rows contributes zeros)."""
        if not self.enabled:
            return
        import torch
        import torch.distributed as dist

        params = [p for p in parameters if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def broadcast_model(self, model: Any) -> None:
        """Give every rank rank 0's weights (and buffers) before training starts."""
        if not self.enabled:
            return
        import torch
        import torch.distributed as dist

        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (picklable), on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


_CONTEXT: Distributed | None = None


def context() -> Distributed:
    """The distributed context of this process, read from ``WORLD_SIZE``/``RANK``/
    ``LOCAL_RANK`` once, joining the process group when there are several processes."""
    global _CONTEXT
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Distributed()
    if _CONTEXT is None:
        import torch
        import torch.distributed as dist

        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                if local >= torch.cuda.device_count():
                    raise RuntimeError(
                        f"rank {rank}: LOCAL_RANK {local}, but this machine has "
                        f"{torch.cuda.device_count()} GPU(s); launch at most one process per GPU"
                    )
                torch.cuda.set_device(local)
            dist.init_process_group(backend, timeout=TIMEOUT)
            atexit.register(_leave_process_group)
            logger.info("rank %d of %d joined the %s process group", rank, world, backend)
        _CONTEXT = Distributed(world, rank, local)
    return _CONTEXT


def _leave_process_group() -> None:
    """Destroy the process group :func:`context` joined, while the interpreter is whole:
    left to interpreter shutdown, gloo's worker threads can abort the process
    ("terminate called without an active exception") after all the work is done."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a distributed launch (which must not write)."""
    return int(os.environ.get("RANK", "0") or 0) == 0 or int(os.environ.get("WORLD_SIZE", "1")
                                                              or 1) <= 1


@contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block on rank 0 first and on the other ranks once it is done: rank 0
    computes and caches (teacher logits, an ONNX export), the others read its cache.
    When the block fails on rank 0, the others raise the same error instead of running it.

    >>> with main_process_first():  # one process: just runs the block
    ...     print("computed")
    computed
    """
    dist = context()
    if dist.is_main:
        try:
            yield
        except Exception as exc:  # the others raise it too, rather than wait for ever
            dist.broadcast(_picklable(exc))
            raise
        dist.broadcast(None)
    else:
        failure = dist.broadcast(None)
        if failure is not None:
            raise failure
        yield


def main_process_only(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` run on rank 0 alone (the others wait for it): every rank
    returns its (picklable) result, or raises the error it raised, so all exit alike:
    for the work that writes files and that no other rank may repeat (packaging, scoring).

    >>> main_process_only(sum, [1, 2])  # one process: just the call
    3
    """
    dist = context()
    if not dist.enabled:
        return func(*args, **kwargs)
    if dist.is_main:
        try:
            value = func(*args, **kwargs)
        except Exception as exc:
            dist.broadcast((False, _picklable(exc)))
            raise
        dist.broadcast((True, value))
        return value
    ok, value = dist.broadcast(None)
    if not ok:
        raise value
    return value


def _picklable(exc: Exception) -> Exception:
    """``exc``, or an error of the same message when it cannot cross to the other ranks."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
