"""The query path: one `Searcher` per settings per process, shared by every caller.

The CLI, the Python API, the HTTP server and the assets' checks all answer queries through a
`Searcher`. It opens the embedding model, the LanceDB index and the Delta tables once and keeps
them; nothing here needs Dagster.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl
import pyarrow.compute as pc

from semsearch.config import Settings
from semsearch.core.backends import build_backend, build_query_embedder
from semsearch.core.embedding import EmbeddingBackend
from semsearch.core.filters import FilterError, SearchFilter
from semsearch.core.fusion import weighted
from semsearch.core.highlight import term_spans
from semsearch.core.query_encoder import QueryEmbedder
from semsearch.core.reranking import RERANK_CANDIDATES, Reranker, build_reranker
from semsearch.core.search_options import DEFAULT_MODE, HYBRID_VECTOR_WEIGHT, MAX_K, check_query
from semsearch.query.chunk_themes import ChunkThemes
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS, THEMES, THEMES_TABLE
from semsearch.storage.vector_index import AnnParams, VectorIndex


@dataclass(frozen=True)
class SearchHit:
    # vector: cosine similarity (1 is identical); keyword: BM25; hybrid: the fused normalised
    # score, 0..1 (comparable within one result list only)
    score: float
    partition_date: date
    doc_id: str
    chunk_id: str
    title: str | None
    text: str
    metadata: dict
    theme_id: str | None
    theme_label: str | None
    highlights: tuple[tuple[int, int], ...] = ()  # character spans of query terms in `text`
    matched_chunks: int = 1  # the document's chunks among the ranked passages


@dataclass(frozen=True)
class ThemeSummary:
    theme_id: str
    label: str  # the chat label when there is one, else the top keywords
    keywords: list[str]
    size: int  # documents in the window
    representatives: list[str]
    window: tuple[date, date]
    chunks: int = 0  # the documents' chunks


# Vectors of the most recent distinct queries, kept per process: paging through results, the
# modes of one question and popular questions skip the model (~15-25 ms a query on one thread).
RECENT_QUERY_VECTORS = 1024

# Chunks ranked per requested document before collapsing; doubled while too few documents come
# back (a long document can fill the first pages with its own chunks).
CHUNKS_PER_DOCUMENT = 4


class Searcher:
    """Answers queries over one semsearch home; the model loads on the first query."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.index = VectorIndex(settings.lance_path, settings.lance_table)
        self.tables = DeltaTables(settings.tables_path)
        self.ann_params = AnnParams(min_rows=settings.ann_min_rows)
        self.chunk_themes = ChunkThemes(self.tables)
        self._backend: EmbeddingBackend | None = None
        self._query_embedder: QueryEmbedder | None = None
        self._lock = threading.Lock()
        self._metadata_keys: tuple[int, frozenset[str]] | None = None  # (index version, keys)
        self._reranker: Reranker | None = None
        self.embed_query = functools.lru_cache(maxsize=RECENT_QUERY_VECTORS)(self._embed_query)

    @property
    def backend(self) -> EmbeddingBackend:
        with self._lock:  # one model load, however many threads ask at once
            if self._backend is None:
                self._backend = build_backend(self.settings, Settings.embedding_api_key())
            return self._backend

    @property
    def query_embedder(self) -> QueryEmbedder:
        """One query's text to its vector, built once (see `build_query_embedder`)."""
        backend = self.backend
        with self._lock:
            if self._query_embedder is None:
                self._query_embedder = build_query_embedder(self.settings, backend)
            return self._query_embedder

    @property
    def reranker(self) -> Reranker | None:
        """The configured reranker (SEMSEARCH_RERANKER_PATH), loaded once; None when off."""
        with self._lock:
            if self._reranker is None and self.settings.reranker_path:
                self._reranker = build_reranker(self.settings.reranker_path)
            return self._reranker

    def _embed_query(self, query: str) -> np.ndarray:
        """The query's vector (`embed_query` caches it; a failure is raised, not cached)."""
        vector = self.query_embedder(query)
        vector.setflags(write=False)  # shared by every caller of the cache
        return vector

    def search(
        self,
        query: str,
        k: int = 10,
        since: str | date | None = None,
        until: str | date | None = None,
        where: list[str] | dict[str, str] | None = None,
        mode: str = DEFAULT_MODE,
        unit: str = "document",
        exact: bool = False,
    ) -> list[SearchHit]:
        """Rank indexed documents (or chunks) by meaning (`vector`), words (`keyword`) or both
        fused (`hybrid`); filters are validated, quoted and applied before the top k."""
        check_query(query, k, mode, unit)
        search_filter = SearchFilter.parse(since, until, where)
        self._check_filter_keys(search_filter)
        table = self.index.snapshot()  # one version for every leg of the query
        if table is None:
            return []
        vector = None
        if mode in ("vector", "hybrid"):
            self.index.check_model(self.backend.model_id, table)
            vector = self.embed_query(query)
        legs = _Legs(self, table, query, vector, mode, search_filter.to_sql(), exact)
        reranker = self.reranker
        wanted = max(k, RERANK_CANDIDATES) if reranker else k
        limit = wanted * CHUNKS_PER_DOCUMENT if unit == "document" else wanted
        while True:
            ranked, full = legs.rank(limit)
            rows, matched = _fuse(ranked, unit)
            if len(rows) >= wanted or not full or limit >= MAX_K * CHUNKS_PER_DOCUMENT:
                break
            limit *= 2
        if reranker:
            scores = reranker.scores(query, [r["text"] for r in rows[:wanted]])
            rows = [
                r | {"_rank_score": score}
                for r, score in sorted(zip(rows, scores, strict=False), key=lambda pair: -pair[1])
            ]
        return self._hits(query, rows[:k], matched)

    def _hits(self, query: str, rows: list[dict], matched: dict[str, int]) -> list[SearchHit]:
        themes = self.themes_for_chunks([r["chunk_id"] for r in rows])
        return [
            SearchHit(
                score=round(float(r["_rank_score"]), 6),
                partition_date=r["partition_date"],
                doc_id=r["doc_id"],
                chunk_id=r["chunk_id"],
                title=r["title"],
                text=r["text"],
                metadata=json.loads(r["metadata"] or "{}"),
                theme_id=themes.get(r["chunk_id"], (None, None))[0],
                theme_label=themes.get(r["chunk_id"], (None, None))[1],
                highlights=term_spans(query, r["text"]),
                matched_chunks=matched[r["chunk_id"]],
            )
            for r in rows
        ]

    def metadata_keys(self) -> frozenset[str]:
        """The metadata keys the indexed documents have (read once per index version)."""
        table = self.index.table()
        if table is None:
            return frozenset()
        if self._metadata_keys is None or self._metadata_keys[0] != table.version:
            tags = table.search().select(["metadata_tags"]).limit(table.count_rows()).to_arrow()
            flat = pc.list_flatten(tags["metadata_tags"]).to_pylist() if tags.num_rows else []
            keys = frozenset(tag.partition("=")[0] for tag in flat)
            self._metadata_keys = (table.version, keys)
        return self._metadata_keys[1]

    def _check_filter_keys(self, search_filter: SearchFilter) -> None:
        """A key no document has is a typo, not "nothing matches": say which keys exist."""
        if not search_filter.where:
            return
        unknown = sorted(set(search_filter.where) - self.metadata_keys())
        if unknown and self.index.table() is not None:
            known = ", ".join(sorted(self.metadata_keys())) or "none"
            raise FilterError(
                f"no indexed document has the metadata key {', '.join(map(repr, unknown))}; "
                f"the keys are: {known}"
            )

    def themes_for_chunks(self, chunk_ids: list[str]) -> dict[str, tuple[str, str]]:
        """Each chunk's theme and label in the latest window that clustered it (an in-memory
        lookup, re-read only when the theme tables' versions move)."""
        return self.chunk_themes.lookup(chunk_ids)

    def themes(self, day: str | date | None = None) -> list[ThemeSummary]:
        """The themes of the window ending at `day` (default: the latest day with documents;
        a day without documents has no window)."""
        scan = self.tables.scan(THEMES_TABLE, THEMES)
        if day is None:
            day = scan.select(pl.col("partition_date").max()).collect().item()
            if day is None:
                return []
        elif isinstance(day, str):
            day = date.fromisoformat(day)
        rows = scan.filter(pl.col("partition_date") == day).sort(
            ["size", "theme_id"], descending=[True, False]
        )
        return [
            ThemeSummary(
                theme_id=r["theme_id"],
                label=r["label"],
                keywords=list(r["keywords"]),
                size=r["size"],
                representatives=list(r["representatives"]),
                window=(r["window_start"], r["partition_date"]),
                chunks=int(r["chunks"] or 0),
            )
            for r in rows.collect().iter_rows(named=True)
        ]

    def theme_assignments(
        self, doc_id: str | None = None, chunk_id: str | None = None
    ) -> pl.DataFrame:
        """A document's (or one chunk's) theme assignments in every window that held them."""
        if not doc_id and not chunk_id:
            raise ValueError("give a doc_id or a chunk_id")
        scan = self.tables.scan(ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS)
        if doc_id:
            scan = scan.filter(pl.col("doc_id") == doc_id)
        if chunk_id:
            scan = scan.filter(pl.col("chunk_id") == chunk_id)
        return scan.sort(["partition_date", "chunk_id"]).collect()


