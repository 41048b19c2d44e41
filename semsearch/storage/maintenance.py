"""Keeping the stored tables small: compaction and removal of files no version still needs.

Every re-run of a day replaces that day's files, and the per-run appends (dead letters,
rejections, alerts; the embedding cache's per-request Lance fragments) add small files; the old
files stay on disk for time travel until vacuumed. Without this a long-running deployment's
storage grows without bound and every table's file list (the Delta log, a directory listing on
object stores) with it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from semsearch.storage.delta import DeltaTables
from semsearch.storage.embedding_cache import CacheMaintenance, CacheStore
from semsearch.storage.vector_index import VectorIndex

log = logging.getLogger(__name__)

# Vacuum deletes only files the log still lists as removed, and a checkpoint forgets removals
# older than the table's deletedFileRetentionDuration. Keeping them this much longer than the
# retention means a removal is still listed at the first maintenance run after it expires, as
# long as runs are no further apart than this.
TOMBSTONE_MARGIN_HOURS = 48
MIN_LOG_RETENTION_HOURS = 30 * 24  # Delta's default


@dataclass(frozen=True)
class TableMaintenance:
    table: str
    files_before: int  # live files
    files_after: int
    files_compacted: int  # small files rewritten into larger ones
    files_vacuumed: int  # files of old versions, older than the retention, deleted
    seconds: float
    problem: str = ""  # why part of the work was not done, if it was not
    failed: bool = False  # an error, not just a compaction that lost a race


@dataclass(frozen=True)
class StorageMaintenance:
    delta: list[TableMaintenance]
    index_versions_before: int
    index_versions_after: int
    cache: CacheMaintenance | None = None  # the LanceDB embedding cache, when it exists
    index_segments_merged: int = 0  # the ANN index's newest segments merged into one (0: none)

    @property
    def failures(self) -> list[TableMaintenance]:
        return [t for t in self.delta if t.failed]


def keep_removals_listed(table: DeltaTable, retention_hours: int) -> None:
    """Make the table's log keep removed files listed long enough for vacuum to find them."""
    tombstones = retention_hours + TOMBSTONE_MARGIN_HOURS
    wanted = {
        "delta.deletedFileRetentionDuration": f"interval {tombstones} hours",
        "delta.logRetentionDuration": f"interval {max(tombstones, MIN_LOG_RETENTION_HOURS)} hours",
    }
    current = table.metadata().configuration
    if any(current.get(key) != value for key, value in wanted.items()):
        table.alter.set_table_properties(wanted)


def maintain_delta_table(
    tables: DeltaTables, name: str, retention_hours: int
) -> TableMaintenance | None:
    """Compact `name`'s small files, then delete files no version within the retention needs."""
    table = tables.table(name)
    if table is None:
        return None
    start, before, problem = time.perf_counter(), len(table.file_uris()), ""
    try:
        keep_removals_listed(table, retention_hours)
        compacted = int(table.optimize.compact().get("numFilesRemoved", 0))
    except CommitFailedError as error:
        # A pipeline run committed to the same files meanwhile; its write wins, and the next
        # maintenance run compacts what is there then. Vacuum still runs.
        log.warning("compaction of %s skipped: %s", name, error)
        problem, compacted = f"compaction skipped: {error}", 0
    # delta-rs would refuse a retention under the table's own (7 days by default); the setting
    # is validated instead (SEMSEARCH_MAINTENANCE_RETENTION_HOURS), one value for every table.
    vacuumed = table.vacuum(
        retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
    )
    return TableMaintenance(
        table=name,
        files_before=before,
        files_after=len(table.file_uris()),
        files_compacted=compacted,
        files_vacuumed=len(vacuumed),
        seconds=time.perf_counter() - start,
        problem=problem,
    )


def _maintain_or_report(tables: DeltaTables, name: str, retention_hours: int):
    start = time.perf_counter()
    try:
        return maintain_delta_table(tables, name, retention_hours)
    except Exception as error:  # one table's failure must not stop the others' maintenance
        log.exception("maintenance of %s failed", name)
        seconds, problem = time.perf_counter() - start, f"{type(error).__name__}: {error}"
        return TableMaintenance(name, 0, 0, 0, 0, seconds, problem=problem, failed=True)


def maintain_storage(
    tables: DeltaTables,
    table_names: list[str],
    index: VectorIndex,
    retention_hours: int,
    cache: CacheStore | None = None,
) -> StorageMaintenance:
    """Maintain every existing Delta table in `table_names`, each on its own, the index, and
    the embedding cache (compaction, every row folded into its key index, old versions
    dropped)."""
    results = [_maintain_or_report(tables, name, retention_hours) for name in table_names]
    *versions, merged = index.optimize(cleanup_older_than=timedelta(hours=retention_hours))
    cached = None
    if cache is not None and cache.exists():
        cached = cache.maintain(cleanup_older_than=timedelta(hours=retention_hours))
    return StorageMaintenance(
        [r for r in results if r is not None], *versions, cache=cached, index_segments_merged=merged
    )
