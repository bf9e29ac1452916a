"""edgesent: classify product-review sentiment on CPU with a small int8 ONNX model.

>>> from edgesent import Classifier
>>> clf = Classifier.load()  # doctest: +SKIP
>>> clf.predict("Battery died after two days.").label  # doctest: +SKIP
'negative'
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgesent")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from edgesent.bundle import Bundle, load_bundle, write_bundle
from edgesent.classifier import Classifier, Prediction
from edgesent.errors import BundleError, EdgesentError, InputError

__all__ = [
    "Bundle",
    "BundleError",
    "Classifier",
    "EdgesentError",
    "InputError",
    "Prediction",
    "__version__",
    "load_bundle",
    "write_bundle",
]
