"""Exceptions raised by edgesent.

Every error a user can cause derives from :class:`EdgesentError`, so an application (or
the CLI) can catch one type and show its message, which always says *what* is wrong and
*where* (bundle path and file, or input file, line and column).
"""

from __future__ import annotations


class EdgesentError(Exception):
    """Base class of the errors edgesent raises for bad models or bad input."""


class BundleError(EdgesentError):
    """A model bundle is missing, malformed, tampered with or incompatible.

    >>> raise BundleError("bundle models/x: edgesent.json: file is missing")
    Traceback (most recent call last):
    ...
    edgesent.errors.BundleError: bundle models/x: edgesent.json: file is missing
    """


class InputError(EdgesentError):
    """Reviews could not be read; the message names the file, line/row and column."""


# Optional modules edgesent imports lazily, and the pip command that installs each one.
INSTALL_HINTS = {
    "torch": 'pip install "edgesent[export]" torch==2.13.0',
    "transformers": 'pip install "edgesent[export]" torch==2.13.0',
    "optimum": 'pip install "edgesent[export]" torch==2.13.0',
    "onnx": 'pip install "edgesent[export]" torch==2.13.0',
    "pyarrow": 'pip install pyarrow (or "edgesent[export]")',
    "fastapi": 'pip install "edgesent[serve]"',
    "uvicorn": 'pip install "edgesent[serve]"',
    "pydantic": 'pip install "edgesent[serve]"',
}


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug.

    The one place that maps exceptions to what the CLI prints: edgesent's own errors
    say what and where already; a missing optional module names the pip command that
    installs it; a file-system error names the path.

    >>> user_message(InputError("r.csv: line 3, column 4: invalid UTF-8"))
    'r.csv: line 3, column 4: invalid UTF-8'
    >>> user_message(ModuleNotFoundError("No module named 'torch'", name="torch"))
    'torch is not installed; pip install "edgesent[export]" torch==2.13.0'
    >>> user_message(FileNotFoundError(2, "No such file or directory", "out/x.csv"))
    'out/x.csv: No such file or directory'
    >>> user_message(KeyError("bug")) is None
    True
    """
    if isinstance(exc, EdgesentError):
        return " ".join(str(exc).split("\n")) or type(exc).__name__
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        root = exc.name.split(".")[0]
        if root in INSTALL_HINTS:
            return f"{root} is not installed; {INSTALL_HINTS[root]}"
    if isinstance(exc, ImportError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return None
