"""The build half's commands: ``edgesent train``, ``evaluate``, ``distill``, ``export``, ``build``.

This module imports only click and edgesent at import time; torch, transformers and
optimum are imported when a command runs, and a missing one says which extra to install.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgesent.errors import EdgesentError

from . import EXTRA_HINT

logger = logging.getLogger(__name__)


def _needs_export_extra(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a missing heavy dependency into a one-line hint, and errors into messages."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        try:
            return func(*args, **kwargs)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"torch", "transformers", "optimum"}:
                raise click.ClickException(f"{exc.name} is not installed; {EXTRA_HINT}") from None
            raise
        except EdgesentError as exc:
            raise click.ClickException(str(exc)) from None
        except (ValueError, OSError) as exc:
            raise _user_error(exc) from None

    return wrapper


def _user_error(exc: BaseException) -> click.ClickException:
    """Settings that torch or transformers refuse (fp16 on a CPU, --layers deeper than the
    teacher, a --model that is no directory) are user mistakes: one line, no traceback."""
    logger.debug("error details", exc_info=exc)
    return click.ClickException(" ".join(str(exc).split()) or type(exc).__name__)


def data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options that say where the reviews are and how to read them."""
    options = [
        click.option("--sources", type=click.Path(dir_okay=False), help="A sources JSON file "
                     "naming train, test and unlabelled files; replaces --train/--test."),
        click.option("--train", "train_files", multiple=True, metavar="FILE",
                     help="Labelled training reviews (CSV, TSV, JSONL[.gz], Parquet, or a hub "
                     "dataset name). Repeatable."),
        click.option("--test", "test_files", multiple=True, metavar="[NAME=]FILE",
                     help="Labelled test reviews, kept out of training. Repeatable."),
        click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
                     help="Directory that relative paths are read from [env: EDGESENT_DATA]."),
        click.option("--text-column", default="text", show_default=True),
        click.option("--label-column", default="label", show_default=True),
        click.option("--title-column", default=None, help="Joined before the text when set."),
        click.option("--domain-column", default=None, help="Reported per domain when set."),
        click.option("--stars", default=None, metavar="RULE",
                     help='Map star ratings to labels, e.g. "1-2:neg,3:neu,4-5:pos".'),
        click.option("--label-map", default=None, metavar="MAP",
                     help='Map raw labels, e.g. "0:negative,1:positive".'),
        click.option("--drop-label", "drop_labels", multiple=True,
                     help="Drop rows with this label (e.g. neutral). Repeatable."),
        click.option("--where", "where", multiple=True, metavar="COLUMN=VALUE",
                     help="Keep only rows whose column equals the value. Repeatable."),
        click.option("--val-fraction", default=0.05, show_default=True, type=float),
        click.option("--seed", default=13, show_default=True, type=int),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _sources_from_options(opts: dict[str, Any]) -> Any:
    from .data import ColumnSpec, parse_label_map, parse_star_rule
    from .sources import Source, Sources, data_dir, load_sources

    base = data_dir(opts["data_dir"])
    if opts["sources"]:
        return load_sources(opts["sources"], base)
    if not opts["train_files"]:
        raise click.UsageError("give --sources FILE or at least one --train FILE")
    where = {}
    for item in opts["where"]:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"--where {item!r}: expected COLUMN=VALUE")
        where[key] = value
    spec = ColumnSpec(
        text=opts["text_column"], label=opts["label_column"], title=opts["title_column"],
        domain=opts["domain_column"],
        stars=parse_star_rule(opts["stars"]) if opts["stars"] else None,
        label_map=parse_label_map(opts["label_map"]) if opts["label_map"] else None,
        drop_labels=tuple(opts["drop_labels"]), where=where,
    )

    def resolve(path: str) -> str:
        candidate = Path(path)
        if base is not None and not candidate.is_absolute() and not candidate.exists():
            return str(base / candidate)
        return path

    tests = {}
    for item in opts["test_files"]:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).name.split(".")[0], item
        tests[name] = Source(resolve(path), spec)
    return Sources([Source(resolve(p), spec) for p in opts["train_files"]], tests)


