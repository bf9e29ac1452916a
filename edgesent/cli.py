"""The ``edgesent`` command line: ``predict`` and ``info``, plus ``serve`` and the build
commands (train, distill, export, evaluate, build).

Every command is registered here; ``serve`` and the build commands are imported only when
one of them runs or ``--help`` describes them, so ``import edgesent.cli`` stays light
(no torch, no FastAPI, no build half). Errors a user can fix become one ``Error: ...``
line and exit status 1, mapped in one place (:func:`edgesent.errors.user_message`).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from edgesent import __version__
from edgesent.errors import user_message
from edgesent.inputs import FORMATS as INPUT_FORMATS
from edgesent.inputs import STDIN, Review, ReviewReader
from edgesent.output import FORMATS as OUTPUT_FORMATS
from edgesent.output import format_for_path, make_writer, render_table
from edgesent.runner import (
    CHUNK_TEXTS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MEMORY_ARENA,
    DEFAULT_TOKEN_BUDGET,
)

PROGRESS_MIN_ROWS = 500
T = TypeVar("T")
# Commands whose modules load when the command runs (or --help describes it).
LAZY_COMMANDS = {
    "serve": "edgesent.server_cli",
    "train": "edgesent_export.cli",
    "distill": "edgesent_export.cli",
    "evaluate": "edgesent_export.cli",
    "export": "edgesent_export.cli",
    "build": "edgesent_export.cli",
    "record-teacher": "edgesent_export.cli",
    "card": "edgesent.card",
}
# Output that must be written in place, never replaced by a renamed temporary file.
_DEVICE_DIRS = ("/dev/", "/proc/")
_FD_PATH = re.compile(r"^/(?:proc/(?P<pid>self|\d+)|dev)/fd/(?P<fd>\d+)$")
_STD_STREAMS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}

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
  edgesent predict --input marc.jsonl --text-column review_body --title-column review_title
  cat reviews.txt | edgesent predict - --format jsonl

Output rows follow the input order, one per review; a blank review gets a row with an
"error" field and no label. json, jsonl and csv output carry the input's columns (an id,
a date) ahead of label, score, scores (json) or p_<label> (csv) and error; when the input
already has such a column, the prediction columns are prefixed with pred_."""

INFO_EPILOG = """\b
Examples:
  edgesent info
  edgesent info --model ./my-bundle --json"""


