"""``edgesent export`` and ``edgesent build`` (light at import time, like ``cli.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .cli import (
    _encoding,
    _needs_export_extra,
    _sources_from_options,
    _train_config,
    data_options,
    training_options,
)


def quantization_options(func: Any) -> Any:
    options = [
        click.option("--target", default="avx512_vnni", show_default=True,
                     type=click.Choice(["avx512_vnni", "avx2", "arm64"]),
                     help="Instruction set the int8 kernels are chosen for."),
        click.option("--mode", "quantization_mode", default="dynamic", show_default=True,
                     type=click.Choice(["dynamic", "static"]),
                     help="static: QDQ graph calibrated on a sample of the training data."),
        click.option("--max-drop", default=1.0, show_default=True, type=float,
                     help="Largest accuracy loss (points) int8 may show against fp32."),
        click.option("--vocab-min-count", default=None, type=int,
                     help="Shrink the vocabulary to tokens seen this often in the training "
                     "and unlabelled text (smaller bundle; identical outputs on that text)."),
        click.option("--name", default=None, help="Bundle name [default: the folder name]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@data_options
@training_options
@quantization_options
@click.option("--model", "base_model", default="distilbert-base-uncased", show_default=True,
              help="Base encoder of the teacher: a hub id or a local directory.")
@click.option("--teacher", "teacher_dir", type=click.Path(exists=True, file_okay=False),
              default=None, help="Skip fine-tuning: distil this fine-tuned teacher.")
@click.option("--unlabelled", "unlabelled_files", multiple=True, metavar="FILE",
              help="Unlabelled reviews for distillation. Repeatable.")
@click.option("--epochs", default=3.0, show_default=True, type=float, help="Teacher epochs.")
@click.option("--lr", default=5e-5, show_default=True, type=float, help="Teacher learning rate.")
@click.option("--student-epochs", default=3.0, show_default=True, type=float)
@click.option("--student-lr", default=1e-4, show_default=True, type=float)
@click.option("--student-layers", default=None, type=int,
              help="Student depth [default: half the teacher's].")
@click.option("--temperature", default=2.0, show_default=True, type=float,
              help="Distillation temperature.")
@click.option("--alpha", default=0.5, show_default=True, type=float,
              help="Weight of the distillation loss against the hard-label loss.")
@click.option("--class-weights", type=click.Choice(["none", "auto"]), default="none",
              show_default=True)
@click.option("--licence", "licences", multiple=True, metavar="FILE=LICENCE",
              help="Licence statement of a data file, recorded in the manifest.")
@_needs_export_extra
def build(out_dir: str, **opts: Any) -> None:
    """Build a bundle from reviews: fine-tune, distil, export, quantize, gate, package.

    Each stage writes into OUT_DIR and is skipped when rerun, so an interrupted build
    resumes where it stopped. Ends with a table of size, accuracy and latency.

    \b
    Example:
      edgesent build runs/mine --train reviews.csv --test test.csv \\
          --unlabelled more.jsonl --student-layers 3 --vocab-min-count 2
    """
    from .build import BuildPlan, run_build
    from .data import ColumnSpec
    from .report import build_table
    from .sources import Source

    sources = _sources_from_options(opts)
    sources.unlabelled += [
        Source(p, ColumnSpec(text=opts["text_column"], label=None))
        for p in opts["unlabelled_files"]
    ]

    plan = BuildPlan(
        sources=sources, out_dir=Path(out_dir), base_model=opts["base_model"],
        teacher_dir=Path(opts["teacher_dir"]) if opts["teacher_dir"] else None,
        teacher=_train_config(opts), student=_train_config(opts, "student_"),
        student_layers=opts["student_layers"],
        distill_temperature=opts["temperature"], distill_alpha=opts["alpha"],
        encoding=_encoding(opts), class_weights=opts["class_weights"] == "auto",
        vocab_min_count=opts["vocab_min_count"], target=opts["target"],
        quantization_mode=opts["quantization_mode"], max_drop=opts["max_drop"],
        val_fraction=opts["val_fraction"], seed=opts["seed"], name=opts["name"],
        licences=dict(item.partition("=")[::2] for item in opts["licences"]),
        progress=not opts["quiet"],
    )
    summary = run_build(plan)
    click.echo(build_table(summary, threads=opts["threads"] or 1))
    click.echo(f"bundle: {summary['bundle']}")


@click.command(name="export")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@data_options
@quantization_options
@click.option("--max-length", default=256, show_default=True, type=int)
@click.option("--truncation", default="head_tail", show_default=True,
              type=click.Choice(["head_tail", "head", "tail"]))
@click.option("--head-tokens", default=64, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the gate's metrics as JSON.")
@_needs_export_extra
def export(model_dir: str, bundle_dir: str, as_json: bool, **opts: Any) -> None:
    """Export a fine-tuned MODEL_DIR to ONNX, quantize it, gate it and write a bundle.

    The test data (--test or --sources) feeds the accuracy gate; validation rows split
    from the training data fit the calibration temperature.

    \b
    Example:
      edgesent export runs/student/best bundles/mine --train train.csv --test test.csv
    """
    from .package import package_model

    data = _sources_from_options(opts).format(val_fraction=opts["val_fraction"], seed=opts["seed"])
    if not data.test:
        raise click.UsageError("the accuracy gate needs a test set: give --test FILE")
    names = list(data.test)

    def split(rows: Any) -> tuple[list[str], list[int]]:
        return [r.text for r in rows], [data.labels.index(r.label) for r in rows]

    test_texts, test_labels = split(data.test[names[0]])
    val_texts, val_labels = split(data.val)
    source_model = Path(model_dir)
    if opts["vocab_min_count"]:
        from .vocab import shrink_vocabulary

        small = Path(bundle_dir).with_name(Path(bundle_dir).name + "-model")
        corpus = [r.text for r in data.train] + val_texts
        shrink_vocabulary(source_model, corpus, small, min_count=opts["vocab_min_count"])
        source_model = small
    result = package_model(
        source_model, bundle_dir, labels=data.labels, encoding=_encoding(opts),
        test_texts=test_texts, test_labels=test_labels, val_texts=val_texts,
        val_labels=val_labels, target=opts["target"], mode=opts["quantization_mode"],
        max_drop=opts["max_drop"],
        extra_test_sets={name: split(data.test[name]) for name in names[1:]},
        provenance={"model": str(model_dir)}, name=opts["name"],
    )
    click.echo(json.dumps(result.metrics, indent=2) if as_json else f"bundle: {bundle_dir}")
