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
