"""Reading one document, one theme, or the index's state: the query path behind the HTTP pages.

Kept apart from `searcher.py` (ranking) on purpose. Every function takes the process's
`Searcher`, so the model and the table handles stay the ones it opened; nothing here loads the
model except `health` asking for its id once it is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from semsearch.core.filters import _parse_date as parse_date
from semsearch.query.searcher import Searcher, ThemeSummary
from semsearch.storage.schemas import (
    ASSIGNMENTS_TABLE,
    BRONZE_TABLE,
    CHUNKS,
    CHUNKS_TABLE,
    DOCUMENTS,
    RAW_TABLE,
    THEME_ASSIGNMENTS,
    THEME_TRENDS,
    THEMES,
    THEMES_TABLE,
    TRENDS_TABLE,
)

MAX_PAGE_SIZE = 200  # theme members per page


class NotFoundError(LookupError):
    """The document, theme or window asked for does not exist; the message says what does."""


@dataclass(frozen=True)
class DocumentVersion:
    created_at: str
    ingested_at: str
    source_file: str
    partition_date: date
    title: str | None
    text_chars: int
    current: bool


@dataclass(frozen=True)
class DocumentView:
    doc_id: str
    title: str | None
    text: str
    created_at: str
    partition_date: date
    metadata: dict
    chunks: list[dict]  # chunk_id, position, text, token_count
    theme_id: str | None
    theme_label: str | None
    theme_window: date | None
    versions: list[DocumentVersion] = field(default_factory=list)  # oldest first


@dataclass(frozen=True)
class ThemeView:
    theme: ThemeSummary
    volume: list[tuple[date, int]]  # documents per day of the window, every day
    members: list[dict]  # doc_id, title, document_date, probability (best member first)
    members_total: int
    offset: int
    limit: int


def window_days(searcher: Searcher) -> list[date]:
    """The last days of the materialized theme windows, newest first."""
    scan = searcher.tables.scan(THEMES_TABLE, THEMES)
    days = scan.select(pl.col("partition_date").unique()).collect().to_series().to_list()
    return sorted(days, reverse=True)


def resolve_window(searcher: Searcher, day: str | date | None) -> date:
    """`day`, checked to be a window that has themes (default: the latest)."""
    day = parse_date("day", day)  # a bad one: "--day ... is not a date (YYYY-MM-DD)"
    days = window_days(searcher)
    if not days:
        raise NotFoundError("no themes yet: run the pipeline (semsearch demo or semsearch run)")
    if day is None:
        return days[0]
    if day not in days:
        shown = ", ".join(d.isoformat() for d in days[:10])
        raise NotFoundError(f"day {day}: no theme window ends that day; windows end on {shown}")
    return day


def document(searcher: Searcher, doc_id: str) -> DocumentView:
    """A document as indexed now: its text, chunks, latest theme and every landed version."""
    tables = searcher.tables
    rows = tables.scan(RAW_TABLE, DOCUMENTS).filter(pl.col("doc_id") == doc_id).collect()
    if rows.is_empty():
        raise NotFoundError(f"doc_id {doc_id!r}: no such document")
    doc = rows.row(0, named=True)
    chunks = (
        tables.scan(CHUNKS_TABLE, CHUNKS)
        .filter(pl.col("doc_id") == doc_id)
        .select("chunk_id", "position", "text", "token_count")
        .sort("position")
        .collect()
        .to_dicts()
    )
    assigned = searcher.theme_assignments(doc_id=doc_id)
    theme_id = theme_label = theme_window = None
    if not assigned.is_empty():
        latest = assigned.sort("partition_date", descending=True).row(0, named=True)
        theme_id, theme_window = latest["theme_id"], latest["partition_date"]
        theme_label = searcher.themes_for_chunks([latest["chunk_id"]]).get(
            latest["chunk_id"], (None, None)
        )[1]
    return DocumentView(
        doc_id=doc_id,
        title=doc["title"],
        text=doc["text"],
        created_at=str(doc["created_at"]),
        partition_date=doc["partition_date"],
        metadata=json.loads(doc["metadata"] or "{}"),
        chunks=chunks,
        theme_id=theme_id,
        theme_label=theme_label,
        theme_window=theme_window,
        versions=_versions(searcher, doc_id, doc),
    )


def _versions(searcher: Searcher, doc_id: str, current: dict) -> list[DocumentVersion]:
    """Every landed copy of the document (a changed file or a later file re-lands it)."""
    landed = (
        searcher.tables.scan(BRONZE_TABLE, DOCUMENTS)
        .filter(pl.col("doc_id") == doc_id)
        .sort(["ingested_at", "source_file", "source_row"])
        .collect()
    )
    return [
        DocumentVersion(
            created_at=str(r["created_at"]),
            ingested_at=str(r["ingested_at"]),
            source_file=r["source_file"],
            partition_date=r["partition_date"],
            title=r["title"],
            text_chars=len(r["text"] or ""),
            current=(r["source_file"], r["source_row"])
            == (current["source_file"], current["source_row"]),
        )
        for r in landed.iter_rows(named=True)
    ]


def theme(
    searcher: Searcher,
    theme_id: str,
    day: str | date | None = None,
    offset: int = 0,
    limit: int = 20,
) -> ThemeView:
    """One theme of a window: keywords, label, representatives, a page of members, daily volume."""
    if offset < 0:
        raise ValueError(f"offset must be 0 or more, got {offset}")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}, got {limit}")
    window = resolve_window(searcher, day)
    summaries = {t.theme_id: t for t in searcher.themes(window)}
    if theme_id not in summaries:
        known = ", ".join(sorted(summaries)[:20])
        raise NotFoundError(f"theme_id {theme_id!r}: not a theme of window {window}; ids: {known}")
    summary = summaries[theme_id]
    members = (
        searcher.tables.scan(ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS)
        .filter((pl.col("partition_date") == window) & (pl.col("theme_id") == theme_id))
        .group_by("doc_id")
        .agg(pl.col("probability").max(), pl.col("document_date").first())
        .sort(["probability", "doc_id"], descending=[True, False])
        .collect()
    )
    page = members.slice(offset, limit)
    titles = dict(
        searcher.tables.scan(RAW_TABLE, DOCUMENTS)
        .filter(pl.col("doc_id").is_in(page["doc_id"].to_list()))
        .select("doc_id", pl.coalesce("title", pl.col("text").str.slice(0, 120)))
        .collect()
        .iter_rows()
    )
    return ThemeView(
        theme=summary,
        volume=volume(searcher, window, summary.window[0])[theme_id],
        members=[
            {
                "doc_id": r["doc_id"],
                "title": titles.get(r["doc_id"]),
                "document_date": r["document_date"],
                "probability": round(float(r["probability"]), 4),
            }
            for r in page.iter_rows(named=True)
        ],
        members_total=members.height,
        offset=offset,
        limit=limit,
    )


def volume(searcher: Searcher, window: date, first: date) -> dict[str, list[tuple[date, int]]]:
    """Each theme's documents per day over the window (from the theme_trends table), days
    without documents as 0, so a chart shows a rising theme as it is."""
    rows = (
        searcher.tables.scan(TRENDS_TABLE, THEME_TRENDS)
        .filter(pl.col("partition_date") == window)
        .select("theme_id", "day", "documents")
        .collect()
    )
    span = pl.date_range(first, window, "1d", eager=True).to_list()
    counts: dict[str, dict[date, int]] = {}
    for theme_id, day, documents in rows.iter_rows():
        counts.setdefault(theme_id, {})[day] = int(documents)
    themes = {t.theme_id for t in searcher.themes(window)} | set(counts)
    return {t: [(d, counts.get(t, {}).get(d, 0)) for d in span] for t in themes}


def health(searcher: Searcher) -> dict:
    """What the server answers from: index version and rows, last day, model."""
    table = searcher.index.table()
    days = window_days(searcher)
    indexed_days = []
    if table is not None:
        indexed_days = sorted(
            set(
                table.search()
                .select(["partition_date"])
                .limit(table.count_rows())
                .to_arrow()
                .column("partition_date")
                .to_pylist()
            )
        )
    return {
        "status": "ok" if table is not None else "empty",
        "index_version": None if table is None else table.version,
        "index_rows": 0 if table is None else table.count_rows(),
        "last_materialized_day": indexed_days[-1].isoformat() if indexed_days else None,
        "last_theme_window": days[0].isoformat() if days else None,
        "model_id": searcher.backend.model_id,
    }
