"""``edgesent card --teacher-run`` on a real fine-tuning run: what training_run.py records
(architecture, parameter count, wall time, per-domain accuracy) reaches the teacher table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from extras import EXPORT_REASON
from helpers_training import TINY_ENCODING, tiny_config, to_reviews

pytest.importorskip("torch", reason=EXPORT_REASON)
pytest.importorskip("transformers", reason=EXPORT_REASON)

from edgesent.card import safetensors_parameters
from edgesent.cli import main
from edgesent_export.data import Review, format_dataset
from edgesent_export.finetune import finetune
from edgesent_export.training_run import RESULT_FILE


def test_a_fine_tuning_run_becomes_a_teacher_row(
        tiny_distilbert_dir: Path, tiny_bundle: Path, review_factory: Any, tmp_path: Path
) -> None:
    from transformers import AutoModelForSequenceClassification

    test_reviews = [Review(r.text, r.label, "synthetic", ("books", "dvd", "MR")[i % 3])
                    for i, r in enumerate(to_reviews(review_factory(30, seed=6)))]
    data = format_dataset([to_reviews(review_factory(80, seed=5))], {"heldout": test_reviews},
                          val_fraction=0.2, seed=0, labels=["negative", "positive"])
    out = tmp_path / "teacher"
    finetune(tiny_distilbert_dir, data, out, config=tiny_config(epochs=1, batch_size=16),
             encoding=TINY_ENCODING, progress=False)
    record = json.loads((out / RESULT_FILE).read_text("utf-8"))
    model = AutoModelForSequenceClassification.from_pretrained(out / "best")
    assert record["architecture"] == {
        "model_type": "distilbert", "num_hidden_layers": model.config.n_layers,
        "hidden_size": model.config.dim, "vocab_size": model.config.vocab_size,
        "parameters": sum(p.numel() for p in model.parameters())}
    # what the card reads for runs recorded before the count was: the same number
    assert safetensors_parameters(out / "best" / "model.safetensors") == (
        record["architecture"]["parameters"])

    result = CliRunner().invoke(main, ["card", str(tiny_bundle), "--teacher-run", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| teacher |"))
    row = next(line for line in lines if line.startswith(f"| `{out}`"))
    cells = dict(zip(*([c.strip() for c in line.strip("|").split("|")] for line in (header, row)),
                     strict=True))
    heldout = record["test"]["heldout"]
    domains = heldout["per_domain"]
    product = sum(domains[d]["accuracy"] * domains[d]["n"] for d in ("books", "dvd")) / sum(
        domains[d]["n"] for d in ("books", "dvd"))
    assert cells["architecture"] == "distilbert"
    assert cells["layers × hidden"] == f"{model.config.n_layers} × {model.config.dim}"
    assert cells["parameters"] == f"{record['architecture']['parameters']:,}"  # under 1M
    assert cells["`heldout`"] == f"{heldout['accuracy']:.4f}"
    assert cells["product domains"] == f"{product:.4f}"
    assert cells["run wall time"] == f"{record['wall_seconds']:,.0f} s"