def _train_config(opts: dict[str, Any], prefix: str = "") -> Any:
    from .training import TrainConfig

    return TrainConfig(
        epochs=opts[f"{prefix}epochs"], batch_size=opts["batch_size"],
        learning_rate=opts[f"{prefix}lr"], eval_every=opts["eval_every"],
        patience=opts["patience"], seed=opts["seed"], precision=opts["precision"],
        threads=opts["threads"],
    )


def _encoding(opts: dict[str, Any]) -> Any:
    from edgesent.tokenization import EncodingSettings

    return EncodingSettings(opts["max_length"], opts["truncation"], opts["head_tokens"])


def training_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--batch-size", default=32, show_default=True, type=int),
        click.option("--max-length", default=256, show_default=True, type=int,
                     help="Tokens per review, special tokens included."),
        click.option("--truncation", default="head_tail", show_default=True,
                     type=click.Choice(["head_tail", "head", "tail"]),
                     help="How reviews longer than --max-length are cut."),
        click.option("--head-tokens", default=64, show_default=True, type=int,
                     help="With head_tail: tokens kept from the start; the rest from the end."),
        click.option("--eval-every", default=None, type=int,
                     help="Validate every N steps [default: once per epoch]."),
        click.option("--patience", default=2, show_default=True, type=int,
                     help="Stop after this many validations without a lower loss."),
        click.option("--precision", default="auto", show_default=True,
                     type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
                     help="auto: bf16 where the GPU/CPU supports it, else fp16 on GPU, fp32."),
        click.option("--threads", default=None, type=int, help="CPU threads for torch."),
        click.option("--resume", is_flag=True, help="Continue a killed run from its checkpoint."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--model", default="distilbert-base-uncased", show_default=True,
              help="Base encoder: a hub id or a local directory.")
@data_options
@training_options
@click.option("--epochs", default=3.0, show_default=True, type=float)
@click.option("--lr", default=5e-5, show_default=True, type=float, help="Peak learning rate.")
@click.option("--class-weights", type=click.Choice(["none", "auto"]), default="none",
              show_default=True, help="auto: weight the loss by inverse class frequency.")
@_needs_export_extra
def train(out_dir: str, model: str, class_weights: str, **opts: Any) -> None:
    """Fine-tune a teacher on labelled reviews (GPU when there is one, else CPU).

    \b
    Example:
      edgesent train runs/teacher --train reviews.csv --test test.csv \\
          --text-column review --label-column rating --stars "1-2:neg,4-5:pos"
    """
    from .finetune import finetune

    data = _sources_from_options(opts).format(val_fraction=opts["val_fraction"], seed=opts["seed"])
    result = finetune(
        model, data, out_dir, config=_train_config(opts), encoding=_encoding(opts),
        weighting=class_weights if class_weights != "none" else None,
        resume=opts["resume"], progress=not opts["quiet"],
    )
    _echo_result(result)


