"""edgesent.integrations.ray on a real local Ray cluster (two CPUs, started here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgesent import BundleError, Classifier

REVIEWS = ["Great phone, I love the screen.", "Awful: it broke after a week, I want a refund",
           "The cable, the box and the charger arrived", "Excellent quality, would recommend",
           "Poor battery and a waste of money"]


def rows(n: int = 120) -> list[dict]:
    out = [{"id": i, "review": f"{REVIEWS[i % len(REVIEWS)]} #{i}", "stars": i % 5 + 1}
           for i in range(n)]
    out[7]["review"], out[40]["review"] = "   ", None  # blank and missing: kept, as errors
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    try:
        import ray
        import ray.data

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except Exception as exc:  # the engine must start here: fail with the reason, never skip
        pytest.fail(f"a local Ray cluster did not start: {type(exc).__name__}: {exc}")
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    yield ray
    ray.shutdown()


def assert_matches(frame, data: list[dict], classifier: Classifier) -> None:
    """Every input column kept in order, and each row's answer equal to Classifier.predict."""
    import pandas as pd

    labels = classifier.labels
    assert list(frame.columns) == ["id", "review", "stars", "label", "score",
                                   *(f"p_{label}" for label in labels), "error"]
    assert frame["id"].tolist() == [r["id"] for r in data]
    assert frame["stars"].tolist() == [r["stars"] for r in data]
    want = classifier.predict([r["review"] or "" for r in data])
    assert sum(1 for p in want if p.error) == 2
    for (_, got), pred in zip(frame.iterrows(), want, strict=True):
        probabilities = [got[f"p_{label}"] for label in labels]
        if pred.error:
            assert got["error"] == pred.error
            assert pd.isna(got["label"]) and pd.isna(got["score"])
            assert all(pd.isna(p) for p in probabilities)
        else:
            assert got["label"] == pred.label and pd.isna(got["error"])
            assert got["score"] == pytest.approx(pred.score, rel=1e-6)
            assert probabilities == pytest.approx([pred.scores[x] for x in labels], rel=1e-6)


def test_classify_equals_classifier_row_for_row(cluster, tiny_bundle, tiny_classifier):
    from edgesent.integrations.ray import classify

    data = rows()
    scored = classify(cluster.data.from_items(data, override_num_blocks=6), "review",
                      model=tiny_bundle, batch_size=16, concurrency=2)
    assert_matches(scored.to_pandas(), data, tiny_classifier)


def test_a_shipped_bundle_needs_no_path_on_the_workers(cluster, make_bundle, tmp_path):
    from edgesent.integrations.ray import classify

    local = Path(shutil.copytree(make_bundle(labels=("negative", "neutral", "positive")),
                                 tmp_path / "three-labels"))
    classifier = Classifier.load(local, threads=1)
    data = rows(50)
    scored = classify(cluster.data.from_items(data), "review", model=local, ship=True,
                      concurrency=1)
    shutil.rmtree(local)  # the dataset is lazy: it runs only below, from the shipped copy
    assert_matches(scored.to_pandas(), data, classifier)


def test_mistakes_are_reported_clearly(cluster, tiny_bundle, tmp_path):
    from edgesent.integrations.ray import classify

    dataset = cluster.data.from_items([{"text": "fine"}])
    with pytest.raises(BundleError, match="missing"):
        classify(dataset, "text", model=tmp_path / "missing")
    with pytest.raises(ValueError, match="concurrency must be a positive integer"):
        classify(dataset, "text", model=tiny_bundle, concurrency=0)
    with pytest.raises(Exception, match="no column 'review' in the dataset \\(columns: text\\)"):
        classify(dataset, "review", model=tiny_bundle, concurrency=1).take_all()


def test_importing_the_adapter_imports_no_engine_and_nothing_heavy():
    probe = ("import sys, edgesent.integrations.ray, edgesent.integrations.spark; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'ray', 'pyspark', 'torch', 'transformers', 'optimum'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_a_missing_engine_names_the_extra(monkeypatch):
    from edgesent.integrations import require

    monkeypatch.setitem(sys.modules, "ray.data", None)  # what an install without ray sees
    with pytest.raises(ImportError, match=r'pip install "edgesent\[ray\]"'):
        require("ray.data", "ray")
