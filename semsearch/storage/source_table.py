"""An upstream Delta table (e.g. an existing tickets table) as a second source of documents.

The table is read at a version; the days its changes touch since the version last landed are
found from the files the versions add and remove, and exactly those days of the source's rows
in bronze are replaced. Its rows are parsed by the same `RecordParser` as landing files (column
mapping, rejection reasons), so the rest of the pipeline cannot tell the sources apart.
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


def changed_days(uri: str, since: int | None, until: int, created_at: str) -> set[date]:
    """Days of the rows in files added (at `until`) or removed (since `since`) between them."""
    changes = file_changes(uri, since, until)
    rows = read_files(uri, until, changes.added, [created_at])
    if since is not None and changes.removed:
        rows = pl.concat([rows, read_files(uri, since, changes.removed, [created_at])])
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


def _parse(
    records: list[dict], parser: RecordParser, committed: datetime
) -> tuple[list[dict], list[dict]]:
    documents, rejected = [], []
    seen: set[str] = set()
    for row, record in enumerate(records, start=1):
        try:
            document = parser.parse(record, committed)
            if document["doc_id"] in seen:
                raise RecordRejected(f"duplicate id {document['doc_id']!r}")
        except RecordRejected as exc:
            rejected.append({"source_row": row, "reason": str(exc), "raw": str(record)[:1000]})
            continue
        seen.add(document["doc_id"])
        documents.append(document | {"source_row": row})
    return documents, rejected


def _table(rows: list[dict], name: str, now: datetime, schema: pa.Schema, stamp: str) -> pa.Table:
    rows = [row | {"source_file": name, stamp: now} for row in rows]
    return pa.table({c: [r.get(c) for r in rows] for c in schema.names}, schema=schema)


def ingest_source_table(uri: str, tables: DeltaTables, parser: RecordParser) -> SourceReport:
    """Land the source's changes since its last landed version into bronze, day by day."""
    name, version = source_name(uri), table_version(uri)
    previous = landed_version(tables, name)
    report = SourceReport(name, version, previous)
    if version is None or version == previous:
        return report
    report.days = changed_days(uri, previous, version, parser.mapping.created_at)
    source = DeltaTable(uri, version=version)
    committed = datetime.fromtimestamp(source.history(1)[0]["timestamp"] / 1000, UTC)
    records = pl.scan_delta(uri, version=version).collect().to_dicts()
    documents, rejected = _parse(records, parser, committed)
    now = datetime.now(UTC)
    todays = [d for d in documents if d["partition_date"] in report.days]
    if report.days:
        days = ", ".join(sql_literal(d.isoformat()) for d in sorted(report.days))
        predicate = f"source_file = {sql_literal(name)} AND partition_date IN ({days})"
        table = _table(todays, name, now, DOCUMENTS, "ingested_at")
        tables.replace(BRONZE_TABLE, table, predicate, DOCUMENTS, partitioned=True)
    # The whole version was parsed, so its rejections replace the source's earlier ones.
    rejections = _table(rejected, name, now, REJECTED_RECORDS, "rejected_at")
    own = f"source_file = {sql_literal(name)}"
    tables.replace(REJECTED_TABLE, rejections, own, REJECTED_RECORDS, partitioned=False)
    report.rows_loaded, report.rows_rejected = len(documents), len(rejected)
    _record_version(tables, name, version, committed, report, now)
    log.info("landed %s v%s: %d days, %d rejected", name, version, len(report.days), len(rejected))
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
