"""Stage 2: documents cut into chunks with the embedding model's own tokenizer."""

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MaterializeResult,
)
from dagster_pyspark import PySparkResource

from semsearch.core.chunking import chunk_documents, effective_spec
from semsearch.defs.metadata import StageTimer, histogram_of_counts, preview, table_rows
from semsearch.defs.partitions import daily_asset, engine_kinds, partition_day, table_metadata
from semsearch.defs.resources import EmbeddingResource, PipelineResource, StorageResource
from semsearch.spark.jobs import BackendSpec, ChunkedDay, chunk_day
from semsearch.storage.schemas import CHUNKS, CHUNKS_TABLE, DOCUMENTS, RAW_TABLE

# Bump when the stage writes something else for the same input, so the UI marks it stale.
CODE_VERSION = "1"


def build_chunks(partitions: DailyPartitionsDefinition, engine: str = "local") -> AssetsDefinition:
    decorate = daily_asset(
        name=CHUNKS_TABLE,
        code_version=CODE_VERSION,
        partitions_def=partitions,
        deps=[RAW_TABLE],
        kinds=engine_kinds(engine, {"deltalake"}),
        description="Documents cut into chunks with the embedding model's own tokenizer, at "
        "paragraph and sentence boundaries, never over the model's input limit.",
    )
    if engine == "spark":

        @decorate
        def chunks_on_spark(
            context: AssetExecutionContext,
            storage: StorageResource,
            pipeline: PipelineResource,
            embedder: EmbeddingResource,
            spark: PySparkResource,
        ) -> MaterializeResult:
            return _chunks(context, storage, pipeline, embedder, spark.spark_session)

        return chunks_on_spark

    @decorate
    def chunks(
        context: AssetExecutionContext,
        storage: StorageResource,
        pipeline: PipelineResource,
        embedder: EmbeddingResource,
    ) -> MaterializeResult:
        return _chunks(context, storage, pipeline, embedder, None)

    return chunks


def _chunks(context, storage, pipeline, embedder, session) -> MaterializeResult:
    """`session`: the Spark session on the spark engine, None on local."""
    day, tables, timer = partition_day(context), storage.tables(), StageTimer()
    with timer.step("chunk"):
        if session is not None:
            spec = BackendSpec(embedder.backend_settings(), embedder.api_key())
            done, used = chunk_day(session, tables, day, pipeline.chunk_spec(), spec)
        else:
            done, used = _chunk_locally(tables, day, pipeline, embedder)
    return MaterializeResult(
        metadata={
            **table_rows(done.rows, CHUNKS),
            "engine": "local" if session is None else "spark",
            "token_count_distribution": histogram_of_counts(done.token_counts, 10, "tokens"),
            "documents": done.documents,
            "chunk_size_tokens": used.size,
            "chunk_overlap_tokens": used.overlap,
            "tokens_max": done.tokens_max,
            "tokens_mean": done.tokens_mean,
            "preview": preview(
                done.preview, ["chunk_id", "doc_id", "position", "token_count", "text"]
            ),
            **table_metadata(storage, CHUNKS_TABLE),
            **timer.metadata(),
        }
    )


def _chunk_locally(tables, day, pipeline: PipelineResource, embedder: EmbeddingResource):
    backend = embedder.get_backend()
    spec = effective_spec(pipeline.chunk_spec(), backend.max_input_tokens)
    documents = tables.read_partition(RAW_TABLE, day, DOCUMENTS)
    rows = chunk_documents(documents.iter_rows(named=True), spec, backend)
    frame = pl.DataFrame(rows, schema=pl.Schema(pl.from_arrow(CHUNKS.empty_table()).schema))
    frame = frame.with_columns(pl.lit(day).alias("partition_date"))
    tables.replace_partition(CHUNKS_TABLE, day, frame.to_arrow(), CHUNKS)
    tokens = frame["token_count"]
    chunked = ChunkedDay(
        documents=documents.height,
        rows=frame.height,
        token_counts=tokens.value_counts() if frame.height else None,
        tokens_max=int(tokens.max() or 0),
        tokens_mean=round(float(tokens.mean() or 0), 1),
        preview=frame.head(5),
    )
    return chunked, spec
