"""Shrink a WordPiece model's vocabulary to the tokens a corpus uses.

The word-embedding table (vocab x hidden) is most of a small student's bytes: 30,522 x 384
floats are 47 MB of a 70 MB MiniLM-sized DistilBERT. Reviews use far fewer pieces.

What is kept: special and added tokens, every single-character piece and its ``##`` form
(so any word over the old alphabet still tokenizes, into smaller pieces, never into
``[UNK]``), and every piece seen at least ``min_count`` times in the corpus. With
``min_count=1`` the corpus tokenizes into exactly the same pieces as before: WordPiece's
greedy longest match only ever chose pieces that are kept, and every longer candidate it
rejected is still absent. The embedding rows are sliced in the same order, so the new
model's logits on the corpus are those of the old one.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_CHECK_TEXTS = 500


@dataclass(frozen=True)
class VocabShrinkResult:
    """Where the shrunk model lies and which old ids it kept (``kept_ids[new_id] == old_id``)."""

    path: Path
    old_vocab_size: int
    new_vocab_size: int
    kept_ids: list[int] = field(repr=False)
    corpus_texts: int = 0
    corpus_tokens: int = 0
    min_count: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Summary for provenance (no id list)."""
        return {
            "old_vocab_size": self.old_vocab_size,
            "new_vocab_size": self.new_vocab_size,
            "corpus_texts": self.corpus_texts,
            "corpus_tokens": self.corpus_tokens,
            "min_count": self.min_count,
        }


