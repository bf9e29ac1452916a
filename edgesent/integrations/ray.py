"""Score a Ray Data dataset: ``classify(dataset, "review")`` (``pip install "edgesent[ray]"``).

Each actor of a ``map_batches`` actor pool loads the bundle once and classifies Arrow
batches with :meth:`edgesent.Classifier.predict`, on ``threads`` ONNX Runtime threads
(1 by default) and as many Ray CPUs. The dataset comes back with every input column and
``label``, ``score``, ``p_<label>`` for each label, and ``error`` (``"empty text"`` for a
blank or missing text; its row is kept, with null label and scores). Lazy like any Ray
Data transform: nothing runs until the dataset is consumed.

Run it as written (the embedded model; ``ray.init()`` starts a local cluster, or joins one
with ``ray.init(address="auto")``)::

    import ray
    from edgesent.integrations.ray import classify

    ray.init(num_cpus=2)
    reviews = ray.data.from_items([{"id": 1, "review": "Broke after a week."},
                                   {"id": 2, "review": "Lovely fabric, fits perfectly."}])
    print(classify(reviews, "review", concurrency=2).to_pandas())

A custom bundle reaches the workers in one of two ways:

- **a shared path**: ``classify(ds, model="/mnt/models/my-bundle")``, a directory every
  node (and the driver, which verifies it first) can read: a network mount or a path
  baked into the image;
- **shipped with the job**: ``classify(ds, model="my-bundle", ship=True)`` reads the
  bundle on the driver and sends its files (a few megabytes) with the job through Ray's
  object store; each actor writes them to a temporary directory and loads them there.
  Nothing needs to exist on the workers but edgesent itself.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgesent import Classifier
from edgesent.integrations import columns, require

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset

__all__ = ["classify"]

DEFAULT_BATCH_ROWS = 1024  # rows per Ray batch: enough to sort texts into tight padding


def classify(dataset: Dataset, text_column: str = "review",
             model: str | os.PathLike[str] | None = None, *,
             batch_size: int = DEFAULT_BATCH_ROWS, concurrency: int | None = None,
             threads: int = 1, ship: bool = False) -> Dataset:
    """``dataset`` with ``label``, ``score``, ``p_<label>`` and ``error`` columns added.

    ``model``: a bundle directory (default: the model shipped with edgesent); ``ship``
    sends it with the job instead of reading it on each worker. ``batch_size``: rows per
    Ray batch. ``threads``: ONNX Runtime threads, and Ray CPUs, per actor.
    ``concurrency``: actors (default: an autoscaling pool, up to the cluster's CPUs); a
    fixed pool should leave a CPU free for the tasks that read and write the data, which
    otherwise wait for ever on the CPUs the actors hold. Rows come out in Ray Data's
    order; ``DataContext.get_current().execution_options.preserve_order = True`` keeps the
    input order exactly.

    >>> from edgesent.integrations.ray import classify
    >>> classify(ray.data.from_items([{"review": "Love it"}])).take_all()  # doctest: +SKIP
    [{'review': 'Love it', 'label': 'positive', 'score': 0.98, ..., 'error': None}]
    """
    data = require("ray.data", "ray")
    for name, value in (("batch_size", batch_size), ("threads", threads),
                        ("concurrency", 1 if concurrency is None else concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    labels = Classifier.load(model, threads=1).labels  # fail here, in one line, on a bad bundle
    known = dataset.columns(fetch_if_missing=False)  # None when Ray would have to read data
    if known is not None:
        check_columns(known, text_column, labels)
    files = bundle_files(model) if ship and model is not None else None
    compute = (data.ActorPoolStrategy(min_size=1) if concurrency is None
               else data.ActorPoolStrategy(size=concurrency))
    return dataset.map_batches(
        _Scorer, batch_size=batch_size, batch_format="pyarrow", compute=compute,
        num_cpus=threads, udf_modifying_row_count=False,
        fn_constructor_kwargs={"model": None if files else model, "files": files,
                               "text_column": text_column, "threads": threads})


def bundle_files(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every file under a bundle directory, by relative path, to ship with a job."""
    root = Path(path)
    return {str(file.relative_to(root)): file.read_bytes()
            for file in sorted(root.rglob("*")) if file.is_file()}


def check_columns(names: list[str], text_column: str, labels: list[str]) -> None:
    """ValueError when the text column is missing or an output column already exists.

    >>> check_columns(["id", "text"], "review", ["negative", "positive"])
    Traceback (most recent call last):
    ...
    ValueError: no column 'review' in the dataset (columns: id, text)
    """
    if text_column not in names:
        raise ValueError(f"no column {text_column!r} in the dataset "
                         f"(columns: {', '.join(names)})")
    for name in ("label", "score", *(f"p_{label}" for label in labels), "error"):
        if name in names:
            raise ValueError(f"the dataset already has a column {name!r}, which classify "
                             "adds; rename it first")


class _Scorer:
    """A Ray Data actor: loads the bundle once, then classifies one Arrow batch per call."""

    def __init__(self, model: str | None, files: dict[str, bytes] | None, text_column: str,
                 threads: int) -> None:
        if files is not None:  # the bundle travelled with the job: materialise it here
            self._tmp = tempfile.TemporaryDirectory(prefix="edgesent-bundle-")
            for name, data in files.items():
                target = Path(self._tmp.name, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            model = self._tmp.name
        self.classifier = Classifier.load(model, threads=threads)
        self.text_column = text_column

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        check_columns(batch.column_names, self.text_column, self.classifier.labels)
        new = columns(self.classifier, batch.column(self.text_column).to_pylist(),
                      self.text_column)
        for name, values in new.items():
            kind = pa.float64() if name == "score" or name.startswith("p_") else pa.string()
            batch = batch.append_column(name, pa.array(values, type=kind))
        return batch
