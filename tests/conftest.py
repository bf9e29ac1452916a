"""Run-half fixtures: a real tiny tokenizer, a real tiny ONNX classifier, real bundles.

Tests reach helpers through fixtures, never ``from conftest import ...``: that name
would clash with tests/export/conftest.py.

The graph embeds ``input_ids`` (Gather), mean-pools the embeddings over
``attention_mask`` and applies a linear head. Sentiment words get strong weights, so the
model gives sensible, text-dependent answers, and masked mean pooling makes dynamic
padding exact: a text's logits do not depend on what it was batched with.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from edgesent.bundle import MANIFEST_NAME, sha256_file, write_bundle
from edgesent.tokenization import EncodingSettings

POSITIVE = ("great", "love", "excellent", "perfect", "amazing", "happy", "recommend")
NEGATIVE = ("awful", "terrible", "broke", "refund", "disappointed", "waste", "poor")
NEUTRAL = ("the", "product", "battery", "screen", "arrived", "box", "it", "was", "and",
           "this", "phone", "charger", "after", "week", "day", "price", "quality", "works",
           "a", "of", "my", "okay", "color", "size", "cable", "shipping", "is")
LABELS2 = ("negative", "positive")
LABELS3 = ("negative", "neutral", "positive")
TINY_ENCODING = EncodingSettings(max_length=32, truncation="head_tail", head_tokens=8)


def synthetic_sentences(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = POSITIVE + NEGATIVE + NEUTRAL
    sentences = []
    for _ in range(n):
        body = [rng.choice(words) for _ in range(rng.randint(3, 18))]
        sentences.append(" ".join(body).capitalize() + rng.choice([".", "!", "?", ""]))
    return sentences


def train_tokenizer(path: Path) -> Path:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer.train_from_iterator(synthetic_sentences(), trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tokenizer.save(str(path))
    return path


def build_graph(tokenizer_path: Path, n_logits: int = 2, *, static_width: bool = True,
                dim: int = 8, seed: int = 0, opset: int = 18,
                max_positions: int | None = None) -> onnx.ModelProto:
    """Gather embedding → masked mean pooling → MatMul + Add → logits (batch, n_logits).

    ``max_positions`` adds a position-embedding table of that many rows, so longer
    inputs fail the way a real transformer's do."""
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    rng = np.random.default_rng(seed)
    emb = rng.normal(0.0, 0.5, (vocab, dim)).astype(np.float32)
    emb[:, :2] *= 0.2
    for word in POSITIVE:
        emb[tokenizer.token_to_id(word), 0] += 4.0
    for word in NEGATIVE:
        emb[tokenizer.token_to_id(word), 1] += 4.0
    weight = rng.normal(0.0, 0.3, (dim, n_logits)).astype(np.float32)
    bias = np.zeros(n_logits, dtype=np.float32)
    weight[1, 0] += 3.0  # negative evidence → first logit
    weight[0, n_logits - 1] += 3.0  # positive evidence → last logit
    if n_logits == 3:
        bias[1] = 0.5
    inits = [
        numpy_helper.from_array(emb, "embedding"),
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis_last"),
        numpy_helper.from_array(np.array(1e-9, dtype=np.float32), "eps"),
    ]
    nodes = [helper.make_node("Gather", ["embedding", "input_ids"],
                              ["tokens" if max_positions is None else "words"])]
    if max_positions is not None:
        inits += [numpy_helper.from_array(np.zeros((max_positions, dim), np.float32), "pos"),
                  numpy_helper.from_array(np.array(0, dtype=np.int64), "pos_start"),
                  numpy_helper.from_array(np.array(1, dtype=np.int64), "pos_step")]
        nodes += [
            helper.make_node("Shape", ["input_ids"], ["pos_shape"]),
            helper.make_node("Gather", ["pos_shape", "pos_step"], ["pos_len"]),
            helper.make_node("Range", ["pos_start", "pos_len", "pos_step"], ["pos_ids"]),
            helper.make_node("Gather", ["pos", "pos_ids"], ["pos_emb"]),
            helper.make_node("Add", ["words", "pos_emb"], ["tokens"]),
        ]
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis_last"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
        helper.make_node("Max", ["count", "eps"], ["count_safe"]),
        helper.make_node("Div", ["summed", "count_safe"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "weight"], ["projected"]),
        helper.make_node("Add", ["projected", "bias"], ["logits" if static_width else "raw"]),
    ]
    if not static_width:  # reshape to (batch, -1): ONNX Runtime cannot infer the width
        inits += [numpy_helper.from_array(np.array([v], dtype=np.int64), name)
                  for name, v in (("zero", 0), ("one", 1), ("minus_one", -1))]
        nodes += [
            helper.make_node("Shape", ["input_ids"], ["ids_shape"]),
            helper.make_node("Slice", ["ids_shape", "zero", "one"], ["batch_dim"]),
            helper.make_node("Concat", ["batch_dim", "minus_one"], ["target"], axis=0),
            helper.make_node("Reshape", ["raw", "target"], ["logits"]),
        ]
    width = n_logits if static_width else "n_labels"
    graph = helper.make_graph(
        nodes, "tiny_sentiment",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", width])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="edgesent-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("assets")
    train_tokenizer(root / "tokenizer.json")
    return root


@pytest.fixture(scope="session")
def tokenizer_file(assets: Path) -> Path:
    return assets / "tokenizer.json"


BundleFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def make_bundle(tmp_path_factory: pytest.TempPathFactory, tokenizer_file: Path) -> BundleFactory:
    """Build a bundle: ``make_bundle(labels=LABELS3, encoding=..., static_width=False)``."""
    counter = iter(range(10**6))

    def factory(*, labels: Sequence[str] = LABELS2, n_logits: int | None = None,
                static_width: bool = True, encoding: EncodingSettings = TINY_ENCODING,
                temperature: float = 1.0, seed: int = 0, max_positions: int | None = None,
                **kwargs: object) -> Path:
        root = tmp_path_factory.mktemp("bundles")
        model_path = root / f"model-{next(counter)}.onnx"
        graph = build_graph(tokenizer_file, n_logits or len(labels),
                            static_width=static_width, seed=seed, max_positions=max_positions)
        onnx.save(graph, str(model_path))
        write_bundle(root / "bundle", model_file=model_path, tokenizer_file=tokenizer_file,
                     labels=list(labels), encoding=encoding, temperature=temperature,
                     name="tiny-test", **kwargs)
        return root / "bundle"

    return factory


@pytest.fixture(scope="session")
def tiny_bundle(make_bundle: BundleFactory) -> Path:
    """A valid two-label bundle; do not modify it (copy it with ``bundle_copy``)."""
    return make_bundle(provenance={"base_model": "tiny-random", "data": {"train": 400}},
                       metrics={"test": {"accuracy": 0.91, "macro_f1": 0.9}})


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of ``tiny_bundle`` that a test may damage."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.fixture(scope="session")
def tiny_classifier(tiny_bundle: Path):
    from edgesent.classifier import Classifier

    return Classifier.load(tiny_bundle, threads=1)


def _replace_file(bundle_dir: Path, name: str, data: bytes, *, fix_checksum: bool) -> None:
    """Overwrite a bundle file; with ``fix_checksum`` also update the manifest to match."""
    (bundle_dir / name).write_bytes(data)
    if fix_checksum:
        manifest_path = bundle_dir / MANIFEST_NAME
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["files"][name] = {"sha256": sha256_file(bundle_dir / name), "size": len(data)}
        manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def _edit_manifest(bundle_dir: Path, edit: Callable[[dict], object]) -> None:
    manifest_path = bundle_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    edit(manifest)
    manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")


@pytest.fixture(scope="session")
def replace_file() -> Callable[..., None]:
    """``replace_file(bundle_dir, name, data, fix_checksum=...)``."""
    return _replace_file


@pytest.fixture(scope="session")
def edit_manifest() -> Callable[[Path, Callable[[dict], object]], None]:
    """``edit_manifest(bundle_dir, lambda manifest: ...)`` edits edgesent.json in place."""
    return _edit_manifest


@pytest.fixture(scope="session")
def make_graph(tokenizer_file: Path) -> Callable[..., onnx.ModelProto]:
    """``make_graph(n_logits=2, static_width=True)``: the tiny classifier graph."""

    def factory(n_logits: int = 2, **kwargs: object) -> onnx.ModelProto:
        return build_graph(tokenizer_file, n_logits, **kwargs)

    return factory
