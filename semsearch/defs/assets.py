"""The pipeline's assets: landing files → documents → chunks → embeddings → index → themes.

Each asset reads its inputs from the tables, calls `core`, writes through `storage` and returns
metadata; the work itself lives in those plain modules.
"""

import warnings
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from semsearch.core.chunking import chunk_documents, effective_spec
from semsearch.core.embedding import embed_with_cache
from semsearch.core.filters import metadata_tags
from semsearch.core.ids import embedding_cache_key
from semsearch.core.openai_backend import EmbeddingConfigError
from semsearch.core.themes import OUTLIERS, find_themes
from semsearch.defs.metadata import StageTimer, markdown_table, preview
from semsearch.defs.resources import EmbeddingResource, PipelineResource, StorageResource
from semsearch.storage import bronze, themes_store
from semsearch.storage.embedding_store import (
    DeltaVectorCache,
    embeddings_table,
    read_dead_letters,
    record_dead_letters,
    vectors_from_column,
)
from semsearch.storage.schemas import (
    BRONZE_TABLE,
    CHUNKS,
    CHUNKS_TABLE,
    DEAD_LETTER_TABLE,
    DOCUMENTS,
    EMBEDDINGS,
    EMBEDDINGS_TABLE,
    RAW_TABLE,
    THEMES_TABLE,
)
from semsearch.storage.vector_index import WriteStats, index_schema

INGEST, PIPELINE = "ingest", "semsearch"

# One day per run: each day's checks are recorded for that day and block only that day, and the
# asset bodies work a day at a time. Throughput comes from concurrent runs, bounded by pools.
DAILY_BACKFILL = BackfillPolicy.multi_run(max_partitions_per_run=1)
PREVIOUS_DAY = TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
# Instance pools (limits in dagster.yaml / `dagster instance concurrency set`): embedding calls
# share a bounded pool; the LanceDB index has a single writer; UMAP runs one window at a time.
EMBEDDING_POOL = "semsearch_embedding"
LANCEDB_POOL = "semsearch_lancedb"
THEMES_POOL = "semsearch_themes"


def daily_asset(**kwargs: object) -> Callable[..., AssetsDefinition]:
    """`@asset` for a daily asset: one day per backfill run.

    No step retry policy: commit races are retried where they happen (`DeltaTables`), and
    retrying a whole step would only repeat a deterministic error three times.
    """
    with warnings.catch_warnings():
        # Backfill policies are beta in dagster 1.13; used deliberately, so not warned about.
        warnings.filterwarnings("ignore", "Parameter `backfill_policy`", BetaWarning)
        return asset(backfill_policy=DAILY_BACKFILL, **kwargs)


