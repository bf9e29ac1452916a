"""examples/default_model/frontier.py: which shapes are on the frontier, and its plot."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "default_model"


@pytest.fixture(scope="module")
def frontier():
    pytest.importorskip("edgesent_export", reason="the example reads data with the build half")
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield importlib.import_module("frontier")
    finally:
        sys.path.remove(str(EXAMPLE))


def point(name: str, x: float, accuracy: float) -> dict:
    return {"name": name, "x_shipped": x, "val_accuracy": accuracy, "size_mb": 14.0}


def test_a_point_beaten_on_both_axes_is_off_the_frontier(frontier) -> None:
    points = [point("fast", 0.8, 0.920), point("slow-worse", 1.2, 0.915),
              point("slow-better", 1.3, 0.933), point("same-speed-worse", 0.8, 0.910)]
    assert frontier.frontier(points) == ["fast", "slow-better"]
    assert frontier.beats(points[0], points[3]) and not frontier.beats(points[0], points[2])
    twins = [point("a", 1.0, 0.93), point("b", 1.0, 0.93)]
    assert frontier.frontier(twins) == ["a", "b"]  # equal points do not beat each other


def test_the_plot_is_written(frontier, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot needs the [bench] extra")
    points = [point("3 x 1536, reads 256", 1.0, 0.933), point("4 x 768, reads 256", 0.98, 0.9325)]
    result = {"points": points, "frontier": frontier.frontier(points), "budget_x": 1.35,
              "tokens": 64, "shipped_p50_ms": 3.6, "set": "validation (2,178 rows)"}
    frontier.plot(result, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