@dataclass
class _Legs:
    """The ranked chunk lists a query's mode asks for, read from one table version."""

    searcher: Searcher
    table: object
    query: str
    vector: np.ndarray | None
    mode: str
    where_sql: str | None
    exact: bool

    def rank(self, limit: int) -> tuple[list[list[dict]], bool]:
        """Each leg's top `limit` chunks (best first, `_rank_score` set), and whether any leg
        filled its limit (more may exist)."""
        legs = []
        if self.mode in ("vector", "hybrid"):
            index, params = self.searcher.index, self.searcher.ann_params
            found = index.search(self.vector, limit, self.where_sql, params, self.exact, self.table)
            legs.append([r | {"_rank_score": 1.0 - r["_distance"]} for r in found.to_pylist()])
        if self.mode in ("keyword", "hybrid"):
            found = self.searcher.index.keyword_search(
                self.query, limit, self.where_sql, self.table
            )
            legs.append([r | {"_rank_score": r["_score"]} for r in found.to_pylist()])
        return legs, any(len(leg) >= limit for leg in legs)


def _collapse_to_documents(rows: list[dict]) -> list[dict]:
    """Ranked chunks -> each document's best (first) chunk, in rank order."""
    best: dict[str, dict] = {}
    for row in rows:
        best.setdefault(row["doc_id"], row)
    return list(best.values())


