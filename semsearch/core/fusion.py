"""Pure rank fusion of several ranked result lists (no index, no model).

Inputs are ranked lists of ids, best first:

- ``weighted``: min-max normalise each list's scores to 0..1, then a weighted sum. Uses the
  score gaps; the hybrid search mode's fusion (equal weight, `HYBRID_VECTOR_WEIGHT`).
- ``rrf``: reciprocal rank fusion, score = sum 1 / (k0 + rank). Uses ranks only; the baseline
  `benchmarks/bench_retrieval.py` measures the hybrid mode against.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

RRF_K0 = 60  # the constant from Cormack et al. (2009); damps the top ranks' dominance


def rrf(rankings: Sequence[Sequence[Hashable]], k0: int = RRF_K0) -> list[tuple[Hashable, float]]:
    """Fuse ranked id lists by reciprocal rank; returns (id, score) best first, ties by id order."""
    if k0 < 1:
        raise ValueError(f"k0 must be >= 1, got {k0}")
    scores: dict[Hashable, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k0 + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def _min_max(scores: Mapping[Hashable, float]) -> dict[Hashable, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi == lo:
        return {key: 1.0 for key in scores}
    return {key: (value - lo) / (hi - lo) for key, value in scores.items()}


def weighted(
    vector: Mapping[Hashable, float], keyword: Mapping[Hashable, float], w: float
) -> list[tuple[Hashable, float]]:
    """w * normalised vector + (1 - w) * normalised keyword score; missing is 0; ties stable."""
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"w must be in 0..1, got {w}")
    nv, nk = _min_max(vector), _min_max(keyword)
    fused = {
        key: w * nv.get(key, 0.0) + (1 - w) * nk.get(key, 0.0) for key in dict.fromkeys([*nv, *nk])
    }
    return sorted(fused.items(), key=lambda kv: -kv[1])
