"""``edgesent export`` and ``edgesent build`` (light at import time, like ``cli.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from . import DEFAULT_BASE_MODEL
from . import cli_options as shared
from .build import STOP_AFTER


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@shared.data_options
@shared.training_options
@shared.quantization_options
@click.option("--model", "base_model", default=DEFAULT_BASE_MODEL, show_default=True,
              help="Base encoder of the teacher: a hub id or a local directory.")
@click.option("--teacher", "teacher_dir", type=click.Path(exists=True, file_okay=False),
              default=None, help="Skip fine-tuning: distil this fine-tuned teacher (any "
              "width; see --student-init).")
@click.option("--unlabelled", "unlabelled_files", multiple=True, metavar="FILE",
              help="Unlabelled reviews for distillation. Repeatable.")
@click.option("--epochs", default=3.0, show_default=True, type=shared.POSITIVE_FLOAT,
              help="Teacher epochs.")
@click.option("--lr", default=5e-5, show_default=True, type=shared.POSITIVE_FLOAT,
              help="Teacher learning rate.")
@click.option("--student-epochs", default=3.0, show_default=True, type=shared.POSITIVE_FLOAT)
@click.option("--student-lr", default=1e-4, show_default=True, type=shared.POSITIVE_FLOAT)
@click.option("--student-layers", default=None, type=shared.POSITIVE_INT,
              help="Student depth [default: half the teacher's].")
@shared.distill_options
@click.option("--class-weights", type=click.Choice(["none", "auto"]), default="none",
              show_default=True)
@click.option("--licence", "licences", multiple=True, metavar="FILE=LICENCE",
              help="Licence statement of a data file, recorded in the manifest.")
@click.option("--stop-after", type=click.Choice(STOP_AFTER), default=None,
              help="End after this stage: the teacher, or its logits cached too (keep "
              "them with edgesent record-teacher and distil another day).")
@shared.user_errors()
def build(out_dir: str, **opts: Any) -> None:
    """Build a bundle from reviews: fine-tune, distil, export, quantize, gate, package.

    Each stage writes into OUT_DIR and is skipped when rerun, so an interrupted build
    resumes where it stopped. Every input is checked before the first stage starts. Ends
    with a table of size, accuracy and latency. Under torchrun the ranks train together
    and rank 0 alone packages and prints.

    \b
    Examples:
      edgesent build runs/mine --train reviews.csv --test test.csv \\
          --unlabelled more.jsonl --student-layers 3 --vocab-min-count 2
      edgesent build runs/v2 --model runs/mpnet/all-mpnet-base-v2 \\
          --student-init runs/minilm/best --teacher-logits onnx-int8 --sources sources.json
      torchrun --standalone --nproc_per_node 2 -m edgesent_export build runs/mine \\
          --train reviews.csv --test test.csv --threads 1
    """
    from .build import BuildPlan, run_build
    from .distributed import is_main_process
    from .report import build_table

    plan = BuildPlan(
        sources=shared.sources_from_options(opts), out_dir=Path(out_dir),
        base_model=opts["base_model"],
        teacher_dir=Path(opts["teacher_dir"]) if opts["teacher_dir"] else None,
        teacher=shared.train_config(opts), class_weights=opts["class_weights"] == "auto",
        student=shared.train_config(opts, "student_"),
        distillation=shared.distill_settings(opts, opts["student_layers"]),
        encoding=shared.encoding_from(opts), val_fraction=opts["val_fraction"], seed=opts["seed"],
        vocab_min_count=opts["vocab_min_count"],
        bundle_max_lengths=tuple(opts["bundle_max_lengths"]), gate=shared.gate_config_from(opts),
        name=opts["name"], licences=shared.pairs(opts["licences"], "--licence", "FILE=LICENCE"),
        progress=not opts["quiet"], stop_after=opts["stop_after"],
    )
    summary = run_build(plan)
    if not is_main_process():  # under torchrun, the other ranks end quietly
        return
    if summary.get("stopped_after"):
        click.echo(f"stopped after the {summary['stopped_after']} stage "
                   f"({summary['wall_seconds']:.0f} s): teacher {summary['teacher']}"
                   + (f", logits {summary['teacher_logits']}" if summary["teacher_logits"]
                      else ""))
    else:
        click.echo(build_table(summary, threads=opts["threads"] or 1))
        click.echo(f"bundle: {summary['bundle']}")


@click.command(name="export")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@shared.data_options
@shared.quantization_options
@shared.encoding_options
@click.option("--json", "as_json", is_flag=True, help="Print the gate's metrics as JSON.")
@shared.user_errors()
def export(model_dir: str, bundle_dir: str, as_json: bool, **opts: Any) -> None:
    """Export a fine-tuned MODEL_DIR to ONNX, quantize it, gate it and write a bundle.

    The test data (--test or --sources) feeds the accuracy gate; validation rows split
    from the training data fit the calibration temperature.

    \b
    Example:
      edgesent export runs/student/best bundles/mine --train train.csv --test test.csv
    """
    from .gate import LabelledSet
    from .package import PackageInputs, package_model
    from .provenance import model_provenance, redacted_command

    sources = shared.sources_from_options(opts)
    if not sources.test:
        raise click.UsageError("the accuracy gate needs a test set: give --test FILE")
    data = sources.format(val_fraction=opts["val_fraction"], seed=opts["seed"])
    names = list(data.test)

    def labelled(rows: Any) -> LabelledSet:
        return LabelledSet([r.text for r in rows], [r.label for r in rows],
                           [r.domain for r in rows])

    source_model = Path(model_dir)
    if opts["vocab_min_count"]:
        from .vocab import shrink_vocabulary

        small = Path(bundle_dir).with_name(Path(bundle_dir).name + "-model")
        corpus = [r.text for r in data.train] + [r.text for r in data.val]
        shrink_vocabulary(source_model, corpus, small, min_count=opts["vocab_min_count"])
        source_model = small
    inputs = PackageInputs(
        source_model, data.labels, shared.encoding_from(opts), test=labelled(data.test[names[0]]),
        val=labelled(data.val),
        extra_test_sets={name: labelled(data.test[name]) for name in names[1:]},
        provenance={"model": model_provenance(model_dir)["base_model"],
                    "command": redacted_command()},
        name=opts["name"], max_lengths=tuple(opts["bundle_max_lengths"]),
    )
    result = package_model(inputs, bundle_dir, shared.gate_config_from(opts))
    click.echo(json.dumps(result.metrics, indent=2) if as_json else f"bundle: {bundle_dir}")
