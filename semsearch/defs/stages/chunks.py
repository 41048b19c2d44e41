"""Stage 2: documents cut into chunks with the embedding model's own tokenizer."""

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MaterializeResult,
)

from semsearch.core.chunking import chunk_documents, effective_spec
from semsearch.defs.metadata import StageTimer, histogram, preview, table_rows
from semsearch.defs.partitions import daily_asset, partition_day, table_metadata
from semsearch.defs.resources import EmbeddingResource, PipelineResource, StorageResource
from semsearch.storage.schemas import CHUNKS, CHUNKS_TABLE, DOCUMENTS, RAW_TABLE

# Bump when the stage writes something else for the same input, so the UI marks it stale.
CODE_VERSION = "1"


def build_chunks(partitions: DailyPartitionsDefinition) -> AssetsDefinition:
    @daily_asset(
        name=CHUNKS_TABLE,
        code_version=CODE_VERSION,
        partitions_def=partitions,
        deps=[RAW_TABLE],
        kinds={"deltalake", "polars"},
        description="Documents cut into chunks with the embedding model's own tokenizer, at "
        "paragraph and sentence boundaries, never over the model's input limit.",
    )
    def chunks(
        context: AssetExecutionContext,
        storage: StorageResource,
        pipeline: PipelineResource,
        embedder: EmbeddingResource,
    ) -> MaterializeResult:
        day, tables, timer = partition_day(context), storage.tables(), StageTimer()
        backend = embedder.get_backend()
        spec = effective_spec(pipeline.chunk_spec(), backend.max_input_tokens)
        documents = tables.read_partition(RAW_TABLE, day, DOCUMENTS)
        with timer.step("chunk"):
            rows = chunk_documents(documents.iter_rows(named=True), spec, backend)
        frame = pl.DataFrame(rows, schema=pl.Schema(pl.from_arrow(CHUNKS.empty_table()).schema))
        frame = frame.with_columns(pl.lit(day).alias("partition_date"))
        with timer.step("write"):
            tables.replace_partition(CHUNKS_TABLE, day, frame.to_arrow(), CHUNKS)
        tokens = frame["token_count"]
        return MaterializeResult(
            metadata={
                **table_rows(frame.height, CHUNKS),
                "token_count_distribution": histogram(tokens, 10, "tokens"),
                "documents": documents.height,
                "chunk_size_tokens": spec.size,
                "chunk_overlap_tokens": spec.overlap,
                "tokens_max": int(tokens.max() or 0),
                "tokens_mean": round(float(tokens.mean() or 0), 1),
                "preview": preview(
                    frame, ["chunk_id", "doc_id", "position", "token_count", "text"]
                ),
                **table_metadata(storage, CHUNKS_TABLE),
                **timer.metadata(),
            }
        )

    return chunks
