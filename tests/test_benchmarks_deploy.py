"""``python -m benchmarks serve`` end to end on the tiny bundle and generated reviews.

Three real ``edgesent serve`` processes, a few requests per cell; the checks read the JSON
it writes. No assertion is about speed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the repository, not installed
    sys.path.insert(0, str(ROOT))

pytest.importorskip("uvicorn", reason="edgesent serve needs the [serve] extra")

from benchmarks.deploy import generated_reviews, serve  # noqa: E402


def test_generated_reviews_spread_in_length() -> None:
    reviews = generated_reviews(200)
    sentences = [r.count(".") for r in reviews]
    assert len(set(reviews)) > 150 and min(sentences) == 1 and max(sentences) > 10
    assert generated_reviews(200) == reviews  # seeded


def test_serve_load_test_measures_three_servers(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    result = CliRunner().invoke(serve, [
        "--model", str(tiny_bundle), "--requests", "24", "--clients", "1,4",
        "--rss-rounds", "2", "--max-seconds", "20", "--threads", "1", "--out", str(out)],
        env={"EDGESENT_DATA": ""})
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["texts"] == "generated"
    rows = report["rows"]
    assert [(r["batching"], r["clients"]) for r in rows] == [
        (mode, n) for mode in ("on (32/0 ms)", "on, waiting (32/5 ms)", "off (1/0 ms)")
        for n in (1, 4)]
    for row in rows:
        assert row["errors"] == 0 and row["requests"] == 24, row
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["requests_per_s"] > 0
        assert row["mean_model_batch"] >= 1
    # One client never has company; batching off never batches.
    assert all(r["mean_model_batch"] == 1 for r in rows if r["clients"] == 1 or
               r["batching"].startswith("off"))
    for mode in ("on", "on, waiting", "off"):
        rss = report["rss"][mode]
        assert rss["start_mb"] > 10 and len(rss["after_rounds_mb"]) == 2
    assert "| on (32/0 ms) | 1 | 24 |" in result.output