class EdgesentGroup(click.Group):
    """The ``edgesent`` group: lazily loaded commands, and errors as one-line messages."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            self.add_command(_load_command(cmd_name))
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # e.g. `edgesent predict ... | head`
            _silence_stdout()
            sys.exit(1)
        except click.ClickException:
            raise
        except Exception as exc:
            message = user_message(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None


def _load_command(name: str) -> click.Command:
    """The command ``name`` from its module; a stand-in that explains when it cannot load."""
    module_name = LAZY_COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
        command = getattr(module, name, None)
        if not isinstance(command, click.Command):  # commands attached by a register hook
            scratch = click.Group()
            for hook in ("register_commands", "register_serve"):
                if callable(getattr(module, hook, None)):
                    getattr(module, hook)(scratch)
            command = scratch.commands.get(name)
        if command is None:
            raise ImportError(f"{module_name} defines no command {name!r}")
        return command
    except Exception as exc:  # a broken optional part must not break predict or --help
        reason = user_message(exc) or f"{type(exc).__name__}: {exc}"

        @click.command(name, context_settings={"ignore_unknown_options": True},
                       add_help_option=False, help=f"(unavailable: {reason})")
        @click.argument("args", nargs=-1, type=click.UNPROCESSED)
        def unavailable(args: tuple[str, ...]) -> None:
            raise click.ClickException(f"edgesent {name} is unavailable: {reason}")

        return unavailable


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
              help="Read reviews from FILE: .csv, .tsv, .jsonl, .json, .parquet (.gz too), or "
                   "plain text with one review per line; '-' reads stdin.")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS),
              help="Format of the input when the file suffix does not tell "
                   "[default: from the suffix; plain text for stdin].")
@click.option("-c", "--text-column", metavar="NAME",
              help="CSV/TSV column or JSON key holding the review "
                   "[default: text, review, content, … or the only column].")
@click.option("--title-column", metavar="NAME",
              help="Column or JSON key holding each review's title, joined before the text "
                   "as training joins them (\"<title>. <text>\"); a row without one keeps "
                   "its text.")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write predictions to FILE (a regular file is replaced only when all went "
                   "well, keeping its permissions; a device or pipe is written in place).")
@click.option("-f", "--format", "fmt", type=click.Choice(OUTPUT_FORMATS),
              help="Output format [default: from the --output suffix; otherwise table on a "
                   "terminal and jsonl in a pipe].")
@click.option("--input-columns/--no-input-columns", default=True, show_default=True,
              help="Write the input's columns (an id, a date) beside the prediction in "
                   "json, jsonl and csv output.")
@_model_option
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE,
              show_default=True,
              metavar="N", help="Most reviews per model call.")
@click.option("--token-budget", type=click.IntRange(min=1), metavar="N",
              help="Most padded tokens (reviews × longest review) per model call; bounds "
                   f"memory [default: {DEFAULT_TOKEN_BUDGET}].")
@click.option("-t", "--threads", type=click.IntRange(min=1), metavar="N",
              help="CPU threads for the model [default: CPUs available to edgesent, at most 8].")
@click.option("--memory-arena/--no-memory-arena", default=DEFAULT_MEMORY_ARENA,
              show_default=True,
              help="Keep freed buffers for the next model call (bounded by --token-budget); "
                   "--no-memory-arena returns them: less memory, about a third of the speed.")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr [default: for large inputs, on a terminal].")
def predict(texts: tuple[str, ...], input_path: str | None, input_format: str | None,
            text_column: str | None, title_column: str | None, output_path: Path | None,
            fmt: str | None,
            input_columns: bool, model: Path | None, batch_size: int, token_budget: int | None,
            threads: int | None, memory_arena: bool, progress: bool | None) -> None:
    """Classify reviews given as arguments, in a file, or on stdin.

    Each TEXT is one review; '-' reads reviews from stdin, one per line.
    """
    from edgesent.classifier import Classifier

    if texts == (STDIN,) and input_path is None:
        texts, input_path = (), STDIN
    if texts and input_path is not None:
        raise click.UsageError("give review texts or --input FILE, not both")
    if not texts and input_path is None:
        if _isatty(sys.stdin):
            raise click.UsageError("nothing to classify: give review texts, '-' to read "
                                   "stdin, or --input FILE")
        input_path = STDIN
    if texts and (text_column or title_column or input_format):
        raise click.UsageError("--text-column, --title-column and --input-format apply to "
                               "--input only")
    if output_path is not None and fmt is None:
        try:
            fmt = format_for_path(output_path)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'-o' / '--output'") from None

    with contextlib.ExitStack() as stack:
        reader = None
        if input_path is not None:
            stream = sys.stdin.buffer if input_path == STDIN else None
            reader = stack.enter_context(ReviewReader(
                input_path, fmt=input_format, text_column=text_column, stream=stream,
                title_column=title_column))
        out, fmt = _open_output(stack, output_path, fmt)
        budget = {} if token_budget is None else {"token_budget": token_budget}
        classifier = Classifier.load(model, threads=threads, memory_arena=memory_arena, **budget)
        auto = input_path is not None and _isatty(sys.stderr) and (
            output_path is not None or not _isatty(out))
        want_bar = auto if progress is None else progress
        total = len(texts) if reader is None else (
            reader.estimate_rows() if want_bar or fmt == "table" else None)
        writer = make_writer(fmt, out, classifier.labels, total=total,
                             input_columns=input_columns,
                             columns=reader.columns if reader is not None else None)
        show = want_bar and (progress or total is None or total >= PROGRESS_MIN_ROWS)
        bar = _Progress(stack, total, quiet_below=0 if progress else PROGRESS_MIN_ROWS
                        ) if show else None
        reviews: Iterable[Review] = (
            reader if reader is not None else [Review(t, line=n) for n, t in enumerate(texts, 1)])
        for chunk in _chunks(reviews, CHUNK_TEXTS):
            predictions = classifier.predict([review.text for review in chunk],
                                             batch_size=batch_size,
                                             on_progress=bar.update if bar else None)
            writer.write_many(chunk, predictions)
        writer.close()
        if bar is not None:
            bar.finish()
    if output_path is not None:
        click.echo(f"Wrote {writer.rows} prediction(s) to {output_path}", err=True)


@main.command(epilog=INFO_EPILOG)
@_model_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def info(model: Path | None, as_json: bool) -> None:
    """Describe a model bundle: labels, encoding, size, precision, provenance, metrics.

    The bundle is verified first; "verified" lists exactly what was checked.
    """
    from edgesent.bundle import load_bundle
    from edgesent.classifier import default_bundle_path

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
    model_size = manifest.files[manifest.model["file"]]["size"]
    rows = {
        "task": manifest.task,
        "labels": ", ".join(manifest.labels) + "  (logit order)",
        "encoding": f"{enc.max_length} tokens max, {enc.truncation} ({cut} content tokens)",
        "tokenizer": f"{tok['file']}: " + ", ".join(tok_bits),
        "model": f"{manifest.model['file']}: {manifest.model['precision']}, {_size(model_size)}",
        **({"quantization": _inline(quant)} if quant else {}),
        "temperature": str(manifest.temperature)
                       + ("  (uncalibrated)" if manifest.temperature == 1.0 else ""),
        "bundle": f"{_size(bundle.size_bytes)} in {len(manifest.files) + 1} files",
        "verified": "; ".join(bundle.checks),
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
    """Where predictions go, and in which format.

    stdout (as UTF-8 for machine formats); a regular file (a symlink followed to its
    target) through a temporary file beside it, renamed over it with its permissions
    when all went well; anything else (a FIFO, a device, ``/dev/stdout``, a link into
    ``/proc/self/fd``) written in place and never replaced.
    """
    if path is None:
        fmt = fmt or ("table" if _isatty(sys.stdout) else "jsonl")
        return _stdout(stack, fmt), fmt
    fmt = fmt or format_for_path(path)
    try:
        st: os.stat_result | None = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        st = None
    special, fd = _device_target(path)
    if fd is not None:  # /dev/stdout, /proc/self/fd/1: the descriptor itself, sharing its
        out = os.fdopen(os.dup(fd), "w", encoding="utf-8", newline="")  # offset (a reopened
        stack.callback(out.close)  # file would start at 0 and be overwritten by the shell)
        return out, fmt
    if special or (st is not None and not stat.S_ISREG(st.st_mode)):
        out = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 (closed by stack)
        stack.callback(out.close)
        return out, fmt
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        raise click.ClickException(f"{path}: directory {target.parent} does not exist")
    if st is not None and not os.access(target, os.W_OK):
        raise click.ClickException(f"{path}: permission denied")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write in {target.parent} "
                                   f"({exc.strerror or exc})") from None
    if st is None:
        os.fchmod(fd, 0o666 & ~_umask())
    else:
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        with contextlib.suppress(OSError):
            os.fchown(fd, st.st_uid, st.st_gid)
    out = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def finish(exc_type: type[BaseException] | None, *_: object) -> None:
        out.close()
        if exc_type is None:
            os.replace(tmp_name, target)
        else:
            Path(tmp_name).unlink(missing_ok=True)

    stack.push(finish)
    return out, fmt


def _device_target(path: Path) -> tuple[bool, int | None]:
    """Whether ``path``, or a symlink it leads through, lies in /dev or /proc, and the file
    descriptor it names when it is one of this process's (``/dev/stdout``, ``/dev/fd/3``,
    ``/proc/self/fd/1``)."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on symlink hops
        match = _FD_PATH.match(current)
        if match and match["pid"] in (None, "self", str(os.getpid())):
            return True, int(match["fd"])
        if current in _STD_STREAMS:
            return True, _STD_STREAMS[current]
        if current.startswith(_DEVICE_DIRS):
            return True, None
        if not os.path.islink(current):
            return False, None
        current = os.path.normpath(os.path.join(os.path.dirname(current),
                                                os.readlink(current)))
    return False, None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _stdout(stack: contextlib.ExitStack, fmt: str) -> TextIO:
    """stdout, re-wrapped as UTF-8 (machine formats) or with replacement characters
    (the table) when the locale's encoding could not write every review."""
    out = sys.stdout
    encoding = (getattr(out, "encoding", None) or "utf-8").lower().replace("-", "")
    if encoding == "utf8" or not hasattr(out, "buffer"):
        return out
    out.flush()
    wrapped = io.TextIOWrapper(out.buffer, encoding="utf-8" if fmt != "table" else out.encoding,
                               errors="strict" if fmt != "table" else "replace", newline="",
                               write_through=True)

    def release() -> None:
        with contextlib.suppress(ValueError, OSError):
            wrapped.flush()
            wrapped.detach()

    stack.callback(release)
    return wrapped


class _Progress:
    """Reviews classified so far on stderr: a bar when the total is known, else a count.

    ``update`` is called after every model batch, so it moves every few dozen reviews.
    """

    def __init__(self, stack: contextlib.ExitStack, total: int | None, *,
                 quiet_below: int = 0) -> None:
        self.done = 0
        self.quiet_below = quiet_below  # a count (no total) shows from this many reviews on
        self.tty = _isatty(sys.stderr)
        self.bar = None if not total else stack.enter_context(
            click.progressbar(length=total, label="Classifying", file=sys.stderr))

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.tty and self.done >= self.quiet_below:
            click.echo(f"\rClassified {self.done:,} reviews", err=True, nl=False)

    def finish(self) -> None:
        if self.bar is None and self.done >= self.quiet_below:
            start = "\r" if self.tty else ""
            click.echo(f"{start}Classified {self.done:,} reviews", err=True)


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
    """Decimal units, as the README and package indexes give sizes (14137667 → 14.1 MB)."""
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.2f} GB"


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
    body = [[str(name), *(_scalar(row.get(c)) for c in columns)] for name, row in rows.items()]
    return render_table(["", *columns], body, indent=indent)


if __name__ == "__main__":  # pragma: no cover
    main()
