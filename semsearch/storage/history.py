"""What changed between versions of a Delta table, and a partition as an earlier run left it.

Delta keeps every commit: the files a version adds and removes say which day-partitions changed
(that is how the sensors find the days a new file or a source commit touched), and reading an
older version gives the previous run of a partition (that is how theme stability is measured)
for as long as `vacuum` has not removed its files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import PARTITION_COLUMN

log = logging.getLogger(__name__)

PARTITION_FIELD = f"partition.{PARTITION_COLUMN}"


def table_version(uri: str, storage_options: dict[str, str] | None = None) -> int | None:
    try:
        return DeltaTable(uri, storage_options=storage_options).version()
    except TableNotFoundError:
        return None


def _files(table: DeltaTable) -> pa.Table:
    return pa.table(table.get_add_actions(flatten=True))


def _files_by_day(table: DeltaTable) -> dict[str, date | None]:
    files = _files(table)
    days = (
        files.column(PARTITION_FIELD).to_pylist()
        if PARTITION_FIELD in files.column_names
        else [None] * files.num_rows
    )
    return dict(zip(files.column("path").to_pylist(), days, strict=True))


def partition_days(tables: DeltaTables, name: str) -> list[date]:
    """The days table `name` holds data files for, in order, read from its log alone."""
    table = tables.table(name)
    if table is None:
        return []
    return sorted({d for d in _files_by_day(table).values() if d is not None})


def _at_version(uri: str, version: int | None, options: dict | None) -> DeltaTable | None:
    """The table as of `version` (None: before its first commit)."""
    if version is None or version < 0:
        return None
    return DeltaTable(uri, version=version, storage_options=options)


@dataclass(frozen=True)
class FileChanges:
    """Data files added and removed between two versions (paths relative to the table)."""

    added: dict[str, date | None]
    removed: dict[str, date | None]

    @property
    def days(self) -> set[date]:
        """Partitions whose files changed (tables partitioned by `partition_date`)."""
        return {d for d in [*self.added.values(), *self.removed.values()] if d is not None}


def file_changes(
    uri: str, since: int | None, until: int, storage_options: dict[str, str] | None = None
) -> FileChanges:
    """Files of version `until` not in `since`, and files of `since` gone by `until`."""
    new = _files_by_day(DeltaTable(uri, version=until, storage_options=storage_options))
    try:
        old_table = _at_version(uri, since, storage_options)
    except DeltaError as error:  # the old version's log was cleaned up: treat all as new
        log.warning("version %s of %s is gone (%s); treating every file as new", since, uri, error)
        old_table = None
    old = _files_by_day(old_table) if old_table is not None else {}
    return FileChanges(
        added={p: d for p, d in new.items() if p not in old},
        removed={p: d for p, d in old.items() if p not in new},
    )


def read_files(
    uri: str, version: int, paths: Iterable[str], columns: list[str], options: dict | None = None
) -> pl.DataFrame:
    """Selected columns of some data files of a version (e.g. to date the rows they hold)."""
    paths = set(paths)
    if not paths:
        return pl.DataFrame()
    table = DeltaTable(uri, version=version, storage_options=options)
    wanted = [u for u in table.file_uris() if any(u.endswith(p) for p in paths)]
    frames = [pl.read_parquet(u, columns=columns, storage_options=options) for u in wanted]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def _day_files(table: DeltaTable, day: date) -> set[str]:
    return {p for p, d in _files_by_day(table).items() if d == day}


def previous_partition(
    tables: DeltaTables, name: str, day: date
) -> tuple[pl.DataFrame | None, str]:
    """The day's rows as they were before the latest write of that day, with a note.

    Walks the commit history back to the latest commit that changed the day's files; the
    version just before it holds the previous run. Returns (None, why) when there is none.
    """
    table = tables.table(name)
    if table is None:
        return None, f"{name} does not exist yet"
    current = _day_files(table, day)
    for commit in table.history():
        version = int(commit["version"])
        predicate = (commit.get("operationParameters") or {}).get("predicate") or ""
        # A predicate naming another day cannot have changed this one: skip without loading.
        if version == 0 or (predicate and day.isoformat() not in predicate):
            if version == 0:
                return None, f"first run of {day}: nothing to compare"
            continue
        before = _at_version(tables.uri(name), version - 1, tables.storage_options)
        earlier = _day_files(before, day) if before is not None else set()
        if earlier == current:
            continue
        if not earlier:
            return None, f"first run of {day}: nothing to compare"
        return _read_version(tables, name, version - 1, day)
    return None, f"no earlier run of {day} in the retained history"


def _read_version(
    tables: DeltaTables, name: str, version: int, day: date
) -> tuple[pl.DataFrame | None, str]:
    try:
        frame = (
            pl.scan_delta(tables.uri(name), version=version, storage_options=tables.storage_options)
            .filter(pl.col(PARTITION_COLUMN) == day)
            .collect()
        )
    except (OSError, DeltaError, pl.exceptions.ComputeError) as error:
        return None, f"version {version} is no longer readable (vacuumed?): {error}"
    return frame, f"compared with version {version} of {name}"