def shrink_vocabulary(
    model_dir: str | Path,
    corpus_texts: Iterable[str],
    out_dir: str | Path,
    *,
    min_count: int = 1,
) -> VocabShrinkResult:
    """Write to ``out_dir`` a copy of the model in ``model_dir`` whose tokenizer and word
    embeddings only hold the pieces ``corpus_texts`` needs (see the module docstring).

    >>> result = shrink_vocabulary("runs/student", texts, "runs/small")  # doctest: +SKIP
    >>> result.old_vocab_size, result.new_vocab_size  # doctest: +SKIP
    (30522, 14873)
    """
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.resolve() == model_dir.resolve():
        raise ValueError(f"{out_dir}: write the shrunk model to a new directory")
    texts = [str(text) for text in corpus_texts]
    old_tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    if not old_tokenizer.is_fast:
        raise ValueError(f"{model_dir}: no fast tokenizer (tokenizer.json) could be built")
    spec = json.loads(old_tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "WordPiece":
        raise ValueError(f"{model_dir}: tokenizer model is {spec['model']['type']}, not WordPiece")

    backend = Tokenizer.from_str(old_tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    old_size = backend.get_vocab_size(with_added_tokens=True)
    counts = _count_ids(backend, texts, old_size)
    kept = _kept_ids(spec, counts, min_count, old_tokenizer.all_special_ids)
    remap = {old: new for new, old in enumerate(kept)}
    logger.info("vocabulary %d -> %d pieces (%d texts, %d tokens, min_count=%d)",
                old_size, len(kept), len(texts), int(counts.sum()), min_count)

    out_dir.mkdir(parents=True, exist_ok=True)
    new_spec = _remap_tokenizer_spec(spec, remap)
    new_backend = Tokenizer.from_str(json.dumps(new_spec))
    with tempfile.TemporaryDirectory(prefix="edgesent-vocab-") as tmp:
        old_tokenizer.save_pretrained(tmp)
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (Path(tmp) / name).is_file():
                shutil.copyfile(Path(tmp) / name, out_dir / name)
    _remap_tokenizer_config(out_dir / "tokenizer_config.json", remap)
    new_backend.save(str(out_dir / "tokenizer.json"))
    vocab = new_spec["model"]["vocab"]
    (out_dir / "vocab.txt").write_text(
        "".join(f"{token}\n" for token in sorted(vocab, key=vocab.__getitem__)), encoding="utf-8"
    )
    _shrink_model(model_dir, out_dir, kept, remap)
    if min_count == 1:
        _check_same_pieces(old_tokenizer, out_dir, texts[:_CHECK_TEXTS])
    return VocabShrinkResult(
        path=out_dir,
        old_vocab_size=old_size,
        new_vocab_size=len(kept),
        kept_ids=kept,
        corpus_texts=len(texts),
        corpus_tokens=int(counts.sum()),
        min_count=min_count,
    )


def _count_ids(backend, texts: Sequence[str], size: int, batch: int = 1000) -> np.ndarray:
    from tqdm.auto import tqdm

    counts = np.zeros(size, dtype=np.int64)
    starts = range(0, len(texts), batch)
    for start in tqdm(starts, desc="counting pieces", unit="batch", disable=len(starts) < 5):
        encodings = backend.encode_batch(texts[start : start + batch], add_special_tokens=False)
        ids = [np.asarray(enc.ids, dtype=np.int64) for enc in encodings]
        if ids:
            counts += np.bincount(np.concatenate(ids), minlength=size)[:size]
    return counts


def _kept_ids(spec: dict, counts: np.ndarray, min_count: int,
              special_ids: Sequence[int]) -> list[int]:
    vocab: dict[str, int] = spec["model"]["vocab"]
    prefix = spec["model"].get("continuing_subword_prefix", "##")
    keep = set(special_ids) | {token["id"] for token in spec.get("added_tokens", [])}
    for token, token_id in vocab.items():
        bare = token[len(prefix):] if token.startswith(prefix) else token
        if len(bare) == 1:
            keep.add(token_id)
    keep.update(int(i) for i in np.flatnonzero(counts >= min_count))
    return sorted(keep)


def _remap_tokenizer_spec(spec: dict, remap: dict[int, int]) -> dict:
    spec = json.loads(json.dumps(spec))
    spec["model"]["vocab"] = {
        token: remap[old] for token, old in spec["model"]["vocab"].items() if old in remap
    }
    for token in spec.get("added_tokens", []):
        token["id"] = remap[token["id"]]
    if spec.get("padding") and "pad_id" in spec["padding"]:
        spec["padding"]["pad_id"] = remap[spec["padding"]["pad_id"]]
    if spec.get("post_processor"):
        spec["post_processor"] = _remap_processor(spec["post_processor"], remap)
    return spec


def _remap_processor(processor: dict, remap: dict[int, int]) -> dict:
    kind = processor.get("type")
    if kind == "Sequence":
        processor["processors"] = [_remap_processor(p, remap) for p in processor["processors"]]
    elif kind == "TemplateProcessing":
        for special in processor.get("special_tokens", {}).values():
            special["ids"] = [remap[i] for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            token, old = processor[key]
            processor[key] = [token, remap[old]]
    return processor


def _remap_tokenizer_config(path: Path, remap: dict[int, int]) -> None:
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    decoder = config.get("added_tokens_decoder")
    if decoder:
        config["added_tokens_decoder"] = {str(remap[int(k)]): v for k, v in decoder.items()}
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _shrink_model(model_dir: Path, out_dir: Path, kept: list[int], remap: dict[int, int]) -> None:
    import torch
    import transformers
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_dir)
    arch = (config.architectures or [None])[0]
    model_cls = getattr(transformers, arch, None) if arch else None
    model = (model_cls or AutoModel).from_pretrained(model_dir, use_safetensors=True).eval()
    old_embeddings = model.get_input_embeddings()
    old_rows = old_embeddings.weight.shape[0]
    index = torch.tensor(kept, dtype=torch.long)
    pad = config.pad_token_id
    new_pad = remap.get(pad) if pad is not None else None
    new_embeddings = torch.nn.Embedding(len(kept), old_embeddings.embedding_dim,
                                        padding_idx=new_pad)
    with torch.no_grad():
        new_embeddings.weight.copy_(old_embeddings.weight[index])
    handled = {id(new_embeddings.weight)}
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is old_embeddings.weight
    model.set_input_embeddings(new_embeddings)
    if output is not None:
        if tied:
            output.weight = new_embeddings.weight
        else:
            output.weight = torch.nn.Parameter(output.weight.detach()[index].clone())
        handled.add(id(output.weight))
        if getattr(output, "bias", None) is not None:
            output.bias = torch.nn.Parameter(output.bias.detach()[index].clone())
            handled.add(id(output.bias))
        output.out_features = len(kept)
    leftovers = [
        name for name, param in model.named_parameters()
        if param.shape and param.shape[0] == old_rows and id(param) not in handled
        and "position" not in name
    ]
    if leftovers:
        raise NotImplementedError(f"{model_dir}: vocabulary-sized weights not handled: {leftovers}")
    model.config.vocab_size = len(kept)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(model.config, key, None)
        if isinstance(value, int) and value < old_rows:
            setattr(model.config, key, remap.get(value))
    model.save_pretrained(out_dir, safe_serialization=True)


def _check_same_pieces(old_tokenizer, out_dir: Path, texts: Sequence[str]) -> None:
    from transformers import AutoTokenizer

    new_tokenizer = AutoTokenizer.from_pretrained(out_dir, use_fast=True)
    for index, text in enumerate(texts):
        before = old_tokenizer.tokenize(text)
        after = new_tokenizer.tokenize(text)
        if before != after:
            raise RuntimeError(
                f"corpus text {index} tokenizes differently after shrinking: {before} != {after}"
            )
