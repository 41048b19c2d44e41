"""The upstream Delta table source (SEMSEARCH_SOURCE_TABLE_URI), landed into bronze."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset
from dagster_deltalake import DeltaTableResource

from semsearch.defs.metadata import StageTimer
from semsearch.defs.resources import PipelineResource, StorageResource, source_storage_options
from semsearch.storage.schemas import BRONZE_TABLE
from semsearch.storage.source_table import ingest_source_table

SOURCE_ASSET = AssetKey("source_table_documents")


def build_source_asset(uri: str):
    """The asset landing the source table's changed days into bronze (only when configured).

    `uri` names the table in the UI; the run reads it through the `source_table` resource.
    """

    @asset(
        key=SOURCE_ASSET,
        group_name="ingest",
        kinds={"deltalake", "polars"},
        description="Rows of the upstream Delta table, landed into the bronze table for exactly "
        "the days its commits since the last landed version touched (found from the files the "
        "commits added and removed).",
        metadata={"source": MetadataValue.path(uri)},
    )
    def source_table_documents(
        context: AssetExecutionContext,
        storage: StorageResource,
        pipeline: PipelineResource,
        source_table: DeltaTableResource,
    ) -> MaterializeResult:
        timer = StageTimer()
        parser = pipeline.record_parser()
        options = source_storage_options(source_table)
        with timer.step("ingest"):
            report = ingest_source_table(source_table.url, storage.tables(), parser, options)
        if report.version == report.previous:
            context.log.info("source %s unchanged at version %s", report.name, report.version)
        return MaterializeResult(
            metadata={
                "source_version": report.version if report.version is not None else -1,
                "previous_version": report.previous if report.previous is not None else -1,
                "days_touched": MetadataValue.json(sorted(d.isoformat() for d in report.days)),
                "rows_loaded": report.rows_loaded,
                "rows_rejected": report.rows_rejected,
                "table": MetadataValue.path(str(storage.tables().uri(BRONZE_TABLE))),
                **timer.metadata(),
            }
        )

    return source_table_documents
