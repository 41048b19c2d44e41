"""Each chunk's theme and label, held in memory and re-read only when the theme tables move.

Scanning the `theme_assignments` and `themes` Delta tables on every query costs tens of
milliseconds at a million chunks; the tables change once per daily run. The lookup is built
once per (assignments version, themes version) and shared by every query until then. Even the
version check costs ~3 ms a table (a listing of its log), so it is made at most once a second:
a re-clustered window's themes reach search results within a second of their commit.
"""

from __future__ import annotations

import threading
import time

import polars as pl
from deltalake import DeltaTable

from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS, THEMES, THEMES_TABLE

RECHECK_SECONDS = 1.0


class ChunkThemes:
    """chunk_id -> (theme_id, label) in the latest window that clustered the chunk."""

    def __init__(
        self, tables: DeltaTables, recheck_seconds: float = RECHECK_SECONDS, clock=time.monotonic
    ) -> None:
        self.tables = tables
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._checked_at = -float("inf")  # the clock's time of the last version check
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
            if self._clock() - self._checked_at < self.recheck_seconds:
                return self._lookup
            self._checked_at = self._clock()
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