def partition_day(context: AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def table_metadata(storage: StorageResource, name: str) -> dict:
    return {"table": MetadataValue.path(storage.tables().uri(name))}


@asset(
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


def build_pipeline_assets(
    partitions: DailyPartitionsDefinition, theme_window_days: int, sources: Sequence = ()
) -> list[AssetsDefinition]:
    """The date-partitioned assets; the theme window shapes the themes' upstream mapping."""

    @daily_asset(
        partitions_def=partitions,
        deps=[bronze_documents, *sources],  # sources: other assets landing into bronze
        group_name=PIPELINE,
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
                "rows": documents.height,
                "rejected_in_source_files": rejected,
                "source_files": MetadataValue.json(sorted(files)),
                "preview": preview(documents, ["doc_id", "created_at", "title", "text"]),
                **table_metadata(storage, RAW_TABLE),
                **timer.metadata(),
            }
        )

    @daily_asset(
        partitions_def=partitions,
        deps=[raw_documents],
        group_name=PIPELINE,
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
                "rows": frame.height,
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

    @daily_asset(
        partitions_def=partitions,
        deps=[chunks],
        pool=EMBEDDING_POOL,
        group_name=PIPELINE,
        kinds={"deltalake", "pytorch"},
        description="A vector per chunk from the configured embedding model, with model id and "
        "dimension. Text already embedded (same model, dimensions and exact text) is served from "
        "`embedding_cache` and never requested again. A chunk that cannot be embedded gets a row "
        "in `embedding_dead_letter` instead of a vector; re-materializing its day retries it "
        "first and removes the row on success. An endpoint refusing every request (key, "
        "permission, model, quota) fails the run and leaves the day's tables as they were; "
        "vectors paid for before the refusal are kept in the cache.",
    )
    def embeddings(
        context: AssetExecutionContext, storage: StorageResource, embedder: EmbeddingResource
    ) -> MaterializeResult:
        """One row per chunk of the day minus the day's current dead letters.

        Dead letters are retried by their own day's run only: a run writes exactly its own
        partition, so recovering another day's chunk here could not store its vector where it
        belongs. Days with dead letters are found with `dead_letter_count` and re-materialized.
        """
        day, tables, timer = partition_day(context), storage.tables(), StageTimer()
        backend = embedder.get_backend()
        retry_first = set(read_dead_letters(tables, day)["chunk_id"].to_list())
        # The previous run's failures are sent first, so a run cut short by a rate limit or a
        # quota spends what it had on the oldest gaps.
        chunk_rows = tables.read_partition(CHUNKS_TABLE, day, CHUNKS).sort(
            pl.col("chunk_id").is_in(list(retry_first)).not_(), "chunk_id"
        )
        chunk_ids, texts = chunk_rows["chunk_id"].to_list(), chunk_rows["text"].to_list()
        keys = [embedding_cache_key(backend.model_id, backend.dimension, t) for t in texts]
        cache = DeltaVectorCache(tables, backend.model_id, backend.dimension)
        with timer.step("embed"), embedder.logs_to(context.log):
            try:
                outcome = embed_with_cache(texts, keys, backend, cache)
            except EmbeddingConfigError as error:
                # Every further request would fail alike: stop before any table is touched.
                raise Failure(description=str(error), allow_retries=False) from error
        embedded = [v for v in outcome.vectors if v is not None]
        vectors = np.stack(embedded) if embedded else np.zeros((0, backend.dimension), np.float32)
        # Typed: on a day without chunks an untyped empty mask is Null, which `filter` refuses.
        embedded_mask = pl.Series([v is not None for v in outcome.vectors], dtype=pl.Boolean)
        rows = chunk_rows.filter(embedded_mask)
        table = embeddings_table(rows, vectors, day, backend.model_id, backend.dimension)
        with timer.step("write"):
            # Dead letters first: should the second commit fail, a chunk may lack its vector but
            # never the row saying why.
            record_dead_letters(tables, day, backend.model_id, chunk_ids, outcome.failures)
            tables.replace_partition(EMBEDDINGS_TABLE, day, table, EMBEDDINGS)
        summary = outcome.summary()
        retried = retry_first.intersection(chunk_ids)
        failed = {chunk_ids[f.index] for f in outcome.failures}
        return MaterializeResult(
            metadata={
                "rows": table.num_rows,
                "chunks": len(chunk_ids),
                "model_id": backend.model_id,
                "dimension": backend.dimension,
                **summary,
                "retry_reasons": MetadataValue.json(summary["retry_reasons"]),
                "failures_by_class": MetadataValue.json(summary["failures_by_class"]),
                "estimated_cost_usd": embedder.estimated_cost(outcome.stats.tokens),
                "dead_letters": len(failed),
                "dead_letters_retried": len(retried),
                "dead_letters_recovered": len(retried - failed),
                "chunks_per_second": round(len(texts) / max(timer.seconds["embed"], 1e-9), 1),
                **table_metadata(storage, EMBEDDINGS_TABLE),
                **table_metadata(storage, DEAD_LETTER_TABLE),
                **timer.metadata(),
            }
        )

    @daily_asset(
        partitions_def=partitions,
        deps=[embeddings, chunks, raw_documents],
        pool=LANCEDB_POOL,
        group_name=PIPELINE,
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
                "rows": 0 if rows is None else rows.num_rows,
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

    lookback = -(theme_window_days - 1) if theme_window_days > 0 else -100_000
    window = TimeWindowPartitionMapping(start_offset=lookback)

    @daily_asset(
        partitions_def=partitions,
        deps=[
            AssetDep(embeddings, partition_mapping=window),
            AssetDep(chunks, partition_mapping=window),
            # Theme ids carry over from the previous day's window, so a day's themes depend on
            # the day before's: a backfill then runs them in day order, one at a time.
            AssetDep(THEMES_TABLE, partition_mapping=PREVIOUS_DAY),
        ],
        pool=THEMES_POOL,
        group_name=PIPELINE,
        kinds={"deltalake", "scikitlearn"},
        description=f"Themes over the {theme_window_days or 'all'}-day window ending at the "
        "partition: UMAP + HDBSCAN over the embeddings, c-TF-IDF keywords, representative texts "
        "and an outlier bucket; ids carry over from the previous window. Assignments per chunk "
        "go to `theme_assignments`.",
    )
    def themes(
        context: AssetExecutionContext, storage: StorageResource, pipeline: PipelineResource
    ) -> MaterializeResult:
        day, tables, timer = partition_day(context), storage.tables(), StageTimer()
        start = date.fromisoformat(pipeline.partitions_start)
        first = day - timedelta(days=theme_window_days - 1) if theme_window_days > 0 else start
        first = max(first, start)
        with timer.step("read"):
            members = themes_store.window_members(tables, first, day)
            previous = themes_store.previous_theme_members(tables, day)
        with timer.step("cluster"):
            result = find_themes(
                members["chunk_id"].to_list(),
                vectors_from_column(members["vector"], 0),
                members["text"].to_list(),
                pipeline.theme_params(),
                previous,
            )
        with timer.step("write"):
            themes_store.write_themes(tables, day, first, result, members)
        table = [
            (
                t.theme_id,
                t.size,
                ", ".join(t.keywords),
                t.representatives[0] if t.representatives else "",
            )
            for t in result.themes
        ]
        return MaterializeResult(
            metadata={
                "window": f"{first} .. {day}",
                "chunks_clustered": len(result.chunk_ids),
                "themes": sum(t.theme_id != OUTLIERS for t in result.themes),
                "noise_share": round(result.noise_share, 3),
                "theme_table": markdown_table(table, ["theme", "size", "keywords", "example"]),
                **table_metadata(storage, themes_store.THEMES_TABLE),
                **timer.metadata(),
            }
        )

    return [raw_documents, chunks, embeddings, vector_index, themes]


def index_rows(tables, day: date) -> tuple[pa.Table | None, str | None, int]:
    """The day's index rows: embeddings joined with chunk text and document metadata."""
    vectors = tables.read_partition(EMBEDDINGS_TABLE, day, EMBEDDINGS)
    model_ids = vectors["model_id"].unique().to_list()
    if len(model_ids) > 1:
        raise ValueError(f"embeddings for {day} mix models {model_ids}; re-materialize them")
    if vectors.height == 0:
        return None, None, 0
    dimension = int(vectors["dimension"][0])
    chunk_text = tables.read_partition(CHUNKS_TABLE, day, CHUNKS).select("chunk_id", "text")
    docs = tables.read_partition(RAW_TABLE, day, DOCUMENTS).select("doc_id", "title", "metadata")
    joined = vectors.join(chunk_text, on="chunk_id", how="inner").join(
        docs, on="doc_id", how="left"
    )
    joined = joined.with_columns(
        pl.col("metadata")
        .map_elements(metadata_tags, return_dtype=pl.List(pl.String))
        .alias("metadata_tags")
    ).sort("chunk_id")
    schema = index_schema(dimension)
    table = joined.select(schema.names).to_arrow()
    columns = [table.column(n).cast(schema.field(n).type) for n in schema.names]
    return pa.Table.from_arrays(columns, schema=schema), model_ids[0], dimension
