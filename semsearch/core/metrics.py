"""Evaluation metrics shared by tests, checks and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence


def recall_at_k(
    approximate: Sequence[Sequence[str]], exact: Sequence[Sequence[str]], k: int
) -> float:
    """Mean share of the exact top-k ids that the approximate top-k also returns."""
    if not exact:
        return 1.0
    shares = [
        len(set(a[:k]) & set(e[:k])) / max(1, min(k, len(e)))
        for a, e in zip(approximate, exact, strict=True)
    ]
    return sum(shares) / len(shares)
