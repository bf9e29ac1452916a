"""Micro-batching: gather texts from concurrent requests into one model call.

Each text submitted waits in a queue. As soon as a worker is free, a collector task takes
every text waiting (up to ``max_batch``) and runs them as one call. Texts that arrive
while the model is busy therefore form the next batch: under load batches fill up by
themselves, and a lone request never waits for company (it finds the model free and runs
at once, without a trip through the queue). ``max_wait_ms`` (default 0) lets a batch
wait that long after its first text arrived for more to join, when a worker is free
sooner. The batch runs in a worker thread (never on the event loop) and each result goes
back to the future of the request that submitted its text. An exception in a batch fails
only the requests with a text in that batch.

``max_batch=1`` turns gathering off: each request's texts go to the model as one call of
their own, still in the worker thread.

Pure asyncio and the standard library, so it can be tested without HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

R = TypeVar("R")

PredictFn = Callable[[list[str]], Sequence[R]]
BatchHook = Callable[[int, float], None]


class BatcherClosedError(RuntimeError):
    """Raised for texts submitted to, or still waiting in, a closed batcher."""


@dataclass
class _Item:
    text: str
    future: asyncio.Future
    arrived: float  # event-loop time of submission


class MicroBatcher(Generic[R]):
    """Run ``predict_fn`` on batches gathered from concurrent callers.

    ``predict_fn`` takes a list of texts and returns one result per text, in order. It
    runs in a thread of its own executor (``workers`` threads; one is right for ONNX
    Runtime, which uses its own thread pool inside a call). ``on_batch(size, seconds)``
    is called on the event loop after each model call, for metrics.

    >>> async def demo():
    ...     batcher = MicroBatcher(lambda texts: [t.upper() for t in texts], max_batch=8)
    ...     await batcher.start()
    ...     try:
    ...         return await asyncio.gather(batcher.submit("a"), batcher.submit("b"))
    ...     finally:
    ...         await batcher.close()
    >>> asyncio.run(demo())
    ['A', 'B']
    """

    def __init__(
        self,
        predict_fn: PredictFn,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 0.0,
        workers: int = 1,
        on_batch: BatchHook | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {max_wait_ms}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.predict_fn = predict_fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.workers = workers
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Item] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._collector: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._forming: list[_Item] = []
        self._closed = False

    @property
    def enabled(self) -> bool:
        """Whether texts from different requests are gathered into shared batches."""
        return self.max_batch > 1

    @property
    def pending(self) -> int:
        """Texts waiting for a batch to run (not counting those being classified)."""
        queued = self._queue.qsize() if self._queue is not None else 0
        return queued + len(self._forming)

    async def start(self) -> None:
        """Create the worker threads and, when gathering is on, the collector task."""
        if self._executor is not None:
            return
        self._closed = False
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="edgesent-infer")
        self._slots = asyncio.Semaphore(self.workers)
        if self.enabled:
            self._queue = asyncio.Queue()
            self._collector = asyncio.create_task(self._collect(), name="edgesent-batcher")

    async def submit(self, text: str) -> R:
        """Classify one text; resolves when its batch has run."""
        return (await self.submit_many([text]))[0]

    async def submit_many(self, texts: Sequence[str]) -> list[R]:
        """Classify several texts, results in the order given."""
        if self._closed or self._executor is None:
            raise BatcherClosedError("the batcher is not running")
        if not texts:
            return []
        if not self.enabled or self._idle():
            return await self._run_direct(list(texts))
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        now = loop.time()
        items = [_Item(text, loop.create_future(), now) for text in texts]
        for item in items:
            self._queue.put_nowait(item)
        return list(await asyncio.gather(*(item.future for item in items)))

    async def close(self) -> None:
        """Stop gathering, finish batches already running and fail texts still waiting."""
        self._closed = True
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
            self._collector = None
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        left = self._forming
        self._forming = []
        if self._queue is not None:
            while not self._queue.empty():
                left.append(self._queue.get_nowait())
            self._queue = None
        for item in left:
            if not item.future.done():
                item.future.set_exception(BatcherClosedError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _idle(self) -> bool:
        """No wait asked for, nothing waiting and a worker free: a batch would hold only
        these texts."""
        assert self._slots is not None
        return (self.max_wait == 0 and self._queue is not None and self._queue.empty()
                and not self._forming and not self._slots.locked())

    async def _run_direct(self, texts: list[str]) -> list[R]:
        assert self._slots is not None
        async with self._slots:
            return await self._call_model(texts)

    async def _call_model(self, texts: list[str]) -> list[R]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        results = list(await loop.run_in_executor(self._executor, self.predict_fn, texts))
        if len(results) != len(texts):
            raise RuntimeError(
                f"predict_fn returned {len(results)} results for a batch of {len(texts)} texts"
            )
        if self.on_batch is not None:
            self.on_batch(len(texts), time.perf_counter() - started)
        return results

    async def _collect(self) -> None:
        """Form batches forever; each runs as its own task once a worker slot is free."""
        assert self._queue is not None and self._slots is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = self._forming = [await self._queue.get()]
            # Texts that arrive while every worker is busy wait here and join this batch.
            await self._slots.acquire()
            deadline = batch[0].arrived + self.max_wait
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            self._forming = []
            task = asyncio.create_task(self._run_batch(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_batch(self, batch: list[_Item]) -> None:
        assert self._slots is not None
        try:
            live = [item for item in batch if not item.future.done()]
            if not live:
                return
            try:
                results = await self._call_model([item.text for item in live])
            except Exception as exc:  # fail this batch only
                logger.exception("batch of %d texts failed", len(live))
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(exc)
                return
            for item, result in zip(live, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
        finally:
            self._slots.release()
