"""Stage 1: one day's documents from bronze, one row per document id."""

from collections.abc import Sequence

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
)
from dagster_pyspark import PySparkResource

from semsearch.defs.metadata import StageTimer, preview, table_rows
from semsearch.defs.partitions import daily_asset, engine_kinds, partition_day, table_metadata
from semsearch.defs.resources import StorageResource
from semsearch.spark.documents import DocumentsDay, documents_day
from semsearch.storage import bronze
from semsearch.storage.schemas import BRONZE_TABLE, DOCUMENTS, RAW_TABLE

# Bump when the stage writes something else for the same input, so the UI marks it stale.
CODE_VERSION = "1"


def build_raw_documents(
    partitions: DailyPartitionsDefinition,
    sources: Sequence[AssetsDefinition] = (),
    engine: str = "local",
) -> AssetsDefinition:
    """`sources`: other assets landing into bronze (e.g. an upstream Delta table)."""
    decorate = daily_asset(
        name=RAW_TABLE,
        code_version=CODE_VERSION,
        partitions_def=partitions,
        deps=[BRONZE_TABLE, *sources],
        kinds=engine_kinds(engine, {"deltalake"}),
        description="One day's documents (by created_at, UTC), one row per doc id; the most "
        "recently landed version of a document wins.",
    )
    if engine == "spark":

        @decorate
        def raw_documents_on_spark(
            context: AssetExecutionContext, storage: StorageResource, spark: PySparkResource
        ) -> MaterializeResult:
            return _raw_documents(context, storage, spark.spark_session)

        return raw_documents_on_spark

    @decorate
    def raw_documents(
        context: AssetExecutionContext, storage: StorageResource
    ) -> MaterializeResult:
        return _raw_documents(context, storage, None)

    return raw_documents


def _raw_documents(context, storage, session) -> MaterializeResult:
    """`session`: the Spark session on the spark engine, None on local."""
    day, tables, timer = partition_day(context), storage.tables(), StageTimer()
    if session is not None:
        with timer.step("spark_job"):
            done = documents_day(session, tables, day)
    else:
        done = _documents_locally(tables, day, timer)
    return MaterializeResult(
        metadata={
            **table_rows(done.rows, DOCUMENTS),
            "engine": "local" if session is None else "spark",
            "rejected_in_source_files": done.rejected_in_source_files,
            "source_files": MetadataValue.json(done.source_files),
            "preview": preview(done.preview, ["doc_id", "created_at", "title", "text"]),
            **table_metadata(storage, RAW_TABLE),
            **timer.metadata(),
        }
    )


def _documents_locally(tables, day, timer: StageTimer) -> DocumentsDay:
    with timer.step("read"):
        documents = bronze.read_day(tables, day)
    with timer.step("write"):
        tables.replace_partition(RAW_TABLE, day, documents.to_arrow(), DOCUMENTS)
    files = sorted(documents["source_file"].unique().to_list())
    return DocumentsDay(
        rows=documents.height,
        source_files=files,
        rejected_in_source_files=bronze.rejected_count(tables, files),
        preview=documents.head(5),
    )
