"""Delta Lake tables under one folder: per-partition replace, per-partition read.

Every write that replaces data does so in one Delta commit with a predicate naming exactly the
rows it owns, so a re-run replaces a partition (never the whole table) and a crash leaves either
the old partition or the new one.

Writers may run in several processes at once (one Dagster run per partition). A table is therefore
created empty on its own, race-safely, before any data is written: a write never depends on
whether the table happened to exist a moment ago, so no writer can overwrite a table another has
just created. A commit that loses a race with another writer is retried: every write here is
either a predicate overwrite or an append that did not commit, so repeating it is safe.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from semsearch.core.filters import sql_literal
from semsearch.storage.schemas import PARTITION_COLUMN

log = logging.getLogger(__name__)


def partition_predicate(day: date) -> str:
    return f"{PARTITION_COLUMN} = {sql_literal(day.isoformat())}"


# Concurrent commits to one table conflict only when they touch the same files; the loser is
# told so and its write can simply be made again on top of the winner's.
_retry_lost_commit_race = retry(
    retry=retry_if_exception_type(CommitFailedError),
    wait=wait_random_exponential(multiplier=0.05, max=2),
    stop=stop_after_attempt(8),
    before_sleep=before_sleep_log(log, logging.WARNING),
    reraise=True,
)


class DeltaTables:
    """The project's Delta tables, one sub-folder each under `root`."""

    def __init__(self, root: str | Path, storage_options: dict[str, str] | None = None):
        self.root = str(root)
        self.storage_options = storage_options or None
        if "://" not in self.root:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def uri(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(name), storage_options=self.storage_options)

    def table(self, name: str) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri(name), storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def version(self, name: str) -> int | None:
        table = self.table(name)
        return None if table is None else table.version()

    def ensure(self, name: str, schema: pa.Schema, partitioned: bool) -> None:
        """Create the table, empty, unless it exists; safe when several processes race to."""
        if self.exists(name):
            return
        try:
            DeltaTable.create(
                self.uri(name),
                schema,
                mode="ignore",
                partition_by=[PARTITION_COLUMN] if partitioned else None,
                storage_options=self.storage_options,
            )
        except CommitFailedError:
            # Another process committed version 0 between our check and our commit.
            if not self.exists(name):
                raise

    @_retry_lost_commit_race
    def replace(
        self, name: str, data: pa.Table, predicate: str, schema: pa.Schema, partitioned: bool
    ) -> None:
        """Replace the rows matching `predicate` with `data`, atomically."""
        self.ensure(name, schema, partitioned)
        write_deltalake(
            self.uri(name),
            data.select(schema.names).cast(schema),
            mode="overwrite",
            predicate=predicate,
            storage_options=self.storage_options,
        )

    def replace_partition(self, name: str, day: date, data: pa.Table, schema: pa.Schema) -> None:
        self.replace(name, data, partition_predicate(day), schema, partitioned=True)

    @_retry_lost_commit_race
    def append(self, name: str, data: pa.Table, schema: pa.Schema, partitioned: bool) -> None:
        self.ensure(name, schema, partitioned)
        if data.num_rows == 0:
            return
        write_deltalake(
            self.uri(name),
            data.select(schema.names).cast(schema),
            mode="append",
            storage_options=self.storage_options,
        )

    def delete(self, name: str, predicate: str) -> int:
        table = self.table(name)
        if table is None:
            return 0
        return int(table.delete(predicate).get("num_deleted_rows", 0))

    def scan(self, name: str, schema: pa.Schema, version: int | None = None) -> pl.LazyFrame:
        """A lazy scan of the table (at `version`, default the latest), or an empty frame of its
        schema if it does not exist yet."""
        if not self.exists(name):
            return pl.from_arrow(schema.empty_table()).lazy()
        return pl.scan_delta(self.uri(name), version=version, storage_options=self.storage_options)

    def count_rows(self, name: str, schema: pa.Schema) -> int:
        return self.scan(name, schema).select(pl.len()).collect().item()

    def read_partition(self, name: str, day: date, schema: pa.Schema) -> pl.DataFrame:
        return self.read_days(name, day, day, schema)

    def read_days(self, name: str, first: date, last: date, schema: pa.Schema) -> pl.DataFrame:
        column = pl.col(PARTITION_COLUMN)
        return self.scan(name, schema).filter((column >= first) & (column <= last)).collect()
