"""``edgesent card``: a model card written from a bundle's manifest, never typed by hand.

:func:`card_content` reads a bundle's ``edgesent.json`` (verified first, like every load)
and any number of training runs' ``result.json`` (``edgesent train``, ``distill`` or a
``edgesent build`` folder) and gathers every figure the card shows, each with the file it
came from; :func:`edgesent.card_markdown.render_markdown` lays that out as Markdown. A
figure a file does not record prints as "–": nothing is estimated. The same inputs give
the same bytes (no clock, no machine paths beyond the ones given), and ``--json`` prints
the same content as JSON.

Only the manifest and JSON files are read, so this lives in the run half (no torch).

>>> from edgesent.bundle import load_bundle
>>> from edgesent.classifier import default_bundle_path
>>> content = card_content(default_bundle_path())
>>> recorded = load_bundle(default_bundle_path()).manifest.metrics["test"]["onnx_int8"]
>>> content["evaluation"]["sets"][0]["int8"]["accuracy"] == recorded["accuracy"]
True
>>> render_markdown(content).splitlines()[0]
'# Model card: `edgesent-reviews-en`'

"""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from edgesent.bundle import MANIFEST_NAME, load_bundle, sha256_file
from edgesent.card_markdown import MISSING, MOVIE_DOMAINS, render_markdown
from edgesent.errors import EdgesentError

MAX_LISTED_DOMAINS = 40  # more than this (MARC's product ids) are counted, not listed
RESULT_FILE = "result.json"  # what export/training_run.py writes in a run folder
CARD_VERSION = 1
MAX_SAFETENSORS_HEADER = 100_000_000

CARD_EPILOG = """\b
Examples:
  edgesent card edgesent/models/edgesent-reviews-en -o MODEL_CARD.md
  edgesent card runs/v2/bundle --teacher-run runs/minilm --teacher-run runs/mpnet=runs/v2-mpnet
  edgesent card runs/v2/bundle --json

--teacher-run DIR adds a row to the teacher table from DIR/result.json (an `edgesent
train` folder), or from DIR/teacher/result.json with the student DIR/bundle (or
DIR/student) when DIR is an `edgesent build` folder. DIR=STUDENT names the student that
row's teacher taught: a bundle folder or a distill run folder. A row whose student is
BUNDLE itself takes the place of the row BUNDLE's manifest gives."""


class CardError(EdgesentError):
    """A file the card reads is missing or unreadable; the message names it."""


# -- reading ------------------------------------------------------------------------------


def card_content(bundle: str | Path, teacher_runs: Sequence[str] = (),
                 command: str | None = None) -> dict[str, Any]:
    """Everything the card shows, as JSON-ready data; ``teacher_runs`` as ``--teacher-run``
    takes them (``DIR`` or ``DIR=STUDENT``)."""
    loaded = load_bundle(bundle)
    manifest = loaded.manifest.to_dict()
    manifest_path = loaded.path / MANIFEST_NAME
    files = [_file_entry(manifest_path, "every figure not marked with another file")]
    sets = _test_sets(manifest)
    prov = manifest.get("provenance") or {}
    metrics = manifest.get("metrics") or {}
    own_teacher = _manifest_teacher(prov, manifest_path)
    own_teacher["student"] = _bundle_student(manifest, manifest_path, sets)
    teachers = [own_teacher]
    for spec in teacher_runs:
        row, used, student_path = _run_row(spec)
        if student_path is not None and student_path.resolve() == loaded.path.resolve():
            teachers.remove(own_teacher)  # the run's row is the same pair, from its record
        teachers.append(row)
        files += [_file_entry(p, why) for p, why in used]
    return {
        "card_version": CARD_VERSION,
        "name": manifest["name"],
        "command": command or _command(str(bundle), teacher_runs),
        "files": files,
        "model": _model_section(manifest, loaded.size_bytes),
        "use": _use_section(manifest, prov),
        "training_data": _data_section(prov),
        "build": _build_section(prov),
        "evaluation": {"sets": sets, "domains": _domain_tables(metrics, sets)},
        "calibration": _calibration_section(metrics, sets),
        "teachers": teachers,
    }


