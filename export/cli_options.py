"""What the build half's commands share: option groups, the objects built from them,
and the one place errors become one-line messages.

Light at import time (click and edgesent only), like the commands that use it.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from edgesent.errors import EdgesentError

from . import EXTRA_HINT

logger = logging.getLogger(__name__)

HEAVY_MODULES = {"torch", "transformers", "optimum"}
POSITIVE_INT = click.IntRange(min=1)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
TRUNCATIONS = click.Choice(["head_tail", "head", "tail"])
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def user_errors(*, log: bool = True) -> Decorator:
    """Map a missing heavy dependency to an install hint and every user mistake
    (edgesent errors, and the ValueError/OSError torch or transformers raise for fp16 on
    a CPU, --layers deeper than the teacher, a --model that is no directory) to one line,
    no traceback. With ``log``, INFO logging goes to standard error."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if log:
                logging.basicConfig(
                    level=logging.INFO, stream=sys.stderr,
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                )
            try:
                return func(*args, **kwargs)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.split(".")[0] in HEAVY_MODULES:
                    raise click.ClickException(f"{exc.name} is not installed; {EXTRA_HINT}") \
                        from None
                raise
            except EdgesentError as exc:
                raise click.ClickException(str(exc)) from None
            except (ValueError, OSError) as exc:
                logger.debug("error details", exc_info=exc)
                raise click.ClickException(" ".join(str(exc).split()) or type(exc).__name__) \
                    from None

        return wrapper

    return decorate


