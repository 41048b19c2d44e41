"""Each chunk's theme and label, held in memory and re-read only when the theme tables move.

Scanning the `theme_assignments` and `themes` Delta tables on every query costs tens of
milliseconds at a million chunks; the tables change once per daily run. The lookup is built
once per (assignments version, themes version) and shared by every query until then.
"""

from __future__ import annotations

import threading

import polars as pl
from deltalake import DeltaTable

from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS, THEMES, THEMES_TABLE


class ChunkThemes:
    """chunk_id -> (theme_id, label) in the latest window that clustered the chunk."""

    def __init__(self, tables: DeltaTables) -> None:
        self.tables = tables
        self._lock = threading.Lock()
        self._versions: tuple[int | None, int | None] | None = None
        self._lookup: dict[str, tuple[str, str]] = {}
        self._open: dict[str, DeltaTable] = {}  # kept open: a version check reads new log only

    def lookup(self, chunk_ids: list[str]) -> dict[str, tuple[str, str]]:
        if not chunk_ids:
            return {}
        current = self._current()
        return {c: current[c] for c in chunk_ids if c in current}

    def _current(self) -> dict[str, tuple[str, str]]:
        with self._lock:
            versions = (self._version(ASSIGNMENTS_TABLE), self._version(THEMES_TABLE))
            if versions != self._versions:
                self._lookup = self._read(versions)
                self._versions = versions
            return self._lookup

    def _version(self, name: str) -> int | None:
        table = self._open.get(name)
        if table is None:
            table = self.tables.table(name)
            if table is None:
                return None
            self._open[name] = table
        else:
            table.update_incremental()
        return table.version()

    def _read(self, versions: tuple[int | None, int | None]) -> dict[str, tuple[str, str]]:
        assignments, themes = versions
        if assignments is None:
            return {}
        latest = (
            self.tables.scan(ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS, version=assignments)
            .select("chunk_id", "partition_date", "theme_id")
            .sort("partition_date", descending=True)
            .unique(subset="chunk_id", keep="first")
        )
        if themes is None:
            labelled = latest.with_columns(label=pl.lit(""))
        else:
            labels = self.tables.scan(THEMES_TABLE, THEMES, version=themes).select(
                "partition_date", "theme_id", "label"
            )
            labelled = latest.join(labels, on=["partition_date", "theme_id"], how="left")
        frame = labelled.select("chunk_id", "theme_id", pl.col("label").fill_null("")).collect()
        return {c: (t, lbl) for c, t, lbl in frame.iter_rows()}
