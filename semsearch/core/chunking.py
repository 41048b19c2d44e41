"""Token-aware chunking with the embedding model's own tokenizer.

Texts are split at paragraph, then sentence boundaries, then (only for a sentence longer than a
chunk) at token boundaries; pieces are packed greedily up to `size` tokens, and each chunk starts
with up to `overlap` tokens of the previous chunk's trailing pieces. No chunk exceeds the model's
input limit, so nothing is silently truncated by the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from semsearch.core.embedding import Tokenizer
from semsearch.core.ids import chunk_id

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# A sentence ends at . ! ? followed by whitespace, or at a single line break.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n")


@dataclass(frozen=True)
class ChunkSpec:
    size: int
    overlap: int

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"chunk size must be positive, got {self.size}")
        if not 0 <= self.overlap < self.size:
            raise ValueError(f"chunk overlap must be in [0, size), got {self.overlap}")


@dataclass(frozen=True)
class Chunk:
    position: int
    text: str
    token_count: int


def effective_spec(spec: ChunkSpec, max_input_tokens: int) -> ChunkSpec:
    """Clamp the configured size to what the model can take in one input."""
    size = min(spec.size, max_input_tokens)
    return ChunkSpec(size=size, overlap=min(spec.overlap, size // 2))


def _pieces(text: str) -> list[str]:
    pieces: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        pieces.extend(s.strip() for s in _SENTENCE_BREAK.split(paragraph) if s and s.strip())
        if pieces:
            pieces[-1] = pieces[-1] + "\n\n"  # remember the paragraph end when re-joining
    return [p.rstrip(" ") for p in pieces]


def _split_long(piece: str, limit: int, tokenizer: Tokenizer) -> list[str]:
    """Cut a piece into parts of at most `limit` tokens, at token boundaries.

    A cut part is re-tokenized on its own and may come out longer (a word cut in two gains a
    token), so each part is checked and cut again with a smaller step until it fits.
    """
    offsets = tokenizer.token_offsets(piece)
    step = limit
    while True:
        parts = [
            piece[window[0][0] : window[-1][1]]
            for start in range(0, len(offsets), step)
            if (window := offsets[start : start + step])
        ]
        parts = [p for p in parts if p.strip()]
        if step <= 1 or max(tokenizer.count_tokens(parts), default=0) <= limit:
            return parts
        step = max(1, step - max(1, step // 10))


def _join(pieces: Sequence[str]) -> str:
    out = ""
    for piece in pieces:
        out += piece if not out or out.endswith("\n\n") else " " + piece
    return out.strip()


def chunk_text(text: str, spec: ChunkSpec, tokenizer: Tokenizer) -> list[Chunk]:
    pieces = _pieces(text)
    counts = tokenizer.count_tokens(pieces)
    units: list[tuple[str, int]] = []
    for piece, count in zip(pieces, counts, strict=True):
        if count <= spec.size:
            units.append((piece, count))
        else:
            parts = _split_long(piece, spec.size, tokenizer)
            units.extend(zip(parts, tokenizer.count_tokens(parts), strict=True))
    return _fit(_pack(units, spec, tokenizer), spec.size, tokenizer)


def _pack(units: list[tuple[str, int]], spec: ChunkSpec, tokenizer: Tokenizer) -> list[Chunk]:
    chunks: list[Chunk] = []
    current: list[tuple[str, int]] = []
    fresh = 0  # units in `current` not already emitted as another chunk's tail
    for unit in units:
        if current and sum(c for _, c in current) + unit[1] > spec.size:
            chunks.append(_make_chunk(len(chunks), current, tokenizer))
            current = _overlap_tail(current, spec.overlap, spec.size - unit[1])
            fresh = 0
        current.append(unit)
        fresh += 1
    if current and fresh:
        chunks.append(_make_chunk(len(chunks), current, tokenizer))
    return chunks


def _overlap_tail(units: list[tuple[str, int]], overlap: int, room: int) -> list[tuple[str, int]]:
    tail: list[tuple[str, int]] = []
    budget = min(overlap, room)
    for unit in reversed(units):
        if unit[1] > budget:
            break
        tail.insert(0, unit)
        budget -= unit[1]
    return tail


def _make_chunk(position: int, units: list[tuple[str, int]], tokenizer: Tokenizer) -> Chunk:
    text = _join([u for u, _ in units])
    # Re-count the joined text: sub-word tokenizers need not be additive across joins.
    return Chunk(position=position, text=text, token_count=tokenizer.count_tokens([text])[0])


def _fit(chunks: list[Chunk], size: int, tokenizer: Tokenizer) -> list[Chunk]:
    """Cut any chunk that re-tokenized over `size`, and renumber positions."""
    fitted: list[Chunk] = []
    for chunk in chunks:
        parts = (
            [chunk.text] if chunk.token_count <= size else _split_long(chunk.text, size, tokenizer)
        )
        counts = [chunk.token_count] if len(parts) == 1 else tokenizer.count_tokens(parts)
        fitted += [
            Chunk(len(fitted) + i, p, c) for i, (p, c) in enumerate(zip(parts, counts, strict=True))
        ]
    return fitted


def document_text(title: str | None, text: str) -> str:
    """What gets chunked: the title as its own paragraph, so it is searchable too."""
    return f"{title.strip()}\n\n{text}" if title and title.strip() else text


def chunk_documents(documents: Iterable[dict], spec: ChunkSpec, tokenizer: Tokenizer) -> list[dict]:
    """Chunk rows with doc_id, title, text; returns rows with chunk_id, position, text, tokens."""
    rows = []
    for doc in documents:
        for chunk in chunk_text(document_text(doc["title"], doc["text"]), spec, tokenizer):
            rows.append(
                {
                    "chunk_id": chunk_id(doc["doc_id"], chunk.position, chunk.text),
                    "doc_id": doc["doc_id"],
                    "position": chunk.position,
                    "text": chunk.text,
                    "token_count": chunk.token_count,
                }
            )
    return rows