def _apply(options: list[Decorator], func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(options):
        func = option(func)
    return func


def column_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Where a labelled file's text and label are, and how labels are mapped."""
    return _apply([
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
    ], func)


def data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options that say where the reviews are and how to read them."""
    return _apply([
        click.option("--sources", type=click.Path(dir_okay=False), help="A sources JSON file "
                     "naming train, test and unlabelled files; replaces --train/--test."),
        click.option("--train", "train_files", multiple=True, metavar="FILE",
                     help="Labelled training reviews (CSV, TSV, JSONL[.gz], Parquet, or a hub "
                     "dataset name). Repeatable."),
        click.option("--test", "test_files", multiple=True, metavar="[NAME=]FILE",
                     help="Labelled test reviews, kept out of training. Repeatable."),
        column_options,
        click.option("--val-fraction", default=0.05, show_default=True,
                     type=click.FloatRange(0, 1, min_open=True, max_open=True)),
        click.option("--seed", default=13, show_default=True, type=click.IntRange(min=0)),
    ], func)


def encoding_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """How reviews are cut to the model's length."""
    return _apply([
        click.option("--max-length", default=256, show_default=True,
                     type=click.IntRange(min=4), help="Tokens per review, special tokens "
                     "included."),
        click.option("--truncation", default="head_tail", show_default=True, type=TRUNCATIONS,
                     help="How reviews longer than --max-length are cut."),
        click.option("--head-tokens", default=64, show_default=True, type=click.IntRange(min=0),
                     help="With head_tail: tokens kept from the start; the rest from the end."),
    ], func)


def training_options(func: Callable[..., Any]) -> Callable[..., Any]:
    return _apply([
        click.option("--batch-size", default=32, show_default=True, type=POSITIVE_INT),
        encoding_options,
        click.option("--eval-every", default=None, type=POSITIVE_INT,
                     help="Validate every N steps [default: once per epoch]."),
        click.option("--patience", default=2, show_default=True, type=POSITIVE_INT,
                     help="Stop after this many validations without a lower loss."),
        click.option("--precision", default="auto", show_default=True,
                     type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
                     help="auto: bf16 where the GPU/CPU supports it, else fp16 on GPU, fp32."),
        click.option("--threads", default=None, type=POSITIVE_INT, help="CPU threads for torch."),
        click.option("--resume", is_flag=True, help="Continue a killed run from its checkpoint."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ], func)


def distill_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The distillation loss, the student's initialisation and where the teacher's logits
    come from (the student's depth is named per command)."""
    from .distill import EARLY_STOP, TEACHER_LOGITS, DistillSettings

    return _apply([
        click.option("--temperature", default=DistillSettings.temperature, show_default=True,
                     type=POSITIVE_FLOAT, help="Distillation temperature."),
        click.option("--alpha", default=DistillSettings.alpha, show_default=True,
                     type=click.FloatRange(0, 1),
                     help="Weight of the distillation loss against the hard-label loss."),
        click.option("--student-init", type=click.Path(file_okay=False), default=None,
                     metavar="DIR", help="Encoder the student's layers are cut from (every "
                     "other layer), of the student's width: e.g. a fine-tuned MiniLM-L6 "
                     "under a wider MPNet teacher [default: the teacher]."),
        click.option("--teacher-logits", default=DistillSettings.teacher_logits,
                     show_default=True, type=click.Choice(TEACHER_LOGITS),
                     help="Compute the teacher's soft labels with PyTorch, or with its int8 "
                     "ONNX export through ONNX Runtime (faster on a CPU, close to fp32)."),
        click.option("--student-ffn", type=POSITIVE_INT, default=None, metavar="UNITS",
                     help="Prune each student layer's feed-forward block to this many units "
                     "(the strongest by weight norm) [default: the initialisation's, 1536 "
                     "for MiniLM-L6]."),
        click.option("--early-stop", default=DistillSettings.early_stop, show_default=True,
                     type=click.Choice(EARLY_STOP),
                     help="What the student's validation watches for the best weights and "
                     "--patience: hard-label loss, KL to the teacher, or agreement with it."),
        click.option("--teacher-max-length", type=click.IntRange(min=4), default=None,
                     metavar="N", help="Tokens the teacher reads per review, when fewer than "
                     "the student's --max-length (e.g. a teacher record's logits at 128 under "
                     "a student reading 256) [default: --max-length]."),
        click.option("--reuse-logits", type=click.Path(file_okay=False), default=None,
                     metavar="RECORD", help="A record of this teacher at a shorter "
                     "--max-length (its best/ folder): its logits serve the texts that length "
                     "did not cut, and the teacher reads only the others."),
    ], func)


def distill_settings(opts: Mapping[str, Any], layers: int | None) -> Any:
    """The :class:`~edgesent_export.distill.DistillSettings` of the distillation options."""
    from .distill import DistillSettings

    init, reuse = opts["student_init"], opts["reuse_logits"]
    return DistillSettings(layers, opts["temperature"], opts["alpha"],
                           Path(init) if init else None, opts["teacher_logits"],
                           opts["early_stop"], opts["student_ffn"], opts["teacher_max_length"],
                           Path(reuse) if reuse else None)


def quantization_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Quantization, the accuracy gate and what the bundle is called."""
    from .gate import GateConfig
    from .quantize import MODES, TARGETS, QuantizationSettings

    return _apply([
        click.option("--target", default=QuantizationSettings.target, show_default=True,
                     type=click.Choice(TARGETS),
                     help="Instruction set the int8 kernels are chosen for."),
        click.option("--mode", "quantization_mode", default=QuantizationSettings.mode,
                     show_default=True, type=click.Choice(MODES),
                     help="per_token: one activation scale per token, so answers do not depend on "
                          "the batch; dynamic: one per tensor (batch-dependent); static: QDQ "
                          "graph calibrated on a sample of the training data."),
        click.option("--max-drop", default=GateConfig.max_drop, show_default=True,
                     type=click.FloatRange(-100, 100),
                     help="Largest accuracy loss (points) int8 may show against fp32."),
        click.option("--vocab-min-count", default=None, type=POSITIVE_INT,
                     help="Shrink the vocabulary to tokens seen this often in the training "
                     "and unlabelled text (smaller bundle; identical outputs on that text)."),
        click.option("--bundle-max-length", "bundle_max_lengths", multiple=True,
                     type=click.IntRange(min=4), metavar="N",
                     help="A reading length the bundle may ship with instead of --max-length; "
                     "the one most accurate on validation wins. Repeatable."),
        click.option("--name", default=None, help="Bundle name [default: the folder name]."),
    ], func)


def sources_from_options(opts: Mapping[str, Any]) -> Any:
    """The :class:`~edgesent_export.sources.Sources` that ``--sources`` or ``--train`` /
    ``--test`` name, read with the column options; ``--unlabelled`` files are added."""
    from .data import ColumnSpec, parse_label_map, parse_star_rule
    from .sources import Source, Sources, data_dir, load_sources

    base = data_dir(opts["data_dir"])
    if opts["sources"]:
        sources = load_sources(opts["sources"], base)
    elif not opts["train_files"]:
        raise click.UsageError("give --sources FILE or at least one --train FILE")
    else:
        spec = ColumnSpec(
            text=opts["text_column"], label=opts["label_column"], title=opts["title_column"],
            domain=opts["domain_column"],
            stars=parse_star_rule(opts["stars"]) if opts["stars"] else None,
            label_map=parse_label_map(opts["label_map"]) if opts["label_map"] else None,
            drop_labels=tuple(opts["drop_labels"]),
            where=pairs(opts["where"], "--where", "COLUMN=VALUE"),
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
        sources = Sources([Source(resolve(p), spec) for p in opts["train_files"]], tests)
    sources.unlabelled += [Source(p, ColumnSpec(text=opts["text_column"], label=None))
                           for p in opts.get("unlabelled_files", ())]
    return sources


def pairs(items: tuple[str, ...], option: str, form: str) -> dict[str, str]:
    """``KEY=VALUE`` option values as a dict; a value without ``=`` is a usage error."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"{option} {item!r}: expected {form}")
        out[key] = value
    return out


def train_config(opts: Mapping[str, Any], prefix: str = "") -> Any:
    from .training import TrainConfig

    return TrainConfig(
        epochs=opts[f"{prefix}epochs"], batch_size=opts["batch_size"],
        learning_rate=opts[f"{prefix}lr"], eval_every=opts["eval_every"],
        patience=opts["patience"], seed=opts["seed"], precision=opts["precision"],
        threads=opts["threads"],
    )


def encoding_from(opts: Mapping[str, Any]) -> Any:
    from edgesent.tokenization import EncodingSettings

    return EncodingSettings(opts["max_length"], opts["truncation"], opts["head_tokens"])


def gate_config_from(opts: Mapping[str, Any]) -> Any:
    """The :class:`~edgesent_export.gate.GateConfig` of ``--target``/``--mode``/``--max-drop``."""
    from .gate import GateConfig
    from .quantize import QuantizationSettings

    settings = QuantizationSettings(target=opts["target"], mode=opts["quantization_mode"])
    return GateConfig(settings, max_drop=opts["max_drop"],
                      progress=not opts.get("quiet", False))


def echo_result(result: Any) -> None:
    """What a training run reached, or how to resume it."""
    if not result.finished:
        click.echo(f"stopped before the end; resume with --resume ({result.out_dir})", err=True)
        return
    click.echo(f"best model: {result.model_dir}")
    click.echo(f"validation: accuracy {result.val_metrics['accuracy']:.4f}, "
               f"macro-F1 {result.val_metrics['macro_f1']:.4f}")
    for name, metrics in result.test_metrics.items():
        click.echo(f"test {name}: accuracy {metrics['accuracy']:.4f}, "
                   f"macro-F1 {metrics['macro_f1']:.4f} ({metrics['n']} reviews)")
    click.echo(f"wall time: {result.wall_seconds:.0f} s")
