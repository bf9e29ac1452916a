"""The build-half tests' one rule for the [export] extra.

Without it, a test module that needs it skips, with :data:`EXPORT_REASON` saying what to
install. With ``EDGESENT_REQUIRE_EXPORT=1`` (CI sets it: the README's test command
installs everything, so a skip there is a broken install) ``conftest.py`` imports the
extra's packages at collection time, so a missing one fails the run instead.
"""

from __future__ import annotations

import importlib
import os

REQUIRE_ENV = "EDGESENT_REQUIRE_EXPORT"
EXPORT_MODULES = ("torch", "transformers", "optimum.exporters.onnx", "optimum.onnxruntime")
EXPORT_REASON = ("needs the [export] extra (torch, transformers, optimum-onnx): pip install "
                 f"'edgesent[export]' torch==2.13.0; {REQUIRE_ENV}=1 fails instead of skipping")


def enforce() -> None:
    """With ``EDGESENT_REQUIRE_EXPORT=1``, import every package of the extra or fail."""
    if os.environ.get(REQUIRE_ENV) != "1":
        return
    for name in EXPORT_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"{REQUIRE_ENV}=1 but {name} cannot be imported ({exc}): "
                              "install the [export] extra") from exc
