"""The micro-batcher on its own: pure asyncio, no HTTP, no model."""

from __future__ import annotations

import asyncio
import threading

import pytest

from edgesent.batching import BatcherClosedError, MicroBatcher


class Recorder:
    """A predict_fn that upper-cases texts and remembers each batch and its thread."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, texts: list[str]) -> list[str]:
        self.batches.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and self.fail_on in texts:
            raise ValueError(f"cannot classify {self.fail_on!r}")
        return [t.upper() for t in texts]


def run_with(batcher: MicroBatcher, body):
    async def main():
        await batcher.start()
        try:
            return await body()
        finally:
            await batcher.close()

    return asyncio.run(main())


def test_batches_fill_up_to_max_batch():
    model = Recorder()
    sizes: list[int] = []
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=50,
                           on_batch=lambda n, _s: sizes.append(n))
    texts = [f"t{i}" for i in range(10)]

    async def body():
        return await asyncio.gather(*(batcher.submit(t) for t in texts))

    assert run_with(batcher, body) == [t.upper() for t in texts]
    assert [len(b) for b in model.batches] == [4, 4, 2]
    assert [t for b in model.batches for t in b] == texts
    assert sizes == [4, 4, 2]


def test_many_concurrent_callers_never_exceed_max_batch():
    model = Recorder()
    batcher = MicroBatcher(model, max_batch=8, max_wait_ms=2)

    async def one(i: int) -> str:
        await asyncio.sleep(0.001 * (i % 5))
        return await batcher.submit(f"r{i}")

    async def body():
        return await asyncio.gather(*(one(i) for i in range(64)))

    assert run_with(batcher, body) == [f"R{i}" for i in range(64)]
    assert all(1 <= len(b) <= 8 for b in model.batches)
    assert sorted(t for b in model.batches for t in b) == sorted(f"r{i}" for i in range(64))


def test_partial_batch_is_flushed_when_the_wait_ends():
    model = Recorder()
    batcher = MicroBatcher(model, max_batch=32, max_wait_ms=20)

    async def body():
        first = await asyncio.gather(*(batcher.submit(t) for t in ("a", "b", "c")))
        second = await asyncio.gather(batcher.submit("d"), batcher.submit("e"))
        return first, second

    assert run_with(batcher, body) == (["A", "B", "C"], ["D", "E"])
    assert model.batches == [["a", "b", "c"], ["d", "e"]]


def test_a_failing_batch_fails_only_its_own_requests():
    model = Recorder(fail_on="boom")
    batcher = MicroBatcher(model, max_batch=2, max_wait_ms=50)

    async def body():
        first = await asyncio.gather(*(batcher.submit(t) for t in ("ok1", "boom", "ok2", "ok3")),
                                     return_exceptions=True)
        after = await batcher.submit("later")
        return first, after

    (r1, r2, r3, r4), after = run_with(batcher, body)
    assert isinstance(r1, ValueError) and isinstance(r2, ValueError)
    assert "boom" in str(r2)
    assert (r3, r4, after) == ("OK2", "OK3", "LATER")
    assert model.batches == [["ok1", "boom"], ["ok2", "ok3"], ["later"]]


def test_wrong_number_of_results_is_an_error_for_that_batch():
    batcher = MicroBatcher(lambda texts: texts[:-1], max_batch=4, max_wait_ms=10)

    async def body():
        return await asyncio.gather(batcher.submit("a"), batcher.submit("b"),
                                    return_exceptions=True)

    results = run_with(batcher, body)
    assert all(isinstance(r, RuntimeError) and "1 results for a batch of 2" in str(r)
               for r in results)


def test_inference_runs_off_the_event_loop():
    released = threading.Event()

    def blocking_model(texts: list[str]) -> list[str]:
        # Only a coroutine on the event loop can set this; a model call made on the
        # loop itself would wait here until the timeout and return "stuck".
        ok = released.wait(timeout=10)
        return [("free" if ok else "stuck") for _ in texts]

    batcher = MicroBatcher(blocking_model, max_batch=4, max_wait_ms=1)

    async def release_soon():
        await asyncio.sleep(0.01)
        released.set()

    async def body():
        answer, _ = await asyncio.gather(batcher.submit("x"), release_soon())
        return answer

    assert run_with(batcher, body) == "free"


def test_worker_thread_is_not_the_main_thread():
    model = Recorder()
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=1)
    run_with(batcher, lambda: batcher.submit("x"))
    assert model.threads and all(name.startswith("edgesent-infer") for name in model.threads)


@pytest.mark.parametrize(("max_batch", "max_wait_ms"), [(1, 5), (1, 0)])
def test_off_mode_sends_each_request_as_its_own_call(max_batch, max_wait_ms):
    model = Recorder()
    sizes: list[int] = []
    batcher = MicroBatcher(model, max_batch=max_batch, max_wait_ms=max_wait_ms,
                           on_batch=lambda n, _s: sizes.append(n))
    assert not batcher.enabled

    async def body():
        return await asyncio.gather(batcher.submit_many(["a", "b", "c"]), batcher.submit("d"))

    assert run_with(batcher, body) == [["A", "B", "C"], "D"]
    assert sorted(model.batches) == [["a", "b", "c"], ["d"]]
    assert sorted(sizes) == [1, 3]


def test_without_a_wait_a_lone_request_runs_at_once_and_a_busy_model_gathers():
    """max_wait_ms=0: a text that finds the model free runs alone and without delay;
    texts that arrive while it is busy become the next batch, in arrival order."""
    release = threading.Event()
    batches: list[list[str]] = []

    def model(texts: list[str]) -> list[str]:
        batches.append(list(texts))
        if texts == ["first"]:
            release.wait(5)
        return [t.upper() for t in texts]

    batcher = MicroBatcher(model, max_batch=8, max_wait_ms=0)
    assert batcher.enabled

    async def body():
        first = asyncio.ensure_future(batcher.submit("first"))
        while not batches:  # the lone request is running
            await asyncio.sleep(0.001)
        later = [asyncio.ensure_future(batcher.submit(f"r{i}")) for i in range(5)]
        await asyncio.sleep(0.02)
        assert batches == [["first"]]  # the others wait for the busy model
        release.set()
        return await first, await asyncio.gather(*later)

    assert run_with(batcher, body) == ("FIRST", [f"R{i}" for i in range(5)])
    assert batches == [["first"], [f"r{i}" for i in range(5)]]


def test_off_mode_errors_stay_with_their_request():
    model = Recorder(fail_on="boom")
    batcher = MicroBatcher(model, max_batch=1, max_wait_ms=0)

    async def body():
        return await asyncio.gather(batcher.submit("boom"), batcher.submit("fine"),
                                    return_exceptions=True)

    bad, good = run_with(batcher, body)
    assert isinstance(bad, ValueError) and good == "FINE"


def test_list_requests_keep_their_order_across_batches():
    model = Recorder()
    batcher = MicroBatcher(model, max_batch=3, max_wait_ms=5)
    texts = [f"x{i}" for i in range(8)]

    async def body():
        return await batcher.submit_many(texts)

    assert run_with(batcher, body) == [t.upper() for t in texts]
    assert [len(b) for b in model.batches] == [3, 3, 2]


def test_close_fails_waiting_texts_and_refuses_new_ones():
    model = Recorder()
    batcher = MicroBatcher(model, max_batch=8, max_wait_ms=60_000)

    async def main():
        await batcher.start()
        waiting = asyncio.create_task(batcher.submit("never batched"))
        await asyncio.sleep(0.01)
        await batcher.close()
        with pytest.raises(BatcherClosedError):
            await waiting
        with pytest.raises(BatcherClosedError):
            await batcher.submit("too late")

    asyncio.run(main())
    assert model.batches == []


def test_empty_submission_and_bad_settings():
    batcher = MicroBatcher(Recorder(), max_batch=4, max_wait_ms=5)
    assert run_with(batcher, lambda: batcher.submit_many([])) == []
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Recorder(), max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(Recorder(), max_wait_ms=-1)
    with pytest.raises(ValueError, match="workers"):
        MicroBatcher(Recorder(), workers=0)
