"""Stage 0: landing files parsed once into the bronze table."""

from pathlib import Path

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semsearch.defs.metadata import ROW_COUNT, StageTimer, markdown_table
from semsearch.defs.partitions import INGEST, table_metadata
from semsearch.defs.resources import PipelineResource, StorageResource
from semsearch.storage import bronze
from semsearch.storage.schemas import BRONZE_TABLE

# Bump when the stage writes something else for the same input, so the UI marks it stale.
CODE_VERSION = "1"


@asset(
    code_version=CODE_VERSION,
    group_name=INGEST,
    kinds={"deltalake", "polars"},
    description="Every new or changed landing file (JSONL, CSV, Parquet), parsed once into a "
    "bronze Delta table partitioned by day; bad records go to `rejected_records` with file, row "
    "and reason, and a file that cannot be parsed is reported without stopping the others.",
)
def bronze_documents(
    context: AssetExecutionContext, storage: StorageResource, pipeline: PipelineResource
) -> MaterializeResult:
    timer = StageTimer()
    parser = pipeline.record_parser()
    with timer.step("ingest"):
        report = bronze.ingest_landing(Path(storage.landing_dir), storage.tables(), parser)
    unparseable = [f.path for f in report.files if f.status == "unparseable"]
    if unparseable:
        context.log.warning("unparseable landing files: %s", ", ".join(unparseable))
    return MaterializeResult(
        metadata={
            "files_loaded": len(report.files) - len(unparseable),
            "files_unchanged": report.unchanged,
            "files_unparseable": MetadataValue.json(unparseable),
            "rows_loaded": report.rows_loaded,
            ROW_COUNT: MetadataValue.int(report.rows_loaded),
            "rows_rejected": report.rows_rejected,
            "days_touched": MetadataValue.json(sorted(d.isoformat() for d in report.days)),
            "files": markdown_table(
                [(f.path, f.status, f.rows_loaded, f.rows_rejected) for f in report.files],
                ["file", "status", "rows", "rejected"],
            ),
            **table_metadata(storage, BRONZE_TABLE),
            **timer.metadata(),
        }
    )
