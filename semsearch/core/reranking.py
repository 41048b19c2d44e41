"""An optional reranking step: a cross-encoder scores (query, passage) pairs and reorders hits.

Off by default. `SEMSEARCH_RERANKER_PATH` names a local sentence-transformers CrossEncoder
folder; it is loaded with `local_files_only`, so nothing is fetched from the network.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

# Candidates a reranker reorders when fewer than this are asked for: it can only lift a passage
# that the first ranking brought in.
RERANK_CANDIDATES = 50


class Reranker(Protocol):
    def scores(self, query: str, passages: list[str]) -> list[float]:
        """One relevance score per passage, higher is better."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder read from a local folder."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"SEMSEARCH_RERANKER_PATH={path!r} is not a folder holding a sentence-transformers "
                "CrossEncoder (rerankers are never downloaded; leave it empty to rerank nothing)"
            )
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(path, device="cpu", local_files_only=True)
        log.info("reranker loaded from %s", path)

    def scores(self, query: str, passages: list[str]) -> list[float]:
        if not passages:
            return []
        return [float(s) for s in self.model.predict([(query, p) for p in passages])]


def build_reranker(path: str) -> Reranker | None:
    return CrossEncoderReranker(path) if path else None
