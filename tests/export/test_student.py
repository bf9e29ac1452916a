"""Building a DistilBERT student from a teacher (export/student.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from extras import EXPORT_REASON
from helpers_training import load_model

pytest.importorskip("torch", reason=EXPORT_REASON)
pytest.importorskip("transformers", reason=EXPORT_REASON)

import torch

from edgesent_export.student import choose_layers, make_student

TEXTS = [
    "The kettle is great. Would buy again!",
    "Terrible blender, returned it the next day.",
    "ok",
    "Zesty quixotic headphones; 12345 stars from me, worth every penny.",
]


def _batch(model_dir: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert int(encoded["attention_mask"].sum()) < encoded["attention_mask"].numel()  # padded
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


@pytest.mark.parametrize(
    ("n_teacher", "n_student", "layers"),
    [(6, 3, [0, 2, 4]), (6, 4, [0, 2, 3, 5]), (6, 6, [0, 1, 2, 3, 4, 5]), (4, 2, [0, 2]),
     (5, 2, [0, 4]), (12, 6, [0, 2, 4, 6, 8, 10]), (6, 1, [0]), (7, 3, [0, 3, 6])],
)
def test_choose_layers(n_teacher: int, n_student: int, layers: list[int]) -> None:
    assert choose_layers(n_teacher, n_student) == layers


@pytest.mark.parametrize("n_student", [0, 7])
def test_choose_layers_out_of_range(n_student: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.6 layers"):
        choose_layers(6, n_student)


def test_student_with_every_distilbert_layer_gives_identical_logits(
    tiny_distilbert_dir: Path,
) -> None:
    teacher = load_model(tiny_distilbert_dir).eval()
    student = make_student(teacher, layers=[0, 1]).eval()
    batch = _batch(tiny_distilbert_dir)
    with torch.no_grad():
        expected = teacher(**batch).logits
        got = student(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert student.config.n_layers == 2
    assert student.config.id2label == teacher.config.id2label


def test_student_from_a_directory_keeps_half_the_layers(tiny_distilbert_dir: Path) -> None:
    teacher = load_model(tiny_distilbert_dir)
    student = make_student(str(tiny_distilbert_dir))
    assert student.config.n_layers == 1
    torch.testing.assert_close(
        student.distilbert.transformer.layer[0].ffn.lin1.weight,
        teacher.distilbert.transformer.layer[0].ffn.lin1.weight,
    )
    torch.testing.assert_close(student.classifier.weight, teacher.classifier.weight)


def test_student_of_a_bert_teacher_folds_token_types_exactly(tiny_bert_dir: Path) -> None:
    teacher = load_model(tiny_bert_dir).eval()
    assert teacher.config.model_type == "bert"
    student = make_student(teacher, n_layers=4).eval()
    batch = _batch(tiny_bert_dir)
    with torch.no_grad():
        expected = teacher.bert(
            **batch, token_type_ids=torch.zeros_like(batch["input_ids"])
        ).last_hidden_state
        got = student.distilbert(**batch).last_hidden_state
        teacher_logits = teacher(**batch).logits
        student_logits = student(**batch).logits
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(got[mask], expected[mask], atol=1e-5, rtol=0)
    # The heads differ by design: tanh(pooler) in BERT, ReLU(pre_classifier) in DistilBERT.
    assert not torch.allclose(student_logits, teacher_logits, atol=1e-3)
    torch.testing.assert_close(student.pre_classifier.weight, teacher.bert.pooler.dense.weight)
    torch.testing.assert_close(student.classifier.bias, teacher.classifier.bias)
    assert "token_type" not in " ".join(student.state_dict())


def test_student_of_a_bert_teacher_takes_every_other_layer(tiny_bert_dir: Path) -> None:
    teacher = load_model(tiny_bert_dir)
    student = make_student(teacher)
    assert student.config.n_layers == 2
    for new, old in enumerate([0, 2]):
        torch.testing.assert_close(
            student.distilbert.transformer.layer[new].attention.q_lin.weight,
            teacher.bert.encoder.layer[old].attention.self.query.weight,
        )
        torch.testing.assert_close(
            student.distilbert.transformer.layer[new].output_layer_norm.bias,
            teacher.bert.encoder.layer[old].output.LayerNorm.bias,
        )


def _tiny(kind: str, **extra: Any) -> Any:
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    sizes = {"vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 40}
    if kind == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(**sizes, **extra))
    return BertForSequenceClassification(BertConfig(**sizes, **extra))


def test_unsupported_teachers() -> None:
    with pytest.raises(ValueError, match="a 'roberta' model cannot initialise the DistilBERT"):
        make_student(_tiny("roberta"))
    with pytest.raises(ValueError, match="absolute position embeddings"):
        make_student(_tiny("bert", position_embedding_type="relative_key"))


def test_pruning_silent_ffn_units_keeps_the_logits(tiny_distilbert_dir: Path) -> None:
    """Units whose weights are zero add nothing: pruning exactly them is exact, and the
    strongest units are the ones kept."""
    teacher = load_model(tiny_distilbert_dir).eval()
    units = teacher.config.hidden_dim
    silent = torch.arange(units) % 2 == 1  # every other unit contributes nothing
    with torch.no_grad():
        for layer in teacher.distilbert.transformer.layer:
            layer.ffn.lin1.weight[silent] = 0.0
            layer.ffn.lin1.bias[silent] = 0.0
            layer.ffn.lin2.weight[:, silent] = 0.0
    student = make_student(teacher, layers=[0, 1], ffn=units // 2).eval()
    assert student.config.hidden_dim == units // 2
    assert student.distilbert.transformer.layer[0].ffn.lin1.weight.shape[0] == units // 2
    kept = teacher.distilbert.transformer.layer[1].ffn.lin2.weight[:, ~silent]
    torch.testing.assert_close(student.distilbert.transformer.layer[1].ffn.lin2.weight, kept)
    batch = _batch(tiny_distilbert_dir)
    with torch.no_grad():
        torch.testing.assert_close(student(**batch).logits, teacher(**batch).logits,
                                   atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="keep 1"):
        make_student(teacher, layers=[0], ffn=units + 1)


def test_a_pruned_bert_student_has_the_pruned_width(tiny_bert_dir: Path) -> None:
    student = make_student(tiny_bert_dir, n_layers=1, ffn=8)
    assert student.config.hidden_dim == 8
    assert student.distilbert.transformer.layer[0].ffn.lin2.weight.shape[1] == 8
    assert student(**_batch(tiny_bert_dir)).logits.shape == (len(TEXTS), 2)
