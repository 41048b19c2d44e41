"""Land source files once into the bronze Delta table, so each day's run reads one partition.

A file is identified by its path and content hash: an unchanged file is never read twice, a
changed file replaces exactly its own rows, and a file that cannot be parsed is recorded (in
`landed_files` and `rejected_records`) without stopping the others.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
from deltalake.exceptions import DeltaError

from semsearch.core.filters import sql_literal
from semsearch.core.ingest import (
    RecordParser,
    UnparseableFileError,
    is_landing_file,
    landing_skip_reason,
    parse_file,
)
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import (
    BRONZE_TABLE,
    DOCUMENTS,
    LANDED_FILES,
    LANDED_TABLE,
    PARTITION_COLUMN,
    REJECTED_RECORDS,
    REJECTED_TABLE,
)

log = logging.getLogger(__name__)


@dataclass
class FileReport:
    path: str
    status: str
    rows_loaded: int = 0
    rows_rejected: int = 0
    days: set[date] = field(default_factory=set)
    error: str | None = None


@dataclass
class IngestReport:
    files: list[FileReport] = field(default_factory=list)
    unchanged: int = 0

    @property
    def days(self) -> set[date]:
        return set().union(*(f.days for f in self.files)) if self.files else set()

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files)


def landing_fingerprint(path: Path, landing_dir: Path) -> str:
    """What identifies a landing file's content: its bytes' hash, or for a refused symlink its
    target (never read)."""
    reason = landing_skip_reason(path, landing_dir)
    if reason and path.is_symlink():
        return hashlib.sha256(f"link:{path.resolve()}".encode()).hexdigest()
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def landing_files(landing_dir: Path) -> list[Path]:
    if not landing_dir.exists():
        return []
    return sorted(p for p in landing_dir.rglob("*") if is_landing_file(p))


def _landed_hashes(tables: DeltaTables) -> dict[str, str]:
    landed = tables.scan(LANDED_TABLE, LANDED_FILES).select("path", "sha256").collect()
    return dict(zip(landed["path"].to_list(), landed["sha256"].to_list(), strict=True))


def ingest_landing(landing_dir: Path, tables: DeltaTables, parser: RecordParser) -> IngestReport:
    """Load every new or changed file under `landing_dir` into bronze."""
    report = IngestReport()
    landed = _landed_hashes(tables)
    for path in landing_files(landing_dir):
        relative = path.relative_to(landing_dir).as_posix()
        sha = landing_fingerprint(path, landing_dir)
        if landed.get(relative) == sha:
            report.unchanged += 1
            continue
        reason = landing_skip_reason(path, landing_dir)
        if reason:
            report.files.append(_skip_file(path, relative, sha, reason, tables))
        else:
            report.files.append(_ingest_file(path, relative, sha, tables, parser))
    return report


def _skip_file(path: Path, relative: str, sha: str, reason: str, tables: DeltaTables) -> FileReport:
    """Record why a file is not read, in landed_files and rejected_records, so a user finds it."""
    log.warning("landing file %s %s", relative, reason)
    now = datetime.now(UTC)
    row = [{"source_row": None, "reason": reason, "raw": None}]
    tables.replace(
        REJECTED_TABLE,
        _with_source(row, relative, now, REJECTED_RECORDS, "rejected_at"),
        f"source_file = {sql_literal(relative)}",
        REJECTED_RECORDS,
        partitioned=False,
    )
    result = FileReport(path=relative, status="skipped", rows_rejected=1, error=reason)
    _record_landed(tables, path, relative, sha, result, now)
    return result


def _ingest_file(
    path: Path, relative: str, sha: str, tables: DeltaTables, parser: RecordParser
) -> FileReport:
    now = datetime.now(UTC)
    file_filter = f"source_file = {sql_literal(relative)}"
    # Days the file's earlier version fed must be re-run too: its rows there are replaced.
    earlier_days = _days_of_file(tables, relative)
    result = FileReport(path=relative, status="loaded", days=set(earlier_days))
    try:
        first = True
        for batch in parse_file(path, parser):
            documents = _with_source(batch.documents, relative, now, DOCUMENTS)
            rejected = _with_source(batch.rejected, relative, now, REJECTED_RECORDS, "rejected_at")
            if first:  # the file's earlier rows, if any, are replaced by this load
                tables.replace(BRONZE_TABLE, documents, file_filter, DOCUMENTS, partitioned=True)
                tables.replace(
                    REJECTED_TABLE, rejected, file_filter, REJECTED_RECORDS, partitioned=False
                )
                first = False
            else:
                tables.append(BRONZE_TABLE, documents, DOCUMENTS, partitioned=True)
                tables.append(REJECTED_TABLE, rejected, REJECTED_RECORDS, partitioned=False)
            result.rows_loaded += documents.num_rows
            result.rows_rejected += rejected.num_rows
            result.days.update(d["partition_date"] for d in batch.documents)
    except (UnparseableFileError, OSError) as exc:
        log.warning("cannot parse landing file %s: %s", relative, exc)
        result = FileReport(
            path=relative, status="unparseable", error=str(exc), rows_rejected=1, days=earlier_days
        )
        whole_file = [{"source_row": None, "reason": f"unparseable file: {exc}", "raw": None}]
        tables.delete(BRONZE_TABLE, file_filter)
        tables.replace(
            REJECTED_TABLE,
            _with_source(whole_file, relative, now, REJECTED_RECORDS, "rejected_at"),
            file_filter,
            REJECTED_RECORDS,
            partitioned=False,
        )
    _record_landed(tables, path, relative, sha, result, now)
    log.info("landed %s: %s rows, %s rejected", relative, result.rows_loaded, result.rows_rejected)
    return result


def _days_of_file(tables: DeltaTables, relative: str) -> set[date]:
    days = (
        tables.scan(BRONZE_TABLE, DOCUMENTS)
        .filter(pl.col("source_file") == relative)
        .select("partition_date")
        .unique()
        .collect()
    )
    return set(days["partition_date"].to_list())


def _with_source(
    rows: list[dict], relative: str, now: datetime, schema: pa.Schema, stamp: str = "ingested_at"
) -> pa.Table:
    for row in rows:
        row["source_file"] = relative
        row[stamp] = now
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.table(columns, schema=schema)


def _record_landed(
    tables: DeltaTables, path: Path, relative: str, sha: str, result: FileReport, now: datetime
) -> None:
    stat = path.stat()
    row = pa.table(
        {
            "path": [relative],
            "size_bytes": [stat.st_size],
            "mtime_ns": [stat.st_mtime_ns],
            "sha256": [sha],
            "status": [result.status],
            "error": [result.error],
            "rows_loaded": [result.rows_loaded],
            "rows_rejected": [result.rows_rejected],
            "ingested_at": [now],
        },
        schema=LANDED_FILES,
    )
    tables.replace(
        LANDED_TABLE, row, f"path = {sql_literal(relative)}", LANDED_FILES, partitioned=False
    )


# The order in which versions of a document landed: the last one is the document.
LANDING_ORDER = ("ingested_at", "source_file", "source_row")


def read_day(tables: DeltaTables, day: date) -> pl.DataFrame:
    """The day's documents, one row per doc id: the most recently landed version wins.

    That holds across days too: a document landed again with another date has moved there,
    and this day no longer holds it (else it would be indexed and themed twice).
    """
    latest = (
        tables.read_partition(BRONZE_TABLE, day, DOCUMENTS)
        .sort(LANDING_ORDER, descending=True)
        .unique(subset=["doc_id"], keep="first", maintain_order=True)
    )
    moved = _landed_later_on_other_days(tables, day, latest)
    return latest.filter(~pl.col("doc_id").is_in(moved)).sort("doc_id")


def _landed_later_on_other_days(tables: DeltaTables, day: date, docs: pl.DataFrame) -> list[str]:
    if docs.is_empty():
        return []
    other_days = pl.col(PARTITION_COLUMN) != day
    elsewhere = (
        _versions_of(tables, docs.lazy().select("doc_id"))
        .filter(other_days)
        .select("doc_id", *LANDING_ORDER)
        .collect()
    )
    pairs = docs.select("doc_id", *LANDING_ORDER).join(elsewhere, on="doc_id", suffix="_there")
    return pairs.filter(_landed_after(LANDING_ORDER, "_there"))["doc_id"].unique().to_list()


def _landed_after(columns: tuple[str, ...], suffix: str) -> pl.Expr:
    """Rows whose `<column><suffix>` values come after their `<column>` values, in order."""
    later = pl.lit(False)
    for column in reversed(columns):
        there, here = pl.col(column + suffix), pl.col(column)
        later = (there > here) | ((there == here) & later)
    return later


def days_sharing_documents(
    tables: DeltaTables, days: set[date], since_version: int | None = None
) -> set[date]:
    """Other days holding a version of a document that `days` hold now or held at
    `since_version`: when a document moves between days, both days change."""
    if not days:
        return set()
    on_days = pl.col(PARTITION_COLUMN).is_in(sorted(days))
    ids = [tables.scan(BRONZE_TABLE, DOCUMENTS).filter(on_days).select("doc_id")]
    if since_version is not None:
        try:
            before = tables.scan(BRONZE_TABLE, DOCUMENTS, since_version).filter(on_days)
            ids.append(before.select("doc_id").collect().lazy())
        except DeltaError as error:  # that version's log is cleaned up: only what is there now
            log.warning("bronze version %s is gone (%s)", since_version, error)
    versions = _versions_of(tables, pl.concat(ids).unique()).filter(~on_days)
    other_days = versions.select(PARTITION_COLUMN).unique().collect()
    return set(other_days[PARTITION_COLUMN].to_list())


def _versions_of(tables: DeltaTables, ids: pl.LazyFrame) -> pl.LazyFrame:
    """Every bronze row, on any day, of the documents whose `doc_id`s `ids` holds."""
    return tables.scan(BRONZE_TABLE, DOCUMENTS).join(ids, on="doc_id", how="semi")


def rejection_reasons(tables: DeltaTables, source_files: list[str], top: int) -> list[tuple]:
    """The most frequent reasons records of `source_files` were rejected: (reason, count)."""
    rejected = tables.scan(REJECTED_TABLE, REJECTED_RECORDS)
    counts = rejected.filter(pl.col("source_file").is_in(source_files)).group_by("reason").len()
    return counts.sort(["len", "reason"], descending=[True, False]).head(top).collect().rows()


def rejected_count(tables: DeltaTables, source_files: list[str]) -> int:
    if not source_files:
        return 0
    rejected = tables.scan(REJECTED_TABLE, REJECTED_RECORDS)
    return (
        rejected.filter(pl.col("source_file").is_in(source_files)).select(pl.len()).collect().item()
    )
