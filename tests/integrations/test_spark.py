"""edgesent.integrations.spark on a real local Spark (``local[2]``, started here; Java 17+)."""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgesent import BundleError, Classifier

REVIEWS = ["Great phone, I love the screen.", "Awful: it broke after a week, I want a refund",
           "The cable, the box and the charger arrived", "Excellent quality, would recommend",
           "Poor battery and a waste of money"]


def rows(n: int = 120) -> list[tuple]:
    out = [(i, f"{REVIEWS[i % len(REVIEWS)]} #{i}", i % 5 + 1) for i in range(n)]
    out[7], out[40] = (7, "   ", 3), (40, None, 1)  # blank and missing: kept, as errors
    return out


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    saved = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers run this Python, with edgesent
    try:
        from pyspark.sql import SparkSession

        session = (SparkSession.builder.master("local[2]").appName("edgesent-tests")
                   .config("spark.ui.enabled", "false")
                   .config("spark.sql.shuffle.partitions", "2").getOrCreate())
        session.sparkContext.setLogLevel("ERROR")
    except Exception as exc:  # the engine must start here: fail with the reason, never skip
        pytest.fail(f"Spark local[2] did not start (it needs Java 17+ on PATH): "
                    f"{type(exc).__name__}: {exc}")
    yield session
    session.stop()
    if saved is None:
        os.environ.pop("PYSPARK_PYTHON", None)
    else:
        os.environ["PYSPARK_PYTHON"] = saved


def assert_matches(result: list, data: list[tuple], classifier: Classifier) -> None:
    """Input columns and order kept, and each struct equal to Classifier.predict's answer."""
    labels = classifier.labels
    assert [tuple(row)[:3] for row in result] == data
    want = classifier.predict([text or "" for _, text, _ in data])
    assert sum(1 for p in want if p.error) == 2
    for row, pred in zip(result, want, strict=True):
        got = row["sentiment"].asDict()
        assert list(got) == ["label", "score", *(f"p_{x}" for x in labels), "error"]
        assert (got["label"], got["error"]) == (pred.label, pred.error)
        if pred.error:
            assert got["score"] is None and all(got[f"p_{x}"] is None for x in labels)
        else:
            assert got["score"] == pytest.approx(pred.score, rel=1e-6)
            for label in labels:
                assert math.isclose(got[f"p_{label}"], pred.scores[label], rel_tol=1e-6)


def test_sentiment_equals_classifier_row_for_row(spark, tiny_bundle, tiny_classifier):
    from edgesent.integrations.spark import sentiment

    data = rows()
    frame = spark.createDataFrame(data, "id long, review string, stars int")
    assert frame.rdd.getNumPartitions() == 2  # both task slots: two Python workers
    scored = frame.withColumn("sentiment", sentiment("review", model=tiny_bundle))
    assert scored.columns == ["id", "review", "stars", "sentiment"]
    assert_matches(scored.collect(), data, tiny_classifier)


def test_a_shipped_bundle_is_loaded_from_spark_files(spark, make_bundle, tmp_path):
    from pyspark import SparkFiles

    from edgesent.integrations.spark import sentiment

    local = Path(shutil.copytree(make_bundle(labels=("negative", "neutral", "positive")),
                                 tmp_path / "three-labels"))
    data = rows(50)
    frame = spark.createDataFrame(data, "id long, review string, stars int")
    scored = frame.withColumn("sentiment", sentiment("review", model=local, ship=True))
    assert Path(SparkFiles.get("three-labels"), "edgesent.json").is_file()
    assert_matches(scored.collect(), data, Classifier.load(local, threads=1))


def test_mistakes_are_reported_clearly(spark, tmp_path):
    from edgesent.integrations.spark import sentiment

    with pytest.raises(BundleError, match="missing"):
        sentiment("review", model=tmp_path / "missing")
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        sentiment("review", threads=0)


def test_a_missing_engine_names_the_extra(monkeypatch):
    from edgesent.integrations.spark import sentiment

    monkeypatch.setitem(sys.modules, "pyspark.sql.functions", None)
    with pytest.raises(ImportError, match=r'pip install "edgesent\[spark\]"'):
        sentiment("review")
