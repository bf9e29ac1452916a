"""Score a Spark DataFrame column: ``sentiment("review")`` (``pip install "edgesent[spark]"``).

``sentiment`` returns a Column holding a struct of ``label``, ``score``, ``p_<label>`` for
each label and ``error`` (``"empty text"`` for a blank or null text; its row keeps null
label and scores), the same answers as :meth:`edgesent.Classifier.predict`. It is an
Arrow UDF (``pyspark.sql.functions.arrow_udf``): each Python worker loads the bundle once
and keeps it across tasks, and classifies whole Arrow batches on ``threads`` ONNX Runtime
threads (1 by default, one per Spark task slot; with more, set ``spark.task.cpus`` to
match). Spark's Python workers must run a Python that has edgesent installed
(``PYSPARK_PYTHON``). Measured on ``local[2]``, an Arrow UDF, a pandas UDF and
``pyspark.ml.functions.predict_batch_udf`` ran within noise of each other (inference
dominates); the Arrow UDF stays because its nulls need no pandas dtype handling.

Run it as written (the embedded model, Spark in local mode)::

    import os, sys
    from pyspark.sql import SparkSession
    from edgesent.integrations.spark import sentiment

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = SparkSession.builder.master("local[2]").getOrCreate()
    df = spark.createDataFrame([(1, "Broke after a week."), (2, "Lovely, fits perfectly.")],
                               ["id", "review"])
    df.withColumn("sentiment", sentiment("review")).select("id", "sentiment.*").show()

A custom bundle reaches the executors in one of two ways:

- **a shared path**: ``sentiment("review", model="/mnt/models/my-bundle")``, a directory
  the driver (which verifies it first) and every executor can read: a network mount or a
  path baked into the image;
- **shipped with the job**: ``sentiment("review", model="my-bundle", ship=True)`` calls
  ``SparkContext.addFile(path, recursive=True)`` on the driver; executors load their copy
  from ``SparkFiles.get(name)``. Bundles shipped together need distinct directory names.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesent import Classifier
from edgesent.integrations import columns, require

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column

__all__ = ["sentiment"]


def sentiment(column: str | Column, model: str | os.PathLike[str] | None = None, *,
              threads: int = 1, ship: bool = False) -> Column:
    """A struct Column ``(label, score, p_<label>..., error)`` for the texts in ``column``.

    ``model``: a bundle directory (default: the model shipped with edgesent); ``ship``
    sends it with the job through ``SparkContext.addFile`` instead of reading it on each
    executor. ``threads``: ONNX Runtime threads per Python worker.

    >>> df.withColumn("sentiment", sentiment("review"))  # doctest: +SKIP
    DataFrame[id: bigint, review: string, sentiment: struct<label: string, ...>]
    """
    functions = require("pyspark.sql.functions", "spark")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    labels = Classifier.load(model, threads=1).labels  # fail here, in one line, on a bad bundle
    where: tuple[str, str | None] = ("path", None if model is None else str(model))
    if ship and model is not None:
        session = require("pyspark.sql", "spark").SparkSession.getActiveSession()
        if session is None:
            raise RuntimeError("ship=True needs an active SparkSession to add the bundle to")
        session.sparkContext.addFile(str(Path(model).resolve()), recursive=True)
        where = ("spark_file", Path(model).resolve().name)
    fields = ", ".join(["label string", "score double",
                        *(f"`p_{label}` double" for label in labels), "error string"])
    name = column if isinstance(column, str) else "text"
    arrow = require("pyarrow", "spark")

    def score(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        return _score(batches, where=where, threads=threads, text_column=name)

    # real objects, not strings: Spark reads the hints to pick the iterator-of-batches form
    iterator: Any = Iterator
    score.__annotations__ = {"batches": iterator[arrow.Array], "return": iterator[arrow.Array]}
    return functions.arrow_udf(score, fields)(column)


@functools.lru_cache(maxsize=4)
def _classifier(where: tuple[str, str | None], threads: int) -> Classifier:
    """The bundle, loaded once per Python worker (Spark reuses workers across tasks)."""
    kind, value = where
    if kind == "spark_file":
        from pyspark import SparkFiles

        value = SparkFiles.get(str(value))
    return Classifier.load(value, threads=threads)


def _score(batches: Iterator[pa.Array], *, where: tuple[str, str | None], threads: int,
           text_column: str) -> Iterator[pa.Array]:
    import pyarrow as pa

    classifier = _classifier(where, threads)
    for batch in batches:
        out = columns(classifier, batch.to_pylist(), text_column)
        arrays = [pa.array(values, type=pa.float64() if key == "score" or key.startswith("p_")
                           else pa.string()) for key, values in out.items()]
        yield pa.StructArray.from_arrays(arrays, names=list(out))
