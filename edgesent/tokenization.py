"""Turn review texts into padded ``input_ids`` / ``attention_mask`` arrays.

One definition of encoding, used by the run half at inference and by the build half at
training time, so a model always sees text cut the way it was trained on.

A lone surrogate (``"\\ud83d"``, half of an emoji from a broken JSON or UTF-16 source)
cannot be tokenized; it is replaced by U+FFFD, the Unicode replacement character, and the
rest of the text is read as usual.

Long reviews are cut *head plus tail*: the first ``head_tokens`` content tokens and the
last ``max_length - specials - head_tokens`` content tokens are kept. Reviews often end
with the verdict ("... would not buy again"), which end-truncation throws away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

TRUNCATION_STRATEGIES = ("head_tail", "head", "tail")

# Characters kept from each end of a text before tokenizing. A token covers at least one
# character, so this never changes which tokens survive truncation for sane inputs, and a
# review of several megabytes costs no more than a long one.
CHARS_PER_TOKEN_BOUND = 64


@dataclass(frozen=True)
class EncodingSettings:
    """How texts are cut and framed; stored in the bundle manifest.

    >>> EncodingSettings(max_length=256, truncation="head_tail", head_tokens=64).content_length
    254
    """

    max_length: int = 256
    truncation: str = "head_tail"
    head_tokens: int = 64

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATION_STRATEGIES:
            raise ValueError(
                f"unknown truncation strategy {self.truncation!r}; "
                f"expected one of {', '.join(TRUNCATION_STRATEGIES)}"
            )
        if self.max_length < 4:
            raise ValueError(f"max_length must be at least 4, got {self.max_length}")
        if not 0 <= self.head_tokens <= self.max_length:
            raise ValueError(f"head_tokens must lie in 0..max_length, got {self.head_tokens}")

    @property
    def content_length(self) -> int:
        """Content tokens kept, leaving room for ``[CLS]`` and ``[SEP]``."""
        return self.max_length - 2


class TextEncoder:
    """Encodes texts with a ``tokenizers.Tokenizer`` and the bundle's truncation rule.

    >>> encoder = TextEncoder(tokenizer, EncodingSettings(max_length=128))  # doctest: +SKIP
    >>> ids, mask = encoder.encode(["Great value", "Broke after a week"])  # doctest: +SKIP
    """

    def __init__(self, tokenizer: Tokenizer, settings: EncodingSettings) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.prefix, self.suffix = _special_frame(tokenizer)
        specials = len(self.prefix) + len(self.suffix)
        self.content_length = settings.max_length - specials
        if self.content_length < 1:
            raise ValueError("max_length leaves no room for content tokens")
        self.pad_id = _pad_id(tokenizer)

    @property
    def frame_length(self) -> int:
        """Special tokens around every sequence: a text with no more has no content."""
        return len(self.prefix) + len(self.suffix)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, framed with special tokens and cut to ``max_length``."""
        clipped = [_clip_chars(text, self.settings.max_length) for text in texts]
        try:
            encodings = self.tokenizer.encode_batch(clipped, add_special_tokens=False)
        except TypeError:  # a lone surrogate: tokenizers takes only valid Unicode
            clipped = [repair_surrogates(text) for text in clipped]
            encodings = self.tokenizer.encode_batch(clipped, add_special_tokens=False)
        return [self.prefix + self._truncate(enc.ids) + self.suffix for enc in encodings]

    def _truncate(self, ids: list[int]) -> list[int]:
        keep = self.content_length
        if len(ids) <= keep:
            return ids
        strategy = self.settings.truncation
        if strategy == "head":
            return ids[:keep]
        if strategy == "tail":
            return ids[-keep:]
        head = min(self.settings.head_tokens, keep)
        tail = keep - head
        return ids[:head] + (ids[-tail:] if tail else [])

    def pad(self, sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Pad to the longest sequence given (dynamic padding)."""
        width = max((len(seq) for seq in sequences), default=0)
        ids = np.full((len(sequences), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return ids, mask

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``input_ids`` and ``attention_mask`` for ``texts``, padded to the longest."""
        return self.pad(self.token_ids(texts))


def repair_surrogates(text: str) -> str:
    """``text`` with surrogate pairs joined into the character they spell (as a JSON
    reader would) and every lone surrogate replaced by U+FFFD.

    >>> repair_surrogates("ok \\ud83d") == "ok \\ufffd"
    True
    >>> repair_surrogates("\\ud83d\\ude00") == "\\U0001f600"
    True
    """
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _clip_chars(text: str, max_length: int) -> str:
    bound = max_length * CHARS_PER_TOKEN_BOUND
    if len(text) <= 2 * bound:
        return text
    return text[:bound] + " " + text[-bound:]


def _special_frame(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The special-token ids the tokenizer puts before and after one sequence."""
    probe = "probe"
    bare = tokenizer.encode(probe, add_special_tokens=False).ids
    framed = tokenizer.encode(probe, add_special_tokens=True).ids
    for start in range(len(framed) - len(bare) + 1):
        if framed[start : start + len(bare)] == bare:
            return framed[:start], framed[start + len(bare) :]
    raise ValueError("cannot locate the content tokens inside the tokenizer's special frame")


def _pad_id(tokenizer: Tokenizer) -> int:
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return 0
