"""Stage 1: one day's documents from bronze, one row per document id."""

from collections.abc import Sequence

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
)

from semsearch.defs.metadata import StageTimer, preview, table_rows
from semsearch.defs.partitions import daily_asset, partition_day, table_metadata
from semsearch.defs.resources import StorageResource
from semsearch.storage import bronze
from semsearch.storage.schemas import BRONZE_TABLE, DOCUMENTS, RAW_TABLE

# Bump when the stage writes something else for the same input, so the UI marks it stale.
CODE_VERSION = "1"


def build_raw_documents(
    partitions: DailyPartitionsDefinition, sources: Sequence[AssetsDefinition] = ()
) -> AssetsDefinition:
    """`sources`: other assets landing into bronze (e.g. an upstream Delta table)."""

    @daily_asset(
        name=RAW_TABLE,
        code_version=CODE_VERSION,
        partitions_def=partitions,
        deps=[BRONZE_TABLE, *sources],
        kinds={"deltalake", "polars"},
        description="One day's documents (by created_at, UTC), one row per doc id; the most "
        "recently landed version of a document wins.",
    )
    def raw_documents(
        context: AssetExecutionContext, storage: StorageResource
    ) -> MaterializeResult:
        day, tables, timer = partition_day(context), storage.tables(), StageTimer()
        with timer.step("read"):
            documents = bronze.read_day(tables, day)
        with timer.step("write"):
            tables.replace_partition(RAW_TABLE, day, documents.to_arrow(), DOCUMENTS)
        files = documents["source_file"].unique().to_list()
        rejected = bronze.rejected_count(tables, files)
        return MaterializeResult(
            metadata={
                **table_rows(documents.height, DOCUMENTS),
                "rejected_in_source_files": rejected,
                "source_files": MetadataValue.json(sorted(files)),
                "preview": preview(documents, ["doc_id", "created_at", "title", "text"]),
                **table_metadata(storage, RAW_TABLE),
                **timer.metadata(),
            }
        )

    return raw_documents
