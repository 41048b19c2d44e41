"""The Python API: `search`, `themes` and `theme_assignments` over a semsearch home.

Settings default to the SEMSEARCH_* environment; each process keeps one `Searcher` per
settings, so the model and the index are opened once however often these are called.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from semsearch.config import Settings
from semsearch.core.search_options import DEFAULT_MODE
from semsearch.query.searcher import Searcher, SearchHit, ThemeSummary, searcher_for

__all__ = [
    "SearchHit",
    "Searcher",
    "ThemeSummary",
    "search",
    "searcher_for",
    "theme_assignments",
    "themes",
]


def _searcher(settings: Settings | None) -> Searcher:
    return searcher_for(settings or Settings.from_env())


def search(
    query: str,
    k: int = 10,
    since: str | date | None = None,
    until: str | date | None = None,
    where: list[str] | dict[str, str] | None = None,
    settings: Settings | None = None,
    exact: bool = False,
    mode: str = DEFAULT_MODE,
    unit: str = "document",
) -> list[SearchHit]:
    """Rank indexed documents (`unit="chunk"`: chunks) by meaning; filters are validated and
    quoted, never spliced raw. `k` counts documents (or chunks), at most `MAX_K`."""
    return _searcher(settings).search(
        query, k, since, until, where, mode=mode, unit=unit, exact=exact
    )


def themes(day: str | date | None = None, settings: Settings | None = None) -> list[ThemeSummary]:
    """The themes of the window ending at `day` (default: the latest materialized window)."""
    return _searcher(settings).themes(day)


def theme_assignments(
    doc_id: str | None = None, chunk_id: str | None = None, settings: Settings | None = None
) -> pl.DataFrame:
    """Theme assignments of a document's chunks (or one chunk), in every window that held them."""
    return _searcher(settings).theme_assignments(doc_id, chunk_id)
