"""The ``edgesent`` command line: ``predict`` and ``info``, plus ``serve`` and the build
commands (train, distill, export, …) when those parts are installed."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from edgesent import __version__
from edgesent.bundle import load_bundle
from edgesent.classifier import CHUNK_TEXTS, Classifier, default_bundle_path
from edgesent.errors import EdgesentError
from edgesent.inputs import FORMATS as INPUT_FORMATS
from edgesent.inputs import STDIN, Review, ReviewReader
from edgesent.output import FORMATS as OUTPUT_FORMATS
from edgesent.output import SUFFIX_FORMATS, make_writer

logger = logging.getLogger(__name__)

PROGRESS_MIN_ROWS = 500
T = TypeVar("T")

MAIN_EPILOG = """\b
Examples:
  edgesent predict "Arrived broken, no refund." "Love it!"
  edgesent predict --input reviews.csv --output scored.csv
  edgesent info --model ./my-bundle

Run 'edgesent COMMAND --help' for the options of a command."""

PREDICT_EPILOG = """\b
Examples:
  edgesent predict "Stopped working after a week." "Great value for money"
  edgesent predict --input reviews.csv --text-column review --output scored.csv
  edgesent predict --input reviews.jsonl --format json --model ./my-bundle
  cat reviews.txt | edgesent predict - --format jsonl

Output rows follow the input order, one per review; a blank review gets a row with an
"error" field and no label."""

INFO_EPILOG = """\b
Examples:
  edgesent info
  edgesent info --model ./my-bundle --json"""


class EdgesentGroup(click.Group):
    """Turns edgesent and file errors into one-line ``Error: ...`` messages (exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgesentError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):  # e.g. `edgesent predict ... | head`
                _silence_stdout()
                sys.exit(1)
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None


@click.group(cls=EdgesentGroup, epilog=MAIN_EPILOG,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 96})
@click.version_option(__version__, "-V", "--version", prog_name="edgesent",
                      message="%(prog)s %(version)s")
def main() -> None:
    """Classify the sentiment of product reviews on the CPU with a small int8 ONNX model."""


def _model_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-m", "--model", type=click.Path(path_type=Path), envvar="EDGESENT_MODEL",
        show_envvar=True, metavar="PATH",
        help="Model bundle directory [default: the model shipped with edgesent].")(func)


@main.command(epilog=PREDICT_EPILOG)
@click.argument("texts", nargs=-1, metavar="[TEXT]...")
@click.option("-i", "--input", "input_path", metavar="FILE",
              help="Read reviews from FILE: .csv, .tsv, .jsonl, or plain text with one review "
                   "per line; '-' reads stdin.")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS),
              help="Format of the input when the file suffix does not tell "
                   "[default: from the suffix; plain text for stdin].")
@click.option("-c", "--text-column", metavar="NAME",
              help="CSV/TSV column or JSONL key holding the review "
                   "[default: text, review, content, … or the only column].")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write predictions to FILE (replaced only when all went well).")
@click.option("-f", "--format", "fmt", type=click.Choice(OUTPUT_FORMATS),
              help="Output format [default: from the --output suffix; otherwise table on a "
                   "terminal and jsonl in a pipe].")
@_model_option
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              metavar="N", help="Reviews per model call.")
@click.option("-t", "--threads", type=click.IntRange(min=1), metavar="N",
              help="CPU threads for the model [default: CPUs available to edgesent, at most 8].")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: for large files, on a terminal].")
def predict(texts: tuple[str, ...], input_path: str | None, input_format: str | None,
            text_column: str | None, output_path: Path | None, fmt: str | None,
            model: Path | None, batch_size: int, threads: int | None,
            progress: bool | None) -> None:
    """Classify reviews given as arguments, in a file, or on stdin.

    Each TEXT is one review; '-' reads reviews from stdin, one per line.
    """
    if texts == (STDIN,) and input_path is None:
        texts, input_path = (), STDIN
    if texts and input_path is not None:
        raise click.UsageError("give review texts or --input FILE, not both")
    if not texts and input_path is None:
        if _isatty(sys.stdin):
            raise click.UsageError("nothing to classify: give review texts, '-' to read "
                                   "stdin, or --input FILE")
        input_path = STDIN
    if texts and (text_column or input_format):
        raise click.UsageError("--text-column and --input-format apply to --input only")

    with contextlib.ExitStack() as stack:
        reader = None
        if input_path is not None:
            stream = sys.stdin.buffer if input_path == STDIN else None
            reader = stack.enter_context(ReviewReader(
                input_path, fmt=input_format, text_column=text_column, stream=stream))
        classifier = Classifier.load(model, threads=threads)
        out, fmt = _open_output(stack, output_path, fmt)
        auto = input_path not in (None, STDIN) and _isatty(sys.stderr) and (
            output_path is not None or not _isatty(out))
        want_bar = auto if progress is None else progress
        total = len(texts) if reader is None else (
            reader.estimate_rows() if want_bar or fmt == "table" else None)
        writer = make_writer(fmt, out, classifier.labels, total=total)
        bar = None
        if want_bar and total and (progress or total >= PROGRESS_MIN_ROWS):
            bar = stack.enter_context(
                click.progressbar(length=total, label="Classifying", file=sys.stderr))
        reviews: Iterable[Review] = (
            reader if reader is not None else [Review(t, n) for n, t in enumerate(texts, 1)])
        for chunk in _chunks(reviews, CHUNK_TEXTS):
            batch = [review.text for review in chunk]
            writer.write_many(batch, classifier.predict(batch, batch_size=batch_size))
            if bar is not None:
                bar.update(len(batch))
        writer.close()
    if output_path is not None:
        click.echo(f"Wrote {writer.rows} prediction(s) to {output_path}", err=True)


