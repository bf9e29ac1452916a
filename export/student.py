"""Build a DistilBERT student from a fine-tuned encoder, as the DistilBERT paper did.

The encoder is the teacher itself, or (``--student-init``) a same-width encoder of its
own when the teacher is wider or of another family (an MPNet-base teacher, a MiniLM-L6
initialisation): the teacher then only gives soft labels.

Embeddings are copied, and a subset of the teacher's transformer layers (every other one
when the student keeps half) initialises the student's layers. BERT-family teachers
(BERT, MiniLM) carry a token-type embedding that DistilBERT lacks; every review is one
segment, so its row 0 is added to the position embeddings, which is exact. The run half
therefore always serves one graph: ``input_ids``, ``attention_mask`` → ``logits``.

``ffn`` prunes every layer's feed-forward block to that many hidden units, keeping those
whose input and output weights carry the most (the product of their L2 norms), as
magnitude pruning of structured units does; distillation then retrains what is left.

>>> student = make_student("runs/teacher/best", n_layers=3)  # doctest: +SKIP
>>> student.config.n_layers  # doctest: +SKIP
3
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# BERT layer parameter → DistilBERT layer parameter.
_BERT_LAYER_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}
SUPPORTED_TEACHERS = ("distilbert", "bert")


def choose_layers(n_teacher: int, n_student: int) -> list[int]:
    """Which teacher layers initialise the student: evenly spread, every other for half.

    >>> choose_layers(6, 3)
    [0, 2, 4]
    >>> choose_layers(6, 4)
    [0, 2, 3, 5]
    """
    if not 1 <= n_student <= n_teacher:
        raise ValueError(f"the student needs 1..{n_teacher} layers, got {n_student}")
    if n_teacher % n_student == 0:
        return list(range(0, n_teacher, n_teacher // n_student))
    if n_student == 1:
        return [0]
    step = (n_teacher - 1) / (n_student - 1)
    return [round(i * step) for i in range(n_student)]


def student_config(teacher_config: Any, n_layers: int) -> Any:
    """A ``DistilBertConfig`` with the teacher's width, heads, vocabulary and labels."""
    from transformers import DistilBertConfig

    kind = teacher_config.model_type
    if kind == "distilbert":
        config = DistilBertConfig.from_dict(teacher_config.to_dict())
        config.n_layers = n_layers
        return config
    if kind != "bert":
        raise ValueError(
            f"a {kind!r} model cannot initialise the DistilBERT student; initialise it from "
            f"one of {SUPPORTED_TEACHERS} (--student-init DIR; the teacher may still be "
            f"any model)"
        )
    if teacher_config.position_embedding_type != "absolute":
        raise ValueError("the teacher must use absolute position embeddings")
    return DistilBertConfig(
        vocab_size=teacher_config.vocab_size,
        max_position_embeddings=teacher_config.max_position_embeddings,
        sinusoidal_pos_embds=False,
        n_layers=n_layers,
        n_heads=teacher_config.num_attention_heads,
        dim=teacher_config.hidden_size,
        hidden_dim=teacher_config.intermediate_size,
        dropout=teacher_config.hidden_dropout_prob,
        attention_dropout=teacher_config.attention_probs_dropout_prob,
        activation=teacher_config.hidden_act,
        seq_classif_dropout=teacher_config.hidden_dropout_prob,
        pad_token_id=teacher_config.pad_token_id,
        num_labels=teacher_config.num_labels,
        id2label=teacher_config.id2label,
        label2id=teacher_config.label2id,
    )


