"""What a search may ask for: modes, result units and bounds, checked the same way everywhere.

Light on purpose (no index, no model): the command line builds its choices from it before
anything heavy loads.
"""

from __future__ import annotations

MAX_K = 1000  # results per query: more is an export, not a search
# vector: by meaning (cosine); keyword: by words (BM25, LanceDB's full-text index); hybrid: the
# two ranked lists fused (see README, "Search modes", for the measurements behind the fusion).
MODES = ("hybrid", "vector", "keyword")
# Hybrid: each leg's scores min-max normalised over its candidates, then summed with equal
# weight: no preference between meaning and words, and no number fitted to one labelled set.
# It uses the score gaps that reciprocal rank fusion throws away (measured better on both sets
# we tried; Bruch et al. 2023, "An Analysis of Fusion Functions for Hybrid Retrieval", agree).
HYBRID_VECTOR_WEIGHT = 0.5
DEFAULT_MODE = "hybrid"
MAX_QUERY_CHARS = 4000  # the model reads ~250 tokens; a longer "query" is a pasted document
UNITS = ("document", "chunk")  # a hit is a document (its best passage) or one chunk


def check_query(query: str, k: int, mode: str, unit: str) -> None:
    """One clear error naming the parameter and what is allowed."""
    if not query or not query.strip():
        raise ValueError("the search query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(
            f"the search query is {len(query):,} characters; at most {MAX_QUERY_CHARS:,} "
            "(describe what you are looking for in a sentence or two)"
        )
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be 1..{MAX_K}, got {k}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
