"""Sizes on disk (model files, installed environment) and the machine a run measured on."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import importlib.util
import os
import platform
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
             "asimd", "asimddp", "sve", "i8mm", "bf16")
VERSIONED = ("edgesent", "onnxruntime", "numpy", "tokenizers", "click", "torch",
             "transformers", "optimum", "optimum-onnx", "onnx", "huggingface-hub",
             "safetensors", "scikit-learn", "scipy", "vaderSentiment", "matplotlib")
# Sources of an editable install that never ship (model bundles are counted as models).
EDITABLE_SKIP = ("__pycache__", "models")


def files_size(paths: Iterable[str | Path]) -> int:
    """Total bytes of the given files (missing ones count 0).

    >>> files_size([])
    0
    """
    total = 0
    for path in paths:
        try:
            total += Path(path).stat().st_size
        except OSError:
            continue
    return total


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in EDITABLE_SKIP]
        total += files_size(Path(dirpath) / f for f in filenames)
    return total


@cache
def _top_level_map() -> dict[str, list[str]]:
    return md.packages_distributions()


@cache
def distribution_size(name: str) -> int:
    """Bytes of the files a distribution installed (its RECORD). An editable install
    lists no package files: its source packages are sized instead (without models)."""
    dist = md.distribution(name)
    files = list(dist.files or [])
    size = files_size(f.locate() for f in files)
    tops = [t for t, dists in _top_level_map().items() if name in dists]
    listed = {str(f).split("/")[0] for f in files}
    for top in tops:
        if top in listed or f"{top}.py" in listed:
            continue
        spec = importlib.util.find_spec(top)
        if spec and spec.submodule_search_locations:
            size += sum(_tree_size(Path(p)) for p in spec.submodule_search_locations)
        elif spec and spec.origin:
            size += files_size([spec.origin])
    return size


def requirement_closure(roots: Iterable[str]) -> tuple[list[str], list[str]]:
    """Installed distributions that ``pip install ROOTS`` brings in (requirements without
    extras, followed recursively), and the required ones that are not installed."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    missing: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        key = canonicalize_name(name)
        if key in found or key in missing:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            missing.add(key)
            continue
        found[key] = dist.metadata["Name"]
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                stack.append(requirement.name)
    return sorted(found.values(), key=str.lower), sorted(missing)


def imported_distributions(modules: Iterable[str]) -> list[str]:
    """Distributions that provide ``modules`` (the standard library provides none)."""
    mapping = _top_level_map()
    names: set[str] = set()
    for module in modules:
        names.update(mapping.get(module.split(".")[0], []))
    return sorted(names, key=str.lower)


def environment(roots: Iterable[str], modules: Iterable[str] = ()) -> dict[str, Any]:
    """Installed size of what a system needs: ``roots`` and everything they require; also
    lists the distributions its process actually imported."""
    names, missing = requirement_closure(roots)
    sizes = {name: distribution_size(name) for name in names}
    return {"bytes": sum(sizes.values()), "roots": list(roots), "distributions": sizes,
            "missing": missing, "imported": imported_distributions(modules)}


def _cpuinfo() -> tuple[str | None, list[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None, []
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and model is None:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model, [f for f in CPU_FLAGS if f in flags]


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def machine_info(threads: Iterable[int]) -> dict[str, Any]:
    """CPU model, instruction sets, cores, memory, library versions and the date."""
    model, flags = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": model,
        "instruction_sets": flags,
        "cpus_visible": os.cpu_count(),
        "cpus_usable": usable,
        "threads_measured": sorted(set(threads)),
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {name: _version(name) for name in VERSIONED},
        "load_average_start": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (a busy machine makes timings slower)."""
    return _loadavg()
