"""The build half's commands: ``edgesent train``, ``evaluate``, ``distill``, ``export``,
``build``, ``record-teacher``.

``train``, ``distill`` and ``evaluate`` live here, ``export`` and ``build`` in
:mod:`edgesent_export.build_cli`; the options they share are in
:mod:`edgesent_export.cli_options`. Only click and edgesent are imported at import time;
torch, transformers and optimum when a command runs, and a missing one says which extra
to install.
"""

from __future__ import annotations

import json
from typing import Any

import click

from . import DEFAULT_BASE_MODEL
from .build_cli import build, export
from .cli_options import (
    POSITIVE_FLOAT,
    POSITIVE_INT,
    column_options,
    data_options,
    distill_options,
    distill_settings,
    echo_result,
    encoding_from,
    sources_from_options,
    train_config,
    training_options,
    user_errors,
)
from .distributed import is_main_process


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--model", default=DEFAULT_BASE_MODEL, show_default=True,
              help="Base encoder: a hub id or a local directory.")
@data_options
@training_options
@click.option("--epochs", default=3.0, show_default=True, type=POSITIVE_FLOAT)
@click.option("--lr", default=5e-5, show_default=True, type=POSITIVE_FLOAT,
              help="Peak learning rate.")
@click.option("--class-weights", type=click.Choice(["none", "auto"]), default="none",
              show_default=True, help="auto: weight the loss by inverse class frequency.")
@user_errors()
def train(out_dir: str, model: str, class_weights: str, **opts: Any) -> None:
    """Fine-tune a teacher on labelled reviews (GPU when there is one, else CPU).

    \b
    Example:
      edgesent train runs/teacher --train reviews.csv --test test.csv \\
          --text-column review --label-column rating --stars "1-2:neg,4-5:pos"
    """
    from .finetune import finetune

    data = sources_from_options(opts).format(val_fraction=opts["val_fraction"], seed=opts["seed"])
    result = finetune(
        model, data, out_dir, config=train_config(opts), encoding=encoding_from(opts),
        weighting=class_weights if class_weights != "none" else None,
        resume=opts["resume"], progress=not opts["quiet"],
    )
    if is_main_process():  # under torchrun, the other ranks end quietly
        echo_result(result)


@click.command()
@click.argument("teacher", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@data_options
@training_options
@click.option("--unlabelled", "unlabelled_files", multiple=True, metavar="FILE",
              help="Unlabelled reviews to distil on (text column as --text-column).")
@click.option("--layers", default=None, type=POSITIVE_INT,
              help="Student layers [default: half].")
@distill_options
@click.option("--epochs", default=3.0, show_default=True, type=POSITIVE_FLOAT)
@click.option("--lr", default=1e-4, show_default=True, type=POSITIVE_FLOAT)
@user_errors()
def distill(teacher: str, out_dir: str, layers: int | None, **opts: Any) -> None:
    """Distil a fine-tuned TEACHER into a smaller DistilBERT student.

    The student starts from --student-init (default: TEACHER); a wider TEACHER of another
    family (MPNet-base) gives only its soft labels, read through its own tokenizer.

    \b
    Example:
      edgesent distill runs/teacher/best runs/student --train reviews.csv \\
          --unlabelled more_reviews.jsonl --layers 3
      edgesent distill runs/mpnet/best runs/student --student-init runs/minilm/best \\
          --teacher-logits onnx-int8 --train reviews.csv --unlabelled more.jsonl
    """
    from .build_checks import check_distill
    from .distill import distill as run_distill

    settings = distill_settings(opts, layers)
    check_distill(teacher, settings, encoding_from(opts).max_length)
    sources = sources_from_options(opts)
    data = sources.format(val_fraction=opts["val_fraction"], seed=opts["seed"])
    result = run_distill(
        teacher, data, out_dir, student_init=settings.student_init,
        unlabelled=sources.read_unlabelled(), n_layers=layers, ffn=settings.ffn,
        config=train_config(opts),
        encoding=encoding_from(opts), temperature=settings.temperature, alpha=settings.alpha,
        logits_from=settings.teacher_logits, early_stop=settings.early_stop,
        teacher_max_length=settings.teacher_max_length,
        reuse_logits=settings.reuse_logits, resume=opts["resume"],
        progress=not opts["quiet"],
    )
    if is_main_process():  # under torchrun, the other ranks end quietly
        echo_result(result)


@click.command()
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.argument("file")
@column_options
@click.option("--batch-size", default=32, show_default=True, type=POSITIVE_INT)
@click.option("--threads", default=None, type=POSITIVE_INT)
@click.option("--max-length", default=None, type=click.IntRange(min=4),
              help="For PyTorch checkpoints: override the length training saved "
              "[default: the saved one, else 256]. Bundles carry their own.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@user_errors(log=False)
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

    sources = sources_from_options({**opts, "sources": None, "train_files": (file,),
                                    "test_files": ()})
    report = evaluate_model(model, sources.train[0], batch_size=opts["batch_size"],
                            threads=opts["threads"], max_length=opts["max_length"])
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@click.command("record-teacher")
@click.argument("teacher_run", type=click.Path(exists=True, file_okay=False))
@click.argument("logits", type=click.Path(exists=True, dir_okay=False))
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--made-with", metavar="TEXT",
              help="The command whose texts the logits cover, kept for whoever reuses them.")
@user_errors(log=False)
def record_teacher(teacher_run: str, logits: str, dest: str, made_with: str | None) -> None:
    """Keep what distillation needs of a teacher, without its weights.

    Writes DEST (a new directory): TEACHER_RUN's reports and config, and the teacher
    LOGITS a distillation cached (its teacher_logits.npy), about 1 MB where the teacher
    is hundreds. Distilling from DEST/best (--teacher) reads those logits; other texts or
    settings are refused, since there are no weights to compute new ones.

    \b
    Example:
      edgesent record-teacher runs/v2/teacher runs/v2/student/teacher_logits.npy \\
          teachers/mpnet-v2
      edgesent build runs/v2b --teacher teachers/mpnet-v2/best --sources sources.json
    """
    from .teacher_record import write_record

    best = write_record(teacher_run, logits, dest, made_with)
    click.echo(f"teacher record written: distil with --teacher {best}")


def register_commands(group: click.Group) -> None:
    """Attach the build-half commands to the ``edgesent`` group."""
    for command in (train, evaluate, distill, export, build, record_teacher):
        group.add_command(command)
