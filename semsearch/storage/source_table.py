"""An upstream Delta table (e.g. an existing tickets table) as a second source of documents.

The table is read at a version; the days its changes touch since the version last landed are
found from the files the versions add and remove, and exactly those days of the source's rows
in bronze are replaced. Its rows are parsed by the same `RecordParser` as landing files (column
mapping, rejection reasons), so the rest of the pipeline cannot tell the sources apart.

The table may live on object storage: `storage_options` are delta-rs's (credentials usually
come from the process environment, as delta-rs reads AWS_*, AZURE_* and GOOGLE_* itself).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from semsearch.core.filters import sql_literal
from semsearch.core.ingest import RecordParser, RecordRejected, parse_created_at
from semsearch.storage.delta import DeltaTables
from semsearch.storage.history import file_changes, read_files, table_version
from semsearch.storage.schemas import (
    BRONZE_TABLE,
    DOCUMENTS,
    LANDED_FILES,
    LANDED_TABLE,
    REJECTED_RECORDS,
    REJECTED_TABLE,
)

log = logging.getLogger(__name__)

PREFIX = "delta:"
VERSION_PREFIX = "v"


def source_name(uri: str) -> str:
    """How the source appears in `source_file` and `landed_files`: delta:<table folder>."""
    return PREFIX + uri.rstrip("/").rsplit("/", 1)[-1]


def landed_version(tables: DeltaTables, name: str) -> int | None:
    """The source version bronze holds, from the `landed_files` manifest."""
    row = (
        tables.scan(LANDED_TABLE, LANDED_FILES)
        .filter(pl.col("path") == name)
        .select("sha256")
        .collect()
    )
    if row.height == 0:
        return None
    return int(row["sha256"][0].removeprefix(VERSION_PREFIX))


def _day_of(value: object) -> date | None:
    try:
        return parse_created_at(value).date() if value not in (None, "") else None
    except RecordRejected:
        return None


def changed_days(
    uri: str,
    since: int | None,
    until: int,
    created_at: str,
    storage_options: dict[str, str] | None = None,
) -> set[date]:
    """Days of the rows in files added (at `until`) or removed (since `since`) between them."""
    changes = file_changes(uri, since, until, storage_options)
    rows = read_files(uri, until, changes.added, [created_at], storage_options)
    if since is not None and changes.removed:
        removed = read_files(uri, since, changes.removed, [created_at], storage_options)
        rows = pl.concat([rows, removed])
    if rows.is_empty():
        return set()
    return {d for d in map(_day_of, rows[created_at].to_list()) if d is not None}


@dataclass
class SourceReport:
    name: str
    version: int | None
    previous: int | None
    days: set[date] = field(default_factory=set)
    rows_loaded: int = 0
    rows_rejected: int = 0


BATCH_ROWS = 10_000  # source rows parsed at a time: memory follows the touched days, not the table


@dataclass
class _Parsed:
    """The touched days' documents and every rejection of one source version."""

    days: set[date]
    documents: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    loaded: int = 0
    seen: set[str] = field(default_factory=set)

    def add(self, row: int, record: dict, parser: RecordParser, committed: datetime) -> None:
        try:
            document = parser.parse(record, committed)
            if document["doc_id"] in self.seen:
                raise RecordRejected(f"duplicate id {document['doc_id']!r}")
        except RecordRejected as exc:
            self.rejected.append({"source_row": row, "reason": str(exc), "raw": str(record)[:1000]})
            return
        self.seen.add(document["doc_id"])
        self.loaded += 1
        if document["partition_date"] in self.days:
            self.documents.append(document | {"source_row": row})


def _parse(
    source: DeltaTable, parser: RecordParser, committed: datetime, days: set[date]
) -> _Parsed:
    """Every row is parsed (its rejections and duplicate ids count whatever its day), streamed in
    batches; only the touched days' documents are kept."""
    parsed = _Parsed(days)
    row = 0
    for batch in source.to_pyarrow_dataset().to_batches(batch_size=BATCH_ROWS):
        for record in batch.to_pylist():
            row += 1
            parsed.add(row, record, parser, committed)
    return parsed


def _table(rows: list[dict], name: str, now: datetime, schema: pa.Schema, stamp: str) -> pa.Table:
    rows = [row | {"source_file": name, stamp: now} for row in rows]
    return pa.table({c: [r.get(c) for r in rows] for c in schema.names}, schema=schema)


def ingest_source_table(
    uri: str,
    tables: DeltaTables,
    parser: RecordParser,
    storage_options: dict[str, str] | None = None,
) -> SourceReport:
    """Land the source's changes since its last landed version into bronze, day by day."""
    name, version = source_name(uri), table_version(uri, storage_options)
    previous = landed_version(tables, name)
    report = SourceReport(name, version, previous)
    if version is None or version == previous:
        return report
    created_at = parser.mapping.created_at
    report.days = changed_days(uri, previous, version, created_at, storage_options)
    source = DeltaTable(uri, version=version, storage_options=storage_options)
    committed = datetime.fromtimestamp(source.history(1)[0]["timestamp"] / 1000, UTC)
    parsed = _parse(source, parser, committed, report.days)
    now = datetime.now(UTC)
    if report.days:
        days = ", ".join(sql_literal(d.isoformat()) for d in sorted(report.days))
        predicate = f"source_file = {sql_literal(name)} AND partition_date IN ({days})"
        table = _table(parsed.documents, name, now, DOCUMENTS, "ingested_at")
        tables.replace(BRONZE_TABLE, table, predicate, DOCUMENTS, partitioned=True)
    # The whole version was parsed, so its rejections replace the source's earlier ones.
    rejections = _table(parsed.rejected, name, now, REJECTED_RECORDS, "rejected_at")
    own = f"source_file = {sql_literal(name)}"
    tables.replace(REJECTED_TABLE, rejections, own, REJECTED_RECORDS, partitioned=False)
    report.rows_loaded, report.rows_rejected = parsed.loaded, len(parsed.rejected)
    _record_version(tables, name, version, committed, report, now)
    log.info(
        "landed %s v%s: %d days, %d rejected", name, version, len(report.days), len(parsed.rejected)
    )
    return report


def _record_version(
    tables: DeltaTables,
    name: str,
    version: int,
    committed: datetime,
    report: SourceReport,
    now: datetime,
) -> None:
    row = {
        "path": name,
        "size_bytes": report.rows_loaded + report.rows_rejected,
        "mtime_ns": int(committed.timestamp() * 1e9),
        "sha256": f"{VERSION_PREFIX}{version}",
        "status": "loaded",
        "error": None,
        "rows_loaded": report.rows_loaded,
        "rows_rejected": report.rows_rejected,
        "ingested_at": now,
    }
    table = pa.table({c: [row[c]] for c in LANDED_FILES.names}, schema=LANDED_FILES)
    tables.replace(
        LANDED_TABLE, table, f"path = {sql_literal(name)}", LANDED_FILES, partitioned=False
    )