def make_student(
    teacher: str | Path | Any, n_layers: int | None = None, layers: Sequence[int] | None = None,
    ffn: int | None = None,
) -> Any:
    """A ``DistilBertForSequenceClassification`` initialised from ``teacher``.

    ``teacher`` is a fine-tuned model or its directory. ``n_layers`` defaults to half the
    teacher's depth; ``layers`` picks the teacher layers explicitly; ``ffn`` (at most the
    teacher's) prunes each feed-forward block to that many units (:func:`prune_ffn`).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, DistilBertForSequenceClassification

    if isinstance(teacher, (str, Path)):
        teacher = AutoModelForSequenceClassification.from_pretrained(str(teacher))
    config = teacher.config
    n_teacher = config.n_layers if config.model_type == "distilbert" else config.num_hidden_layers
    if layers is None:
        layers = choose_layers(n_teacher, n_layers or max(1, n_teacher // 2))
    student_cfg = student_config(config, len(layers))
    source = teacher.state_dict()
    if config.model_type == "distilbert":
        weights = _from_distilbert(source, layers)
    else:
        weights = _from_bert(source, layers)
    if ffn is not None and ffn != student_cfg.hidden_dim:
        weights = prune_ffn(weights, len(layers), ffn)
        student_cfg.hidden_dim = ffn
    student = DistilBertForSequenceClassification(student_cfg)
    missing, unexpected = student.load_state_dict(weights, strict=False)
    if unexpected:
        raise RuntimeError(f"unexpected student weights: {unexpected}")
    if missing:
        logger.info("student weights left at their initialisation: %s", missing)
    with torch.no_grad():
        student.eval()
    logger.info(
        "student: %d of %d teacher layers (%s), FFN %d, %.1fM parameters",
        len(layers), n_teacher, list(layers), student_cfg.hidden_dim,
        student.num_parameters() / 1e6,
    )
    return student


def prune_ffn(weights: dict[str, Any], n_layers: int, units: int) -> dict[str, Any]:
    """DistilBERT student ``weights`` with each layer's feed-forward block cut to its
    ``units`` strongest hidden units (by ‖lin1 row‖·‖lin2 column‖), in their order.

    >>> import torch
    >>> w = {"distilbert.transformer.layer.0.ffn.lin1.weight": torch.tensor([[1.0], [9.0], [3.0]]),
    ...      "distilbert.transformer.layer.0.ffn.lin1.bias": torch.tensor([0.1, 0.2, 0.3]),
    ...      "distilbert.transformer.layer.0.ffn.lin2.weight": torch.tensor([[1.0, 1.0, 1.0]])}
    >>> prune_ffn(w, 1, 2)["distilbert.transformer.layer.0.ffn.lin1.bias"]
    tensor([0.2000, 0.3000])
    """
    import torch

    pruned = dict(weights)
    for layer in range(n_layers):
        name = f"distilbert.transformer.layer.{layer}.ffn."
        lin1, lin2 = weights[name + "lin1.weight"], weights[name + "lin2.weight"]
        if not 1 <= units <= lin1.shape[0]:
            raise ValueError(f"the feed-forward block has {lin1.shape[0]} units; "
                             f"keep 1..{lin1.shape[0]}, not {units}")
        strength = lin1.norm(dim=1) * lin2.norm(dim=0)
        keep = torch.sort(torch.topk(strength, units).indices).values
        pruned[name + "lin1.weight"] = lin1[keep].clone()
        pruned[name + "lin1.bias"] = weights[name + "lin1.bias"][keep].clone()
        pruned[name + "lin2.weight"] = lin2[:, keep].clone()
    return pruned


def _from_distilbert(source: dict[str, Any], layers: Sequence[int]) -> dict[str, Any]:
    weights = {}
    for name, tensor in source.items():
        if name.startswith("distilbert.transformer.layer."):
            index, rest = name[len("distilbert.transformer.layer.") :].split(".", 1)
            if int(index) in layers:
                new = layers.index(int(index))
                weights[f"distilbert.transformer.layer.{new}.{rest}"] = tensor.clone()
        else:
            weights[name] = tensor.clone()
    return weights


def _from_bert(source: dict[str, Any], layers: Sequence[int]) -> dict[str, Any]:
    prefix = "bert." if any(k.startswith("bert.") for k in source) else ""
    emb = f"{prefix}embeddings."
    position = source[emb + "position_embeddings.weight"].clone()
    if emb + "token_type_embeddings.weight" in source:
        position += source[emb + "token_type_embeddings.weight"][0]
    weights = {
        "distilbert.embeddings.word_embeddings.weight": source[emb + "word_embeddings.weight"],
        "distilbert.embeddings.position_embeddings.weight": position,
        "distilbert.embeddings.LayerNorm.weight": source[emb + "LayerNorm.weight"],
        "distilbert.embeddings.LayerNorm.bias": source[emb + "LayerNorm.bias"],
    }
    for new, old in enumerate(layers):
        for bert_name, distil_name in _BERT_LAYER_MAP.items():
            for kind in ("weight", "bias"):
                key = f"{prefix}encoder.layer.{old}.{bert_name}.{kind}"
                weights[f"distilbert.transformer.layer.{new}.{distil_name}.{kind}"] = source[key]
    # BERT's head is tanh(pooler) → classifier; DistilBERT's is relu(pre_classifier) →
    # classifier. Copying the weights gives a close start; distillation adapts the rest.
    for bert_name, distil_name in (
        (f"{prefix}pooler.dense", "pre_classifier"),
        ("classifier", "classifier"),
    ):
        for kind in ("weight", "bias"):
            if f"{bert_name}.{kind}" in source:
                weights[f"{distil_name}.{kind}"] = source[f"{bert_name}.{kind}"]
    return {k: v.clone() for k, v in weights.items()}