def _fuse(legs: list[list[dict]], unit: str) -> tuple[list[dict], dict[str, int]]:
    """The ranked rows (chunks, or documents as their best chunk) of one or more legs, and each
    returned chunk's count of its document's chunks among the ranked passages.

    Two legs (vector, keyword) are fused by an equal-weight sum of their min-max normalised
    scores (see `HYBRID_VECTOR_WEIGHT`) over the unit returned: documents rank as documents,
    each leg scoring a document by its best chunk, so a document found by meaning in one
    passage and by words in another gets both; its passage is its best chunk in either leg.
    """
    chunks = legs[0] if len(legs) == 1 else _fused_rows(legs, "chunk_id")
    chunk_count: dict[str, set[str]] = {}
    for leg in legs:
        for row in leg:
            chunk_count.setdefault(row["doc_id"], set()).add(row["chunk_id"])
    if unit == "chunk":
        return chunks, {r["chunk_id"]: len(chunk_count[r["doc_id"]]) for r in chunks}
    if len(legs) == 1:
        documents = _collapse_to_documents(chunks)
    else:
        passage = {r["doc_id"]: r for r in reversed(chunks)}  # the best chunk wins
        best = [_collapse_to_documents(leg) for leg in legs]
        documents = [
            passage[row["doc_id"]] | {"_rank_score": row["_rank_score"]}
            for row in _fused_rows(best, "doc_id")
        ]
    return documents, {r["chunk_id"]: len(chunk_count[r["doc_id"]]) for r in documents}


def _fused_rows(legs: list[list[dict]], key: str) -> list[dict]:
    """The vector and keyword legs' rows fused on `key`, `_rank_score` the fused score."""
    vector, keyword = ({r[key]: r["_rank_score"] for r in leg} for leg in legs)
    row_of = {r[key]: r for leg in reversed(legs) for r in leg}
    fused = weighted(vector, keyword, HYBRID_VECTOR_WEIGHT)
    return [row_of[item] | {"_rank_score": score} for item, score in fused]


@functools.lru_cache(maxsize=8)
def searcher_for(settings: Settings) -> Searcher:
    """The process's `Searcher` for these settings (settings are frozen, so hashable)."""
    return Searcher(settings)
