"""The one runner: batch planning under a token budget, threads, session options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesent.errors import BundleError
from edgesent.runner import (
    Runner,
    available_cpus,
    plan_batches,
    positive_int,
    resolve_threads,
    session_options,
    text_chunks,
)
from edgesent.tokenization import EncodingSettings, TextEncoder


@given(st.lists(st.integers(1, 300), max_size=200), st.integers(1, 64), st.integers(1, 5000))
def test_plan_batches_covers_every_text_once_within_the_budget(
        lengths: list[int], batch_size: int, budget: int) -> None:
    batches = plan_batches(lengths, batch_size, budget)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(flat)  # length-sorted, so padding is small
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= budget


def test_thread_resolution() -> None:
    assert resolve_threads(None) == min(available_cpus(), 8)
    assert resolve_threads(np.int32(1)) == 1
    assert resolve_threads(10**6) == available_cpus()
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            resolve_threads(bad)
    assert positive_int(np.uint8(3), "x") == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), max_size=40), st.integers(1, 8), st.integers(1, 60))
def test_text_chunks_cover_every_text_once_within_limits(sizes: list[int], max_texts: int,
                                                         max_chars: int) -> None:
    texts = ["x" * n for n in sizes]
    chunks = text_chunks(texts, max_texts=max_texts, max_chars=max_chars)
    assert [i for start, stop in chunks for i in range(start, stop)] == list(range(len(texts)))
    for start, stop in chunks:
        assert 1 <= stop - start <= max_texts
        chars = sum(sizes[start:stop])
        assert chars <= max_chars or stop - start == 1  # only a lone long text goes over
    # Chunks are as full as the limits allow: the next text would not have fitted.
    for start, stop in chunks[:-1]:
        assert stop - start == max_texts or sum(sizes[start:stop + 1]) > max_chars


def test_session_options_keep_the_arena_unless_asked() -> None:
    arena, lean = session_options(1), session_options(1, memory_arena=False)
    assert arena.enable_cpu_mem_arena and not lean.enable_cpu_mem_arena
    # Batch shapes vary from call to call: no per-shape memory plan is kept.
    assert not arena.enable_mem_pattern and not lean.enable_mem_pattern
    for options in (arena, lean):
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(max_size=80), min_size=1, max_size=40), st.integers(1, 64),
       st.integers(1, 4096))
def test_logits_do_not_depend_on_batching(tiny_bundle: Path, texts: list[str], batch: int,
                                          budget: int) -> None:
    runner = Runner.from_bundle(tiny_bundle, threads=1)
    alone = np.vstack([runner.logits([t], batch_size=1) for t in texts])
    together = runner.logits(texts, batch_size=batch, token_budget=budget)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    blank = np.isnan(together).all(axis=1)
    assert (np.isnan(together).any(axis=1) == blank).all()  # whole rows or nothing


def test_from_onnx_names_a_bad_graph(tmp_path: Path, tokenizer_file: Path) -> None:
    from tokenizers import Tokenizer

    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    encoder = TextEncoder(tokenizer, EncodingSettings(32, head_tokens=8))
    with pytest.raises(BundleError, match=r"model\.onnx: not an ONNX model"):
        Runner.from_onnx(tmp_path / "model.onnx", encoder)
