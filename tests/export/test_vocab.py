"""Vocabulary shrinking keeps the model's behaviour on its corpus exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from extras import EXPORT_REASON

torch = pytest.importorskip("torch", reason=EXPORT_REASON)
transformers = pytest.importorskip("transformers", reason=EXPORT_REASON)

from edgesent_export.vocab import shrink_vocabulary  # noqa: E402

CORPUS_SIZE = 120


def _logits(model_dir, texts):
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.numpy(), batch["input_ids"].numpy()


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory, trained_tiny_distilbert_dir, review_factory):
    corpus = review_factory(CORPUS_SIZE, seed=7).texts
    out = tmp_path_factory.mktemp("shrunk")
    return shrink_vocabulary(trained_tiny_distilbert_dir, corpus, out), corpus


def test_shrink_gives_identical_logits_on_corpus(shrunk, trained_tiny_distilbert_dir):
    result, corpus = shrunk
    assert result.new_vocab_size < result.old_vocab_size
    before, old_ids = _logits(trained_tiny_distilbert_dir, corpus)
    after, new_ids = _logits(result.path, corpus)
    # Same pieces, renumbered consistently.
    kept = np.asarray(result.kept_ids)
    np.testing.assert_array_equal(kept[new_ids], old_ids)
    np.testing.assert_array_equal(after, before)


def test_shrunk_directory_is_complete_and_consistent(shrunk):
    result, _ = shrunk
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json",
                 "special_tokens_map.json", "config.json", "model.safetensors"):
        assert (result.path / name).is_file(), name
    assert not list(result.path.glob("*.bin"))
    config = json.loads((result.path / "config.json").read_text())
    assert config["vocab_size"] == result.new_vocab_size
    lines = (result.path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == result.new_vocab_size
    tokenizer = transformers.AutoTokenizer.from_pretrained(result.path)
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == lines[:5]
    for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
        assert tokenizer.convert_tokens_to_ids(token) == lines.index(token)
    assert config["pad_token_id"] == lines.index("[PAD]")


def test_unseen_words_split_into_pieces_not_unk(shrunk, trained_tiny_distilbert_dir):
    result, corpus = shrunk
    old = transformers.AutoTokenizer.from_pretrained(trained_tiny_distilbert_dir)
    new = transformers.AutoTokenizer.from_pretrained(result.path)
    unseen = "Zigzagging quixotic jukeboxes vexed"
    assert not any(word in " ".join(corpus).lower() for word in ("zigzag", "quixotic", "jukebox"))
    pieces = new.tokenize(unseen)
    assert "[UNK]" not in pieces
    assert new.convert_tokens_to_string(pieces) == unseen.lower()
    # Some piece the old vocabulary used was dropped, so the split differs but is finer.
    assert len(pieces) >= len(old.tokenize(unseen))


def test_min_count_prunes_more(tmp_path, trained_tiny_distilbert_dir, review_factory, shrunk):
    result, corpus = shrunk
    pruned = shrink_vocabulary(trained_tiny_distilbert_dir, corpus, tmp_path, min_count=50)
    assert pruned.new_vocab_size < result.new_vocab_size
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert "[UNK]" not in tokenizer.tokenize(" ".join(corpus[:20]))


def test_rejects_bad_arguments(tmp_path, trained_tiny_distilbert_dir):
    with pytest.raises(ValueError, match="min_count"):
        shrink_vocabulary(trained_tiny_distilbert_dir, ["a"], tmp_path, min_count=0)
    with pytest.raises(ValueError, match="new directory"):
        shrink_vocabulary(trained_tiny_distilbert_dir, ["a"], trained_tiny_distilbert_dir)


def test_tied_output_embeddings_are_sliced_too(tmp_path, tiny_tokenizer_dir, review_factory):
    config = transformers.DistilBertConfig(vocab_size=len(
        (tiny_tokenizer_dir / "vocab.txt").read_text("utf-8").split()), dim=32, n_heads=2,
        n_layers=1, hidden_dim=64, max_position_embeddings=128, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.DistilBertForMaskedLM(config).eval()
    source = tmp_path / "mlm"
    model.save_pretrained(source, safe_serialization=True)
    for item in tiny_tokenizer_dir.iterdir():
        (source / item.name).write_bytes(item.read_bytes())
    corpus = review_factory(30, seed=9).texts
    result = shrink_vocabulary(source, corpus, tmp_path / "small")
    small = transformers.DistilBertForMaskedLM.from_pretrained(result.path).eval()
    assert small.get_output_embeddings().weight is small.get_input_embeddings().weight
    old_tok = transformers.AutoTokenizer.from_pretrained(source)
    new_tok = transformers.AutoTokenizer.from_pretrained(result.path)
    old_batch = old_tok(corpus, padding=True, return_tensors="pt")
    new_batch = new_tok(corpus, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**old_batch).logits[..., result.kept_ids]
        after = small(**new_batch).logits
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
