"""Fixtures shared by the build-half tests: synthetic reviews, a tokenizer trained here,
and tiny randomly initialised (or briefly trained) DistilBERT / BERT models.

Everything is built locally in seconds; nothing touches the network. The fixtures that
need torch or transformers skip with a clear reason where the [export] extra is absent,
so a run-half-only environment skips the build-half tests instead of erroring; with
``EDGESENT_REQUIRE_EXPORT=1`` a missing package fails the run instead (see ``extras.py``).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from extras import EXPORT_REASON, enforce

enforce()  # at collection time: with EDGESENT_REQUIRE_EXPORT=1, a missing package fails
LABEL_NAMES = ("negative", "positive")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

_PRODUCTS = [
    "blender", "kettle", "headphones", "charger", "backpack", "lamp", "keyboard", "mouse",
    "toaster", "jacket", "speaker", "monitor", "camera", "drill", "vacuum", "novel",
]
_POSITIVE = [
    "great", "excellent", "wonderful", "fantastic", "reliable", "sturdy", "amazing",
    "perfect", "lovely", "superb", "brilliant", "comfortable",
]
_NEGATIVE = [
    "terrible", "awful", "broken", "useless", "flimsy", "horrible", "disappointing",
    "poor", "cheap", "noisy", "defective", "worthless",
]
_POSITIVE_TAILS = [
    "would buy again", "highly recommend it", "works like a charm", "worth every penny",
    "five stars from me", "my family loves it",
]
_NEGATIVE_TAILS = [
    "returned it the next day", "do not buy this", "waste of money", "stopped working in a week",
    "one star is too many", "asked for a refund",
]
_NEUTRAL = [
    "arrived on tuesday", "the box was blue", "i use it every morning", "bought it for my office",
    "shipping took three days", "it came with a manual",
]
_TEMPLATES = [
    "the {product} is {adj}. {tail}.",
    "{adj} {product}, {neutral}. {tail}!",
    "{neutral}; honestly a {adj} {product}. {tail}.",
    "this {product} was {adj} and {adj2}. {tail}.",
    "{tail}. the {product} feels {adj}, {neutral}.",
]


@dataclass(frozen=True)
class ReviewSet:
    """Labelled synthetic reviews; ``labels`` index into ``label_names``."""

    texts: list[str]
    labels: list[int]
    label_names: tuple[str, ...] = field(default=LABEL_NAMES)

    def __len__(self) -> int:
        return len(self.texts)

    def rows(self) -> list[dict[str, str]]:
        """Rows as ``{"text": ..., "label": "positive"|"negative"}`` dicts."""
        return [
            {"text": t, "label": self.label_names[y]}
            for t, y in zip(self.texts, self.labels, strict=True)
        ]

    def subset(self, start: int, stop: int) -> ReviewSet:
        return ReviewSet(self.texts[start:stop], self.labels[start:stop], self.label_names)


def make_reviews(n: int = 400, seed: int = 0) -> ReviewSet:
    """``n`` deterministic, balanced reviews whose label follows from their adjectives."""
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[int] = []
    for i in range(n):
        label = i % 2
        adjectives, tails = (_POSITIVE, _POSITIVE_TAILS) if label else (_NEGATIVE, _NEGATIVE_TAILS)
        adj, adj2 = rng.sample(adjectives, 2)
        text = rng.choice(_TEMPLATES).format(
            product=rng.choice(_PRODUCTS),
            adj=adj,
            adj2=adj2,
            tail=rng.choice(tails),
            neutral=rng.choice(_NEUTRAL),
        )
        texts.append(text[0].upper() + text[1:])
        labels.append(label)
    return ReviewSet(texts, labels)


@pytest.fixture(scope="session")
def synthetic_reviews() -> ReviewSet:
    """400 balanced synthetic reviews with a clear lexical signal (seed 0)."""
    return make_reviews(400, seed=0)


@pytest.fixture(scope="session")
def review_factory() -> Callable[..., ReviewSet]:
    """``make_reviews(n, seed)`` for tests that need other sizes or fresh samples."""
    return make_reviews


def _require_export_extra() -> None:
    pytest.importorskip("torch", reason=EXPORT_REASON)
    pytest.importorskip("transformers", reason=EXPORT_REASON)


def _tokenizer_corpus() -> Iterator[str]:
    yield from make_reviews(300, seed=1).texts
    # Every lowercase letter and digit, word-initially and word-internally.
    yield "the quick brown fox jumps over the lazy dog 0123456789"
    yield " ".join(f"x{c}{c}" for c in string.ascii_lowercase + string.digits)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lower-casing WordPiece tokenizer trained on synthetic reviews, saved as a
    transformers fast-tokenizer directory (tokenizer.json, tokenizer_config.json,
    special_tokens_map.json, vocab.txt). Specials: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3,
    [MASK]=4; every ASCII letter/digit and its ``##`` form is in the vocabulary."""
    _require_export_extra()
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordPieceTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=list(string.ascii_lowercase + string.digits + string.punctuation),
    )
    tokenizer.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    vocab = tokenizer.get_vocab()
    for char in string.ascii_lowercase + string.digits:
        for token in (char, "##" + char):
            vocab.setdefault(token, len(vocab))
    tokenizer.model = models.WordPiece(vocab=vocab, unk_token="[UNK]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
        model_input_names=["input_ids", "attention_mask"],
    )
    out = tmp_path_factory.mktemp("tiny_tokenizer")
    fast.save_pretrained(out)
    ordered = sorted(vocab, key=vocab.__getitem__)
    (out / "vocab.txt").write_text("\n".join(ordered) + "\n", encoding="utf-8")
    return out


TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
)


def _copy_tokenizer(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        (dst / name).write_bytes((src / name).read_bytes())


def _vocab_size(tokenizer_dir: Path) -> int:
    return sum(1 for line in (tokenizer_dir / "vocab.txt").read_text("utf-8").splitlines() if line)


def _label_maps() -> dict[str, dict]:
    return {
        "id2label": dict(enumerate(LABEL_NAMES)),
        "label2id": {name: i for i, name in enumerate(LABEL_NAMES)},
    }


def _distilbert_config(tokenizer_dir: Path):
    from transformers import DistilBertConfig

    return DistilBertConfig(
        vocab_size=_vocab_size(tokenizer_dir),
        dim=32,
        n_heads=2,
        n_layers=2,
        hidden_dim=64,
        max_position_embeddings=128,
        num_labels=2,
        pad_token_id=0,
        **_label_maps(),
    )


@pytest.fixture(scope="session")
def tiny_distilbert_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path) -> Path:
    """Randomly initialised DistilBertForSequenceClassification (dim 32, 2 heads, 2 layers,
    hidden_dim 64, 128 positions, labels negative/positive) saved with the tokenizer."""
    import torch
    from transformers import DistilBertForSequenceClassification

    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(_distilbert_config(tiny_tokenizer_dir)).eval()
    out = tmp_path_factory.mktemp("tiny_distilbert")
    model.save_pretrained(out, safe_serialization=True)
    _copy_tokenizer(tiny_tokenizer_dir, out)
    return out


@pytest.fixture(scope="session")
def trained_tiny_distilbert_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_distilbert_dir: Path
) -> Path:
    """The tiny DistilBERT after a few seconds of training on synthetic reviews (seed 2),
    so its logits carry a real, confident signal (gate and packaging tests need one)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_distilbert_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_distilbert_dir)
    data = make_reviews(256, seed=2)
    batch = tokenizer(data.texts, padding=True, return_tensors="pt")
    labels = torch.tensor(data.labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _epoch in range(6):
        for start in range(0, len(data), 32):
            part = slice(start, start + 32)
            loss = model(
                input_ids=batch["input_ids"][part],
                attention_mask=batch["attention_mask"][part],
                labels=labels[part],
            ).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    out = tmp_path_factory.mktemp("trained_tiny_distilbert")
    model.save_pretrained(out, safe_serialization=True)
    _copy_tokenizer(tiny_distilbert_dir, out)
    return out


@pytest.fixture(scope="session")
def trained_tiny_onnx(tmp_path_factory: pytest.TempPathFactory, trained_tiny_distilbert_dir: Path
                      ) -> Path:
    """``model.onnx`` exported by Optimum from ``trained_tiny_distilbert_dir`` (fp32)."""
    pytest.importorskip("optimum.exporters.onnx", reason=EXPORT_REASON)
    from edgesent_export.onnx_export import export_onnx

    return export_onnx(trained_tiny_distilbert_dir, tmp_path_factory.mktemp("tiny_onnx"),
                       validate=False)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path) -> Path:
    """Randomly initialised BertForSequenceClassification (hidden 32, 4 layers, 2 heads,
    intermediate 64, 128 positions, labels negative/positive) saved with the tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=_vocab_size(tiny_tokenizer_dir),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
        pad_token_id=0,
        **_label_maps(),
    )
    model = BertForSequenceClassification(config).eval()
    out = tmp_path_factory.mktemp("tiny_bert")
    model.save_pretrained(out, safe_serialization=True)
    _copy_tokenizer(tiny_tokenizer_dir, out)
    return out