def _file_entry(path: Path, why: str) -> dict[str, str]:
    return {"path": str(path), "sha256": sha256_file(path), "gave": why}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CardError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CardError(f"{path}: not UTF-8 text (byte {exc.start + 1})") from None
    except json.JSONDecodeError as exc:
        raise CardError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: "
                        f"{exc.msg}") from None
    if not isinstance(data, dict):
        raise CardError(f"{path}: line 1, column 1: expected a JSON object")
    return data


def _command(bundle: str, teacher_runs: Sequence[str], output: Path | None = None,
             as_json: bool = False) -> str:
    """The ``edgesent card`` command line that writes this card.

    >>> _command("b", ["runs/t=runs/s"], Path("CARD.md"))
    'edgesent card b --teacher-run runs/t=runs/s -o CARD.md'
    """
    args = ["edgesent", "card", bundle]
    for spec in teacher_runs:
        args += ["--teacher-run", spec]
    args += ["-o", str(output)] if output is not None else []
    return shlex.join(args + (["--json"] if as_json else []))


def _main_set_name(manifest: Mapping[str, Any]) -> str:
    """The name of the set ``metrics.test`` scores: recorded, or the first test source the
    extra sets do not name."""
    prov = manifest.get("provenance") or {}
    if isinstance(prov.get("test_set"), str):
        return str(prov["test_set"])
    extra = (manifest.get("metrics") or {}).get("extra_test_sets") or {}
    named = ((prov.get("data") or {}).get("sources") or {}).get("test") or {}
    return next((name for name in named if name not in extra), "test")


def _scores(block: Any) -> dict[str, Any] | None:
    if not isinstance(block, Mapping) or "accuracy" not in block:
        return None
    return {"accuracy": block.get("accuracy"), "macro_f1": block.get("macro_f1"),
            "n": block.get("n")}


