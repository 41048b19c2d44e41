"""The Python API: `semsearch.search`, `semsearch.themes`, `semsearch.theme_assignments`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import polars as pl

from semsearch.config import Settings
from semsearch.core.filters import SearchFilter
from semsearch.defs.resources import EmbeddingResource, StorageResource
from semsearch.storage.schemas import ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS, THEMES, THEMES_TABLE
from semsearch.storage.vector_index import AnnParams


@dataclass(frozen=True)
class SearchHit:
    score: float  # cosine similarity, 1 is identical
    partition_date: date
    doc_id: str
    chunk_id: str
    title: str | None
    text: str
    metadata: dict
    theme_id: str | None
    theme_label: str | None


@dataclass(frozen=True)
class ThemeSummary:
    theme_id: str
    label: str
    keywords: list[str]
    size: int
    representatives: list[str]
    window: tuple[date, date]


def _settings(settings: Settings | None) -> Settings:
    return settings or Settings.from_env()


def search(
    query: str,
    k: int = 10,
    since: str | date | None = None,
    until: str | date | None = None,
    where: list[str] | dict[str, str] | None = None,
    settings: Settings | None = None,
    exact: bool = False,
) -> list[SearchHit]:
    """Rank indexed chunks by meaning; filters are validated and quoted, never spliced raw."""
    if not query or not query.strip():
        raise ValueError("the search query is empty")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    settings = _settings(settings)
    search_filter = SearchFilter.parse(since, until, where)
    backend = EmbeddingResource.from_settings(settings).get_backend()
    index = StorageResource.from_settings(settings).index()
    index.check_model(backend.model_id)
    result = backend.embed([query])
    if not result.indices:
        raise RuntimeError(f"could not embed the query: {result.failures[0].message}")
    params = AnnParams(min_rows=settings.ann_min_rows)
    rows = index.search(
        result.vectors[0], k, search_filter.to_sql(), params, exact=exact
    ).to_pylist()
    themes = _themes_for_chunks(settings, [r["chunk_id"] for r in rows])
    return [
        SearchHit(
            score=round(1.0 - float(r["_distance"]), 4),
            partition_date=r["partition_date"],
            doc_id=r["doc_id"],
            chunk_id=r["chunk_id"],
            title=r["title"],
            text=r["text"],
            metadata=json.loads(r["metadata"] or "{}"),
            theme_id=themes.get(r["chunk_id"], (None, None))[0],
            theme_label=themes.get(r["chunk_id"], (None, None))[1],
        )
        for r in rows
    ]


def _themes_for_chunks(settings: Settings, chunk_ids: list[str]) -> dict[str, tuple[str, str]]:
    """Each chunk's theme in the latest window that clustered it."""
    if not chunk_ids:
        return {}
    tables = StorageResource.from_settings(settings).tables()
    assigned = (
        tables.scan(ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS)
        .filter(pl.col("chunk_id").is_in(chunk_ids))
        .sort("partition_date", descending=True)
        .unique(subset="chunk_id", keep="first")
        .collect()
    )
    labels = (
        tables.scan(THEMES_TABLE, THEMES)
        .select("partition_date", "theme_id", "label")
        .join(
            assigned.lazy().select("partition_date", "theme_id").unique(),
            on=["partition_date", "theme_id"],
        )
        .collect()
    )
    label_of = {(d, t): lbl for d, t, lbl in labels.iter_rows()}
    return {
        row["chunk_id"]: (
            row["theme_id"],
            label_of.get((row["partition_date"], row["theme_id"]), ""),
        )
        for row in assigned.iter_rows(named=True)
    }


def themes(day: str | date | None = None, settings: Settings | None = None) -> list[ThemeSummary]:
    """The themes of the window ending at `day` (default: the latest materialized window)."""
    tables = StorageResource.from_settings(_settings(settings)).tables()
    scan = tables.scan(THEMES_TABLE, THEMES)
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
        )
        for r in rows.collect().iter_rows(named=True)
    ]


def theme_assignments(
    doc_id: str | None = None, chunk_id: str | None = None, settings: Settings | None = None
) -> pl.DataFrame:
    """Theme assignments of a document's chunks (or one chunk), in every window that held them."""
    if not doc_id and not chunk_id:
        raise ValueError("give a doc_id or a chunk_id")
    tables = StorageResource.from_settings(_settings(settings)).tables()
    scan = tables.scan(ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS)
    if doc_id:
        scan = scan.filter(pl.col("doc_id") == doc_id)
    if chunk_id:
        scan = scan.filter(pl.col("chunk_id") == chunk_id)
    return scan.sort(["partition_date", "chunk_id"]).collect()
