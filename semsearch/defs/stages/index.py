"""Stage 4: the LanceDB index, one atomic replace of the day's rows per run."""

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
)

from semsearch.defs.metadata import StageTimer, table_rows
from semsearch.defs.partitions import LANCEDB_POOL, daily_asset, partition_day
from semsearch.defs.resources import PipelineResource, StorageResource
from semsearch.storage.index_rows import index_rows
from semsearch.storage.schemas import CHUNKS_TABLE, EMBEDDINGS_TABLE, RAW_TABLE, index_schema
from semsearch.storage.vector_index import WriteStats

# Bump when the stage writes something else for the same input, so the UI marks it stale.
CODE_VERSION = "1"


def build_vector_index(partitions: DailyPartitionsDefinition) -> AssetsDefinition:
    @daily_asset(
        name="vector_index",
        code_version=CODE_VERSION,
        partitions_def=partitions,
        deps=[EMBEDDINGS_TABLE, CHUNKS_TABLE, RAW_TABLE],
        pool=LANCEDB_POOL,
        kinds={"lancedb"},
        description="The LanceDB vector index (cosine): one row per chunk with text, doc id, date "
        "and metadata. A run replaces exactly its day's rows in one commit; past a size threshold "
        "an IVF-HNSW-SQ index is built and kept up to date.",
    )
    def vector_index(
        context: AssetExecutionContext, storage: StorageResource, pipeline: PipelineResource
    ) -> MaterializeResult:
        day, tables, timer = partition_day(context), storage.tables(), StageTimer()
        with timer.step("read"):
            rows, model_id, dimension = index_rows(tables, day)
        index = storage.index()
        with timer.step("write"):
            if rows is None:  # the day has no vectors (any more): it must have no index rows
                stats = WriteStats(0, 0, index.delete_partition(day), index.count_rows())
            else:
                stats = index.replace_partition(day, rows, model_id)
        with timer.step("ann_index"):
            mode = index.maintain_ann_index(pipeline.ann_params())
        return MaterializeResult(
            metadata={
                **table_rows(0 if rows is None else rows.num_rows, index_schema(dimension)),
                "index_rows_total": index.count_rows(),
                "inserted": stats.inserted,
                "updated": stats.updated,
                "deleted": stats.deleted,
                "model_id": model_id or "",
                "dimension": dimension,
                "search_mode": mode,
                "index": MetadataValue.path(f"{storage.lance_uri}/{storage.lance_table}"),
                **timer.metadata(),
            }
        )

    return vector_index
