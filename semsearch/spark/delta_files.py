"""Delta without delta-spark: executors write Parquet parts, the driver commits their actions.

`write_parts` runs on the executors (inside `mapInArrow`): each task streams its rows into one
new Parquet file under the table's folder (`partition_date=<day>/part-<uuid>.parquet`) and
returns one small row describing it: path, size, row count and Delta stats (so file skipping
works). `commit` runs on the driver and turns those rows into one Delta transaction through
deltalake's `create_write_transaction`: the day's replace (`overwrite` with the day's partition
filter) or an append. A file a failed or killed task wrote is in no commit, so it is never part
of the table (storage maintenance vacuums it).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import PARTITION_COLUMN

log = logging.getLogger(__name__)

# The schema of the rows `write_parts` returns (Spark DDL).
PART_SCHEMA = "path string, size long, rows long, stats string"
STRING_STATS_CHARS = 32  # min/max of longer strings are left out (Delta lets stats be partial)
_STAT_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_date)


def file_uris(tables: DeltaTables, name: str, day: date | None = None) -> list[str]:
    """The data files of `name` (the day's, when given) in its current version: metadata only."""
    table = tables.table(name)
    if table is None:
        return []
    filters = [(PARTITION_COLUMN, "=", day.isoformat())] if day is not None else None
    return table.file_uris(file_pruning_predicate=filters)


def _filesystem(table_uri: str):
    from pyarrow import fs

    if "://" in table_uri:
        return fs.FileSystem.from_uri(table_uri)
    return fs.LocalFileSystem(), str(Path(table_uri).resolve())


def file_stats(table: pa.Table) -> str:
    """Delta's per-file stats JSON: numRecords, and min/max/nullCount of the simple columns."""
    mins, maxes, nulls = {}, {}, {}
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_nested(field.type):
            continue
        nulls[field.name] = column.null_count
        simple = any(check(field.type) for check in _STAT_TYPES)
        short = pa.types.is_string(field.type) and (
            column.length() == column.null_count
            or pc.max(pc.utf8_length(column)).as_py() <= STRING_STATS_CHARS
        )
        if (simple or short) and column.null_count < len(column):
            low, high = pc.min_max(column).values()
            mins[field.name], maxes[field.name] = low.as_py(), high.as_py()
    stats = {"numRecords": table.num_rows, "minValues": mins, "maxValues": maxes}
    return json.dumps(stats | {"nullCount": nulls}, default=str)


def write_parts(
    table_uri: str, schema: pa.Schema, day: date | None
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A `mapInArrow` function writing each task's rows (of `schema`) as one Parquet part."""
    data_schema = pa.schema([f for f in schema if day is None or f.name != PARTITION_COLUMN])
    folder = f"{PARTITION_COLUMN}={day.isoformat()}/" if day is not None else ""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        filesystem, root = _filesystem(table_uri)
        relative = f"{folder}part-{uuid.uuid4()}.parquet"
        path = f"{root.rstrip('/')}/{relative}"
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        writer, parts = None, []
        for batch in batches:
            if batch.num_rows == 0:
                continue
            table = pa.Table.from_batches([batch]).select(data_schema.names).cast(data_schema)
            if writer is None:
                writer = pq.ParquetWriter(path, data_schema, filesystem=filesystem)
            writer.write_table(table)
            parts.append(table.select([n for n in data_schema.names if _statable(schema, n)]))
        if writer is None:
            return
        writer.close()
        written = pa.concat_tables(parts)
        size = filesystem.get_file_info(path).size
        row = {"path": [relative], "size": [size], "rows": [written.num_rows]}
        yield pa.RecordBatch.from_pydict(row | {"stats": [file_stats(written)]})

    return write


def _statable(schema: pa.Schema, name: str) -> bool:
    return not pa.types.is_nested(schema.field(name).type)


_retry_lost_race = retry(
    retry=retry_if_exception_type(CommitFailedError),
    wait=wait_random_exponential(multiplier=0.05, max=2),
    stop=stop_after_attempt(8),
    reraise=True,
)


@_retry_lost_race
def commit(
    tables: DeltaTables,
    name: str,
    schema: pa.Schema,
    parts: list[dict],
    day: date | None,
) -> None:
    """One Delta commit of `parts`: the day's replace (`day` given) or an append (`day` None)."""
    partitioned = day is not None
    tables.ensure(name, schema, partitioned)
    now = int(time.time() * 1000)
    values = {PARTITION_COLUMN: day.isoformat()} if partitioned else {}
    actions = [AddAction(p["path"], p["size"], values, now, True, p["stats"]) for p in parts]
    table = DeltaTable(tables.uri(name), storage_options=tables.storage_options)
    if partitioned:
        table.create_write_transaction(
            actions,
            mode="overwrite",
            schema=schema,
            partition_by=[PARTITION_COLUMN],
            partition_filters=[(PARTITION_COLUMN, "=", day.isoformat())],
        )
    elif actions:
        table.create_write_transaction(actions, mode="append", schema=schema)
    log.info("committed %d files to %s", len(actions), name)
