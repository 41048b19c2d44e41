"""Keeping the stored tables small and fast: compaction and removal of unreferenced files.

Every re-run of a day replaces that day's files, and the per-run appends (embedding cache, dead
letters, rejections, alerts) add small files; the old files stay on disk for time travel until
vacuumed. Without this a long-running deployment's storage grows without bound and every table's
file list (the Delta log, a directory listing on object stores) with it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from deltalake.exceptions import CommitFailedError

from semsearch.storage.delta import DeltaTables
from semsearch.storage.vector_index import VectorIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StorageMaintenance:
    delta: list[TableMaintenance]
    index_versions_before: int
    index_versions_after: int


@dataclass(frozen=True)
class TableMaintenance:
    table: str
    files_before: int
    files_after: int
    files_compacted: int  # small files rewritten into larger ones
    files_vacuumed: int  # unreferenced files older than the retention, deleted
    seconds: float
    skipped: str = ""  # why the table was left as it was, if it was


def maintain_delta_table(
    tables: DeltaTables, name: str, retention_hours: int
) -> TableMaintenance | None:
    """Compact `name`'s small files, then delete files no version within the retention needs."""
    table = tables.table(name)
    if table is None:
        return None
    start, before = time.perf_counter(), len(table.file_uris())
    try:
        compacted = table.optimize.compact()
    except CommitFailedError as error:
        # A pipeline run committed to the same files meanwhile; its write wins, and the next
        # maintenance run compacts what is there then.
        log.warning("compaction of %s skipped: %s", name, error)
        return TableMaintenance(name, before, before, 0, 0, time.perf_counter() - start, str(error))
    # The retention is checked here, not by delta-rs, so that it is one setting for every table.
    vacuumed = table.vacuum(
        retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
    )
    return TableMaintenance(
        table=name,
        files_before=before,
        files_after=len(table.file_uris()),
        files_compacted=int(compacted.get("numFilesRemoved", 0)),
        files_vacuumed=len(vacuumed),
        seconds=time.perf_counter() - start,
    )


def maintain_storage(
    tables: DeltaTables, table_names: list[str], index: VectorIndex, retention_hours: int
) -> StorageMaintenance:
    """Maintain every existing Delta table in `table_names` and the LanceDB index."""
    results = [maintain_delta_table(tables, name, retention_hours) for name in table_names]
    versions = index.optimize(cleanup_older_than=timedelta(hours=retention_hours))
    return StorageMaintenance([r for r in results if r is not None], *versions)