@main.command(epilog=INFO_EPILOG)
@_model_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def info(model: Path | None, as_json: bool) -> None:
    """Describe a model bundle: labels, encoding, size, precision, provenance, metrics.

    The bundle is verified first (checksums and model graph).
    """
    bundle = load_bundle(model if model is not None else default_bundle_path())
    manifest = bundle.manifest
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False))
        return
    enc = manifest.encoding
    content = enc.content_length
    cut = {"head": f"first {content}", "tail": f"last {content}",
           "head_tail": f"first {min(enc.head_tokens, content)} + last "
                        f"{content - min(enc.head_tokens, content)}"}[enc.truncation]
    tok = manifest.tokenizer
    tok_bits = [str(tok.get("type") or "tokenizer"), f"{tok.get('vocab_size', '?')} tokens"]
    if "lowercase" in tok:
        tok_bits.append("lowercase" if tok["lowercase"] else "cased")
    quant = manifest.model.get("quantization") or {}
    precision = manifest.model["precision"] + (f" ({_inline(quant)})" if quant else "")
    model_size = manifest.files[manifest.model["file"]]["size"]
    rows = {
        "task": manifest.task,
        "labels": ", ".join(manifest.labels) + "  (logit order)",
        "encoding": f"{enc.max_length} tokens max, {enc.truncation} ({cut} content tokens)",
        "tokenizer": f"{tok['file']}: " + ", ".join(tok_bits),
        "model": f"{manifest.model['file']}: {precision}, {_size(model_size)}",
        "temperature": str(manifest.temperature)
                       + ("  (uncalibrated)" if manifest.temperature == 1.0 else ""),
        "bundle": f"{_size(bundle.size_bytes)} in {len(manifest.files) + 1} files, "
                  f"{manifest.format} v{manifest.format_version}, checksums verified",
    }
    click.echo(f"{manifest.name}  ({bundle.path})\n")
    click.echo("\n".join(_mapping_lines(rows, 2)))
    for title, section in (("Provenance", manifest.provenance), ("Metrics", manifest.metrics)):
        click.echo(f"\n{title}")
        click.echo("\n".join(_mapping_lines(section, 2)) if section else "  (none recorded)")


# -- helpers ------------------------------------------------------------------------------


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _open_output(stack: contextlib.ExitStack, path: Path | None, fmt: str | None
                 ) -> tuple[TextIO, str]:
    """stdout, or a temporary file beside ``path`` renamed over it when all went well."""
    if path is None:
        out = sys.stdout
        return out, fmt or ("table" if _isatty(out) else "jsonl")
    fmt = fmt or SUFFIX_FORMATS.get(path.suffix.lower(), "jsonl")
    if path.parent and not path.parent.is_dir():
        raise click.ClickException(f"{path}: directory {path.parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    out = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def finish(exc_type: type[BaseException] | None, *_: object) -> None:
        out.close()
        if exc_type is None:
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, path)
        else:
            Path(tmp_name).unlink(missing_ok=True)

    stack.push(finish)

    return out, fmt


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _silence_stdout() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.2f} GiB"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_scalar(v) for v in value) or "-"
    return "-" if value is None else str(value)


def _is_flat(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and not any(
        isinstance(v, Mapping) for v in value.values())


def _inline(data: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_scalar(v)}" for k, v in data.items())


def _mapping_lines(data: Mapping[str, Any], indent: int) -> list[str]:
    """Readable lines for a free-form dict: tables for dicts of flat dicts, else key: value."""
    pad = " " * indent
    if data and all(_is_flat(v) for v in data.values()) and len(data) > 1:
        return _table(data, indent)
    width = max((len(str(k)) for k in data), default=0)
    lines = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value and not (
                _is_flat(value) and len(_inline(value)) <= 60):
            lines.append(f"{pad}{key}")
            lines.extend(_mapping_lines(value, indent + 2))
        else:
            shown = _inline(value) if isinstance(value, Mapping) else _scalar(value)
            lines.append(f"{pad}{key:<{width}}  {shown}")
    return lines


def _table(rows: Mapping[str, Mapping[str, Any]], indent: int) -> list[str]:
    columns: list[str] = []
    for row in rows.values():
        columns += [c for c in row if c not in columns]
    cells = [["", *columns]] + [[str(name), *(_scalar(row.get(c)) for c in columns)]
                                for name, row in rows.items()]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = []
    for cells_row in cells:
        parts = [cell.ljust(w) if i == 0 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(cells_row, widths, strict=True))]
        lines.append((" " * indent + "  ".join(parts)).rstrip())
    return lines


def _register(name: str, register: Callable[[click.Group], None]) -> None:
    try:
        register(main)
    except Exception as exc:  # a broken optional part must not break predict/info
        logger.warning("edgesent: could not add the %s commands: %s", name, exc)


# Optional commands, attached only when their modules import (light imports only there).
try:
    from edgesent.server_cli import register_serve
except ImportError:
    pass
else:
    _register("serve", register_serve)

try:
    from edgesent_export.cli import register_commands
except ImportError:
    pass
else:
    _register("build", register_commands)


if __name__ == "__main__":  # pragma: no cover
    main()
