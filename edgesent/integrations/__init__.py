"""Scoring on existing engines: :mod:`edgesent.integrations.ray` and :mod:`.spark`.

Both adapters turn a batch of a text column into the same answer as
:meth:`edgesent.Classifier.predict`, row for row: ``label``, ``score``, each label's
probability and ``error`` (``"empty text"`` for a blank or missing text, whose row is
kept). Importing this package or its modules imports neither engine; they load when a
function is called, with an ImportError that names the extra to install.

>>> texts(["Great value", None], "review")
['Great value', '']
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgesent import Classifier


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an ImportError saying which edgesent extra installs it.

    >>> require("json", "none").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is not installed; install it with: "
                          f'pip install "edgesent[{extra}]"') from exc


def texts(values: Iterable[Any], column: str) -> list[str]:
    """A text column's values as strings; a missing value (None, NaN) becomes a blank text.

    >>> texts([1.5], "review")
    Traceback (most recent call last):
    ...
    TypeError: column 'review' holds a float (1.5), expected text
    """
    out = []
    for value in values:
        if value is None or (isinstance(value, float) and value != value):
            out.append("")
        elif isinstance(value, str):
            out.append(value)
        else:
            raise TypeError(f"column {column!r} holds a {type(value).__name__} "
                            f"({str(value)[:40]}), expected text")
    return out


def columns(classifier: Classifier, text_values: list[Any], text_column: str
            ) -> dict[str, list[Any]]:
    """The output columns for one batch of a text column, in order.

    >>> from edgesent import Classifier
    >>> columns(Classifier.load(threads=1), ["Love it", None], "review")["error"]
    [None, 'empty text']
    """
    predictions = classifier.predict(texts(text_values, text_column))
    out: dict[str, list[Any]] = {"label": [p.label for p in predictions],
                                 "score": [p.score for p in predictions]}
    for label in classifier.labels:
        out[f"p_{label}"] = [p.scores.get(label) for p in predictions]
    out["error"] = [p.error for p in predictions]
    return out
