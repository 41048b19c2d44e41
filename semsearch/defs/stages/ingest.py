"""Stage 0: landing files parsed once into the bronze table, with the two tables beside it.

One step writes three tables, so it is one multi-asset with an asset per table: the lineage
shows where rejected records go and which files were read, each with its own row count.
"""

from collections.abc import Iterator
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from semsearch.core import quality as q
from semsearch.core.quality import Severity
from semsearch.defs.checks import check_result
from semsearch.defs.metadata import StageTimer, markdown_table, table_rows
from semsearch.defs.partitions import INGEST, table_metadata
from semsearch.defs.resources import PipelineResource, StorageResource
from semsearch.storage import bronze
from semsearch.storage.schemas import (
    BRONZE_TABLE,
    DOCUMENTS,
    LANDED_FILES,
    LANDED_TABLE,
    REJECTED_RECORDS,
    REJECTED_TABLE,
)

# Bump when the stage writes something else for the same input, so the UI marks it stale.
CODE_VERSION = "1"
REASONS = 10  # most frequent rejection reasons shown


def _spec(key: str, description: str) -> AssetSpec:
    return AssetSpec(
        key, code_version=CODE_VERSION, kinds={"deltalake", "polars"}, description=description
    )


def _check(name: str, asset: str, description: str) -> AssetCheckSpec:
    return AssetCheckSpec(name, asset=asset, description=f"[WARN] {description}")


@multi_asset(
    name="ingest_landing_files",
    group_name=INGEST,
    specs=[
        _spec(
            BRONZE_TABLE,
            "Every new or changed landing file (JSONL, CSV, Parquet), parsed once into a bronze "
            "Delta table partitioned by day; a file that cannot be parsed is reported without "
            "stopping the others.",
        ),
        _spec(
            REJECTED_TABLE,
            "Records the ingest could not accept, with file, row, reason and the raw record: no "
            "text, an unparseable or future date, wrong types, invalid UTF-8, a duplicate id, a "
            "file that cannot be parsed or is of another type.",
        ),
        _spec(
            LANDED_TABLE,
            "One row per landing file read: size, mtime, content hash, status (loaded, "
            "unparseable, skipped), rows loaded and rejected. A file is read again only when its "
            "content hash changes.",
        ),
    ],
    check_specs=[
        _check(
            "files_read",
            LANDED_TABLE,
            "Every new or changed landing file was read: none unparseable, none skipped.",
        ),
    ],
)
def ingest_landing_files(
    context: AssetExecutionContext,
    storage: StorageResource,
    pipeline: PipelineResource,
) -> Iterator[MaterializeResult | AssetCheckResult]:
    timer, tables = StageTimer(), storage.tables()
    parser = pipeline.record_parser()
    with timer.step("ingest"):
        report = bronze.ingest_landing(Path(storage.landing_dir), tables, parser)
    unparseable = [f.path for f in report.files if f.status == "unparseable"]
    if unparseable:
        context.log.warning("unparseable landing files: %s", ", ".join(unparseable))
    files = pl.DataFrame(
        [(f.path, f.status, f.error, f.rows_loaded, f.rows_rejected) for f in report.files],
        schema=["path", "status", "error", "rows_loaded", "rows_rejected"],
        orient="row",
    )
    read = [f.path for f in report.files]
    yield MaterializeResult(
        asset_key=BRONZE_TABLE,
        metadata={
            **table_rows(tables.count_rows(BRONZE_TABLE, DOCUMENTS), DOCUMENTS),
            "files_loaded": len(report.files) - len(unparseable),
            "files_unchanged": report.unchanged,
            "files_unparseable": MetadataValue.json(unparseable),
            "rows_loaded": report.rows_loaded,
            "rows_rejected": report.rows_rejected,
            "days_touched": MetadataValue.json(sorted(d.isoformat() for d in report.days)),
            **table_metadata(storage, BRONZE_TABLE),
            **timer.metadata(),
        },
    )
    yield MaterializeResult(
        asset_key=REJECTED_TABLE,
        metadata={
            **table_rows(tables.count_rows(REJECTED_TABLE, REJECTED_RECORDS), REJECTED_RECORDS),
            "rows_rejected": report.rows_rejected,
            "reasons": markdown_table(
                bronze.rejection_reasons(tables, read, REASONS), ["reason", "records"]
            ),
            **table_metadata(storage, REJECTED_TABLE),
        },
    )
    yield MaterializeResult(
        asset_key=LANDED_TABLE,
        metadata={
            **table_rows(tables.count_rows(LANDED_TABLE, LANDED_FILES), LANDED_FILES),
            "files": markdown_table(
                files.select("path", "status", "rows_loaded", "rows_rejected").rows(),
                ["file", "status", "rows", "rejected"],
            ),
            **table_metadata(storage, LANDED_TABLE),
        },
    )
    # Rejected records are checked per day (raw_documents/rejected_share, which blocks the
    # day): a check here too would alert twice for the same records.
    yield check_result(LANDED_TABLE, "files_read", Severity.WARN, q.files_read(files))
