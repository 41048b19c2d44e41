"""Delta Lake tables under one folder: per-partition replace, per-partition read.

Every write that replaces data does so in one Delta commit with a predicate naming exactly the
rows it owns, so a re-run replaces a partition (never the whole table) and a crash leaves either
the old partition or the new one.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from semsearch.storage.schemas import PARTITION_COLUMN

log = logging.getLogger(__name__)


def sql_string(value: str) -> str:
    """Quote a value as a SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def partition_predicate(day: date) -> str:
    return f"{PARTITION_COLUMN} = '{day.isoformat()}'"


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

    def replace(
        self, name: str, data: pa.Table, predicate: str, schema: pa.Schema, partitioned: bool
    ) -> None:
        """Replace the rows matching `predicate` with `data`, atomically."""
        data = data.select(schema.names).cast(schema)
        write_deltalake(
            self.uri(name),
            data,
            mode="overwrite",
            predicate=predicate if self.exists(name) else None,
            partition_by=[PARTITION_COLUMN] if partitioned else None,
            storage_options=self.storage_options,
            schema_mode=None,
        )

    def replace_partition(self, name: str, day: date, data: pa.Table, schema: pa.Schema) -> None:
        self.replace(name, data, partition_predicate(day), schema, partitioned=True)

    def append(self, name: str, data: pa.Table, schema: pa.Schema, partitioned: bool) -> None:
        if data.num_rows == 0 and self.exists(name):
            return
        write_deltalake(
            self.uri(name),
            data.select(schema.names).cast(schema),
            mode="append",
            partition_by=[PARTITION_COLUMN] if partitioned else None,
            storage_options=self.storage_options,
        )

    def delete(self, name: str, predicate: str) -> int:
        table = self.table(name)
        if table is None:
            return 0
        return int(table.delete(predicate).get("num_deleted_rows", 0))

    def scan(self, name: str, schema: pa.Schema) -> pl.LazyFrame:
        """A lazy scan of the table, or an empty frame of its schema if it does not exist yet."""
        if not self.exists(name):
            return pl.from_arrow(schema.empty_table()).lazy()
        return pl.scan_delta(self.uri(name), storage_options=self.storage_options)

    def read_partition(self, name: str, day: date, schema: pa.Schema) -> pl.DataFrame:
        return self.read_days(name, day, day, schema)

    def read_days(self, name: str, first: date, last: date, schema: pa.Schema) -> pl.DataFrame:
        column = pl.col(PARTITION_COLUMN)
        return self.scan(name, schema).filter((column >= first) & (column <= last)).collect()