def _test_sets(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per test set: n, fp32 and int8 scores (``metrics.test`` and
    ``metrics.extra_test_sets``); a flat block counts for the bundle's own precision."""
    metrics = manifest.get("metrics") or {}
    precision = (manifest.get("model") or {}).get("precision")
    blocks = {}
    if isinstance(metrics.get("test"), Mapping):
        blocks[_main_set_name(manifest)] = ("metrics.test", metrics["test"])
    for name, block in (metrics.get("extra_test_sets") or {}).items():
        if isinstance(block, Mapping):
            blocks[name] = (f"metrics.extra_test_sets.{name}", block)
    sets = []
    for name, (key, block) in blocks.items():
        flat = _scores(block)
        fp32 = _scores(block.get("onnx_fp32")) or (flat if precision == "fp32" else None)
        int8 = _scores(block.get("onnx_int8")) or (flat if precision == "int8" else None)
        agreement = (block.get("int8_vs_fp32") or {}).get("agreement")
        sets.append({"name": name, "key": key, "n": block.get("n"), "fp32": fp32,
                     "int8": int8, "pytorch_fp32": _scores(block.get("pytorch_fp32")),
                     "int8_fp32_agreement": agreement})
    return sets


def _domains_of(block: Any) -> dict[str, Any] | None:
    domains = block.get("per_domain") if isinstance(block, Mapping) else None
    return dict(domains) if isinstance(domains, Mapping) and domains else None


def _domain_tables(metrics: Mapping[str, Any], sets: Sequence[Mapping[str, Any]]
                   ) -> list[dict[str, Any]]:
    """Per-domain accuracy where the manifest records it, for each set and graph."""
    tables = []
    for entry in sets:
        block = _block(metrics, entry)
        found = {g: _domains_of(block.get(g)) for g in ("onnx_fp32", "onnx_int8")}
        if not any(found.values()):
            found = {"model": _domains_of(block)}
        graphs = {g: d for g, d in found.items() if d}
        if not graphs:
            continue
        names = sorted({d for domains in graphs.values() for d in domains})
        tables.append({
            "set": entry["name"], "domains": len(names),
            "rows": [{"domain": d, **{g: (graphs[g].get(d) or {}).get("accuracy")
                                      for g in graphs},
                      "n": next((graphs[g][d].get("n") for g in graphs if d in graphs[g]),
                                None)}
                     for d in names] if len(names) <= MAX_LISTED_DOMAINS else [],
            "product_domains": {g: product_accuracy(graphs[g]) for g in graphs},
        })
    return tables


def _block(metrics: Mapping[str, Any], entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """The metrics block of one test set entry of :func:`_test_sets`."""
    node = (metrics.get("test") if entry["key"] == "metrics.test"
            else (metrics.get("extra_test_sets") or {}).get(entry["name"]))
    return node if isinstance(node, Mapping) else {}


def product_accuracy(per_domain: Mapping[str, Any] | None) -> float | None:
    """Accuracy pooled over the product domains (every domain but FDU-MTL's ``imdb`` and
    ``MR``), weighted by their rows; None when no domain names a count and an accuracy.

    >>> product_accuracy({"books": {"accuracy": 0.9, "n": 100},
    ...                   "dvd": {"accuracy": 0.8, "n": 300}, "imdb": {"accuracy": 0.5, "n": 9}})
    0.825
    >>> product_accuracy({"imdb": {"accuracy": 0.5, "n": 9}}) is None
    True
    """
    if not per_domain or len(per_domain) > MAX_LISTED_DOMAINS:
        return None
    pairs = [(float(d["accuracy"]), int(d["n"])) for name, d in per_domain.items()
             if name not in MOVIE_DOMAINS and isinstance(d, Mapping)
             and isinstance(d.get("accuracy"), (int, float)) and isinstance(d.get("n"), int)]
    total = sum(n for _, n in pairs)
    return sum(a * n for a, n in pairs) / total if total else None


def _model_section(manifest: Mapping[str, Any], bundle_bytes: int) -> dict[str, Any]:
    model = manifest.get("model") or {}
    quant = model.get("quantization") or {}
    tok = manifest.get("tokenizer") or {}
    keep = ("tool", "mode", "format", "weights_dtype", "activations_dtype", "per_channel",
            "quantize_embeddings", "target")
    return {
        "labels": list(manifest["labels"]),
        "task": manifest.get("task"),
        "files": [{"name": name, "size_bytes": entry.get("size"),
                   "role": "graph" if name == model.get("file")
                   else "tokenizer" if name == tok.get("file") else "file"}
                  for name, entry in sorted((manifest.get("files") or {}).items())],
        "bundle_bytes": bundle_bytes,
        "precision": model.get("precision"),
        "quantization": {k: quant[k] for k in keep if k in quant},
        "encoding": dict(manifest.get("encoding") or {}),
        "max_length_choice": dict((manifest.get("metrics") or {}).get("max_length") or {}),
        "tokenizer": {k: tok.get(k) for k in ("type", "vocab_size", "lowercase")},
        "temperature": manifest.get("temperature"),
    }


def _use_section(manifest: Mapping[str, Any], prov: Mapping[str, Any]) -> dict[str, Any]:
    labels = list(manifest["labels"])
    sources = ((prov.get("data") or {}).get("sources") or {})
    return {
        "task": ("binary polarity: " if len(labels) == 2 else f"{len(labels)} classes: ")
                + ", ".join(labels),
        "trained_on": sorted({s.get("path") for s in sources.get("train") or ()
                              if isinstance(s, Mapping) and s.get("path")}),
    }


def _data_section(prov: Mapping[str, Any]) -> dict[str, Any]:
    data = prov.get("data") or {}
    sources = data.get("sources") or {}
    licences = prov.get("licences") or {}
    rows = []
    for role in ("train", "unlabelled"):
        for src in sources.get(role) or ():
            rows.append(_source_row(role, src, licences))
    for name, src in (sources.get("test") or {}).items():
        rows.append({**_source_row("test", src, licences), "set": name})
    return {"sources": rows, "rows": data.get("rows") or {},
            "rows_dropped": data.get("rows_dropped") or {},
            "distillation": (prov.get("student") or {}).get("distillation")}


def _source_row(role: str, src: Any, licences: Mapping[str, Any]) -> dict[str, Any]:
    src = src if isinstance(src, Mapping) else {"path": str(src)}
    return {"role": role, "path": src.get("path"), "where": src.get("where"),
            "sample": src.get("sample"), "licence": licences.get(str(src.get("path")))}


def _build_section(prov: Mapping[str, Any]) -> dict[str, Any]:
    student = prov.get("student") or {}
    source = prov.get("student_source") or {}
    return {"command": prov.get("command"), "edgesent_version": prov.get("edgesent_version"),
            "created": prov.get("created"), "model": prov.get("model"),
            "base_model": prov.get("base_model"), "student_layers": student.get("layers"),
            "student_init": student.get("init"), "student_source_command": source.get("command"),
            "student_source_bundle": source.get("bundle")}


def _calibration_section(metrics: Mapping[str, Any], sets: Sequence[Mapping[str, Any]]
                         ) -> dict[str, Any]:
    cal = metrics.get("calibration") or {}
    keys = ("set", "n", "temperature", "nll_before", "nll_after", "ece_before", "ece_after",
            "ece_bins")
    per_set = [{"set": s["name"],
                "int8_ece_before": _block(metrics, s).get("int8_ece_before"),
                "int8_ece_after": _block(metrics, s).get("int8_ece_after")}
               for s in sets]
    return {**{k: cal.get(k) for k in keys},
            "test_sets": [p for p in per_set if p["int8_ece_before"] is not None]}


# -- the teacher table --------------------------------------------------------------------


def _architecture(arch: Any) -> dict[str, Any]:
    """model_type, layers, hidden width and parameters from a config-like dict (BERT or
    DistilBERT key names)."""
    arch = arch if isinstance(arch, Mapping) else {}
    return {"model_type": arch.get("model_type"),
            "layers": arch.get("num_hidden_layers", arch.get("n_layers")),
            "hidden": arch.get("hidden_size", arch.get("dim")),
            "parameters": arch.get("parameters")}


def _manifest_teacher(prov: Mapping[str, Any], manifest_path: Path) -> dict[str, Any]:
    teacher = prov.get("teacher") or {}
    test = teacher.get("test") or {}
    return {
        "teacher": str(teacher.get("path") or prov.get("base_model") or MISSING),
        "source": f"{manifest_path}: provenance.teacher",
        **_architecture(teacher.get("architecture")),
        "accuracy": {k: v.get("accuracy") if isinstance(v, Mapping) else v
                     for k, v in test.items()},
        "product_domains": {k: product_accuracy(v.get("per_domain"))
                            for k, v in test.items() if isinstance(v, Mapping)},
        "wall_seconds": teacher.get("wall_seconds"),
        "train_seconds": teacher.get("train_seconds"),
    }


def _bundle_student(manifest: Mapping[str, Any], path: Path,
                    sets: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    precision = (manifest.get("model") or {}).get("precision")
    graph = "int8" if any(s["int8"] for s in sets) else "fp32"
    metrics = manifest.get("metrics") or {}
    return {
        "name": manifest["name"], "source": f"{path}: metrics ({graph} graph)",
        "graph": f"bundle, {precision}" if precision == graph else f"bundle, {graph}",
        "accuracy": {s["name"]: (s[graph] or {}).get("accuracy") for s in sets},
        "product_domains": {s["name"]: product_accuracy(
            _domains_of(_block(metrics, s).get(f"onnx_{graph}")))
            for s in sets},
    }


def _run_row(spec: str) -> tuple[dict[str, Any], list[tuple[Path, str]], Path | None]:
    """A teacher row from ``DIR`` or ``DIR=STUDENT``, the files it read and its student's
    folder (None when it names none)."""
    run, _, student_spec = spec.partition("=")
    root = Path(run)
    if not root.is_dir():
        raise CardError(f"--teacher-run {run}: no such directory")
    build = (root / "teacher" / RESULT_FILE).is_file() and not (root / RESULT_FILE).is_file()
    teacher_dir = root / "teacher" if build else root
    result_path = teacher_dir / RESULT_FILE
    result = _read_json(result_path)
    used = [(result_path, f"teacher row {run}")]
    arch = _architecture(result.get("architecture"))
    config_path = teacher_dir / "best" / "config.json"
    if arch["model_type"] is None and config_path.is_file():  # runs before it was recorded
        arch = {**_architecture(_read_json(config_path)), "parameters": None}
        used.append((config_path, f"teacher row {run}: architecture"))
    weights = teacher_dir / "best" / "model.safetensors"
    if arch["parameters"] is None and weights.is_file():
        arch["parameters"] = safetensors_parameters(weights)
        used.append((weights, f"teacher row {run}: parameter count (its header)"))
    test = result.get("test") or {}
    row: dict[str, Any] = {
        "teacher": run, "source": str(result_path), **arch,
        "accuracy": {k: v.get("accuracy") for k, v in test.items() if isinstance(v, Mapping)},
        "product_domains": {k: product_accuracy(v.get("per_domain"))
                            for k, v in test.items() if isinstance(v, Mapping)},
        "wall_seconds": result.get("wall_seconds"),
        "train_seconds": result.get("train_seconds"),
        "student": None,
    }
    student_path: Path | None = Path(student_spec) if student_spec else None
    if student_path is None and build:
        student_path = next((p for p in (root / "bundle", root / "student")
                             if (p / MANIFEST_NAME).is_file() or (p / RESULT_FILE).is_file()),
                            None)
    if student_path is not None:
        row["student"], student_file = _student_of(student_path)
        used.append((student_file, f"teacher row {run}: its student"))
    return row, used, student_path


def safetensors_parameters(path: Path) -> int:
    """How many numbers a ``.safetensors`` file stores, read from its header alone.

    >>> import tempfile
    >>> header = json.dumps({"w": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
    ...                      "__metadata__": {"format": "pt"}}).encode()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     file = Path(tmp) / "model.safetensors"
    ...     _ = file.write_bytes(struct.pack("<Q", len(header)) + header + bytes(48))
    ...     safetensors_parameters(file)
    12
    """
    with open(path, "rb") as handle:
        size = struct.unpack("<Q", handle.read(8).ljust(8, b"\0"))[0]
        if not 2 <= size <= MAX_SAFETENSORS_HEADER:
            raise CardError(f"{path}: not a safetensors file (header of {size} bytes)")
        try:
            header = json.loads(handle.read(size))
            return sum(math.prod(t["shape"]) for name, t in header.items()
                       if name != "__metadata__")
        except (ValueError, TypeError, KeyError, AttributeError):
            raise CardError(f"{path}: not a safetensors file (unreadable header)") from None


def _student_of(path: Path) -> tuple[dict[str, Any], Path]:
    """What a student reached: a bundle's recorded metrics, or a distill run's test scores."""
    if (path / MANIFEST_NAME).is_file():
        manifest = load_bundle(path).manifest.to_dict()
        return _bundle_student(manifest, path / MANIFEST_NAME, _test_sets(manifest)), \
            path / MANIFEST_NAME
    if not path.is_dir():
        raise CardError(f"--teacher-run student {path}: no such directory")
    result_path = path / RESULT_FILE
    result = _read_json(result_path)
    test = result.get("test") or {}
    return {
        "name": path.name, "source": str(result_path), "graph": "PyTorch fp32",
        "accuracy": {k: v.get("accuracy") for k, v in test.items() if isinstance(v, Mapping)},
        "product_domains": {k: product_accuracy(v.get("per_domain"))
                            for k, v in test.items() if isinstance(v, Mapping)},
    }, result_path


# -- the command --------------------------------------------------------------------------


@click.command(epilog=CARD_EPILOG)
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the card to FILE (an existing file is replaced only once the card "
                   "is complete) [default: stdout].")
@click.option("--teacher-run", "teacher_runs", multiple=True, metavar="DIR[=STUDENT]",
              help="Add a row to the teacher table from a training run (see below); repeat.")
@click.option("--json", "as_json", is_flag=True, help="Print the card's content as JSON.")
def card(bundle: Path, output_path: Path | None, teacher_runs: tuple[str, ...],
         as_json: bool) -> None:
    """Write a model card for BUNDLE from its manifest (and training runs' results)."""
    from edgesent.cli import _open_output

    command = _command(str(bundle), teacher_runs, output_path, as_json)
    content = card_content(bundle, teacher_runs, command=command)
    text = (json.dumps(content, indent=2, ensure_ascii=False) + "\n" if as_json
            else render_markdown(content))
    with contextlib.ExitStack() as stack:
        out, _ = _open_output(stack, output_path, "json" if as_json else "markdown")
        out.write(text)
    if output_path is not None:
        click.echo(f"Wrote the model card of {content['name']} to {output_path}", err=True)
