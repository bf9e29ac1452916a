"""Side-by-side timing for the example scripts: calls that take turns in one process."""

import time
from collections.abc import Callable
from typing import Any

import numpy as np

ROUNDS = 400


def alternating_p50_ms(calls: dict[str, Callable[[], Any]], rounds: int = ROUNDS,
                       warmup: int = 20) -> dict[str, float]:
    """Median milliseconds of each call, the calls taking turns so that a busy or
    throttled moment falls on all of them alike."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}
