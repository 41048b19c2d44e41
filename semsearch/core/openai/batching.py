"""Request batches: what one request carries, what it returned, and how a bad batch is split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from semsearch.core.embedding import EmbeddingFailure, EmbeddingStats


@dataclass
class Batch:
    indices: list[int]
    texts: list[str]
    tokens: int


@dataclass
class BatchOutcome:
    indices: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    failures: list[EmbeddingFailure] = field(default_factory=list)
    stats: EmbeddingStats = field(default_factory=EmbeddingStats)

    def merge(self, other: BatchOutcome) -> None:
        self.indices += other.indices
        self.vectors += other.vectors
        self.failures += other.failures
        self.stats.add(other.stats)


@dataclass
class Exhausted:
    error: BaseException
    attempts: int


def fail_all(batch: Batch, error_class: str, message: str, attempts: int) -> list[EmbeddingFailure]:
    return [EmbeddingFailure(i, error_class, message, attempts) for i in batch.indices]


def halves(batch: Batch, counts: list[int]) -> list[Batch]:
    mid = len(batch.indices) // 2
    return [
        Batch(batch.indices[:mid], batch.texts[:mid], sum(counts[:mid])),
        Batch(batch.indices[mid:], batch.texts[mid:], sum(counts[mid:])),
    ]