@click.command()
@click.argument("teacher", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@data_options
@training_options
@click.option("--unlabelled", "unlabelled_files", multiple=True, metavar="FILE",
              help="Unlabelled reviews to distil on (text column as --text-column).")
@click.option("--layers", default=None, type=int, help="Student layers [default: half].")
@click.option("--temperature", default=2.0, show_default=True, type=float)
@click.option("--alpha", default=0.5, show_default=True, type=float,
              help="Weight of the distillation loss against the hard-label loss.")
@click.option("--epochs", default=3.0, show_default=True, type=float)
@click.option("--lr", default=1e-4, show_default=True, type=float)
@_needs_export_extra
def distill(teacher: str, out_dir: str, unlabelled_files: tuple[str, ...], layers: int | None,
            temperature: float, alpha: float, **opts: Any) -> None:
    """Distil a fine-tuned TEACHER into a smaller DistilBERT student.

    \b
    Example:
      edgesent distill runs/teacher/best runs/student --train reviews.csv \\
          --unlabelled more_reviews.jsonl --layers 3
    """
    from .data import ColumnSpec
    from .distill import distill as run_distill
    from .sources import Source

    sources = _sources_from_options(opts)
    sources.unlabelled += [
        Source(p, ColumnSpec(text=opts["text_column"], label=None)) for p in unlabelled_files
    ]
    data = sources.format(val_fraction=opts["val_fraction"], seed=opts["seed"])
    result = run_distill(
        teacher, data, out_dir, unlabelled=sources.read_unlabelled(), n_layers=layers,
        config=_train_config(opts), encoding=_encoding(opts), temperature=temperature,
        alpha=alpha, resume=opts["resume"], progress=not opts["quiet"],
    )
    _echo_result(result)


def _echo_result(result: Any) -> None:
    if not result.val_metrics:
        click.echo(f"stopped before the end; resume with --resume ({result.out_dir})", err=True)
        return
    click.echo(f"best model: {result.model_dir}")
    click.echo(f"validation: accuracy {result.val_metrics['accuracy']:.4f}, "
               f"macro-F1 {result.val_metrics['macro_f1']:.4f}")
    for name, metrics in result.test_metrics.items():
        click.echo(f"test {name}: accuracy {metrics['accuracy']:.4f}, "
                   f"macro-F1 {metrics['macro_f1']:.4f} ({metrics['n']} reviews)")
    click.echo(f"wall time: {result.wall_seconds:.0f} s")


@click.command()
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.argument("file")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Directory a relative FILE is read from [env: EDGESENT_DATA].")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--title-column", default=None)
@click.option("--domain-column", default=None, help="Also report accuracy per domain.")
@click.option("--stars", default=None, metavar="RULE", help='e.g. "1-2:neg,3:neu,4-5:pos"')
@click.option("--label-map", default=None, metavar="MAP", help='e.g. "0:negative,1:positive"')
@click.option("--drop-label", "drop_labels", multiple=True)
@click.option("--where", multiple=True, metavar="COLUMN=VALUE")
@click.option("--batch-size", default=32, show_default=True, type=int)
@click.option("--threads", default=None, type=int)
@click.option("--max-length", default=256, show_default=True, type=int,
              help="For PyTorch checkpoints (bundles carry their own).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate(model: str, file: str, as_json: bool, **opts: Any) -> None:
    """Score MODEL (a bundle, or a fine-tuned PyTorch checkpoint) on a labelled FILE.

    Prints accuracy, macro-F1, per-class precision, recall and F1, and the confusion
    matrix. Bundles run through the run half and need no [export] extra.

    \b
    Example:
      edgesent evaluate runs/build/bundle test.jsonl --label-column stars \\
          --stars "1-2:neg,3:neu,4-5:pos" --drop-label neu
    """
    from .evaluate import evaluate_model, format_report

    try:
        sources = _sources_from_options({
            **opts, "sources": None, "train_files": (file,), "test_files": (),
            "val_fraction": 0.05, "seed": 0,
        })
        drops_source = sources.train[0]
        report = evaluate_model(model, drops_source, batch_size=opts["batch_size"],
                                threads=opts["threads"], max_length=opts["max_length"])
    except EdgesentError as exc:
        raise click.ClickException(str(exc)) from None
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"{exc.name} is not installed; {EXTRA_HINT}") from None
    except (ValueError, OSError) as exc:
        raise _user_error(exc) from None
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


def register_commands(group: click.Group) -> None:
    """Attach the build-half commands to the ``edgesent`` group (light imports only).

    train, evaluate and distill are attached first, so a broken export/build module does
    not take them down too.
    """
    for command in (train, evaluate, distill):
        group.add_command(command)
    from .build_cli import build, export

    for command in (export, build):
        group.add_command(command)

