"""Stage 3: a vector per chunk, served from the cache when the text was embedded before."""

from collections.abc import Iterator

import numpy as np
import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AssetSpec,
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
)
from dagster_pyspark import PySparkResource

from semsearch.core.embedding import embed_with_cache
from semsearch.core.ids import embedding_cache_key
from semsearch.core.openai import EmbeddingConfigError
from semsearch.defs.metadata import CONFIGURATION_ERROR, StageTimer, table_rows
from semsearch.defs.partitions import (
    EMBEDDING_POOL,
    daily_multi_asset,
    partition_day,
    table_metadata,
)
from semsearch.defs.resources import EmbeddingResource, StorageResource
from semsearch.spark.jobs import BackendSpec, EmbeddedDay, embed_day
from semsearch.storage.delta import DeltaTables
from semsearch.storage.embedding_cache import CacheStore, LanceVectorCache
from semsearch.storage.embedding_store import (
    embeddings_table,
    read_dead_letters,
    record_dead_letters,
)
from semsearch.storage.schemas import (
    CACHE_TABLE,
    CHUNKS,
    CHUNKS_TABLE,
    DEAD_LETTER_TABLE,
    EMBEDDING_CACHE,
    EMBEDDING_DEAD_LETTER,
    EMBEDDINGS,
    EMBEDDINGS_TABLE,
)

# Bump when the stage writes something else for the same input, so the UI marks it stale.
CODE_VERSION = "1"
# The tables the step writes, each an asset: materialized together, never one alone.
OUTPUT_TABLES = (EMBEDDINGS_TABLE, DEAD_LETTER_TABLE, CACHE_TABLE)


def build_embeddings(
    partitions: DailyPartitionsDefinition, engine: str = "local"
) -> AssetsDefinition:
    decorate = daily_multi_asset(
        name=EMBEDDINGS_TABLE,
        partitions_def=partitions,
        pool=EMBEDDING_POOL,
        specs=[
            AssetSpec(
                EMBEDDINGS_TABLE,
                code_version=CODE_VERSION,
                deps=[CHUNKS_TABLE],
                kinds={"deltalake", "pytorch", *({"spark"} if engine == "spark" else ())},
                description="A vector per chunk from the configured embedding model, with model "
                "id and dimension. Text already embedded (same model, dimensions and exact text) "
                "is served from `embedding_cache` and never requested again. A chunk that cannot "
                "be embedded gets a row in `embedding_dead_letter` instead of a vector; "
                "re-materializing its day retries it first and removes the row on success. An "
                "endpoint refusing every request (key, permission, model, quota) fails the run "
                "and leaves the day's tables as they were; vectors paid for before the refusal "
                "are kept in the cache.",
            ),
            AssetSpec(
                DEAD_LETTER_TABLE,
                code_version=CODE_VERSION,
                deps=[CHUNKS_TABLE],
                kinds={"deltalake"},
                description="The day's chunks that could not be embedded, with the error, the "
                "attempts and when they were first and last seen. Re-materializing the day "
                "retries them first.",
            ),
            AssetSpec(
                CACHE_TABLE,
                code_version=CODE_VERSION,
                deps=[CHUNKS_TABLE],
                kinds={"lancedb"},
                description="Vectors by hash of model, dimensions and exact text, shared by "
                "every day: one LanceDB table beside the index, with a BTree on the key, so a "
                "lookup reads index pages instead of scanning the table. Vectors are appended "
                "as each request completes (a cut-off run keeps what it paid for) and folded "
                "into the index at the end of the run. A day's partition is its run's use of "
                "the cache: hits, vectors added, and the rows the cache holds afterwards.",
            ),
        ],
    )
    if engine == "spark":

        @decorate
        def embeddings_on_spark(
            context: AssetExecutionContext,
            storage: StorageResource,
            embedder: EmbeddingResource,
            spark: PySparkResource,
        ) -> Iterator[MaterializeResult]:
            yield from _embeddings(context, storage, embedder, spark.spark_session)

        return embeddings_on_spark

    @decorate
    def embeddings(
        context: AssetExecutionContext, storage: StorageResource, embedder: EmbeddingResource
    ) -> Iterator[MaterializeResult]:
        yield from _embeddings(context, storage, embedder, None)

    return embeddings


def _embeddings(context, storage, embedder, session) -> Iterator[MaterializeResult]:
    """One row per chunk of the day minus the day's current dead letters.

    Dead letters are retried by their own day's run only: a run writes exactly its own
    partition, so recovering another day's chunk here could not store its vector where it
    belongs. Days with dead letters are found with `dead_letter_count` and re-materialized.
    """
    day, tables, timer = partition_day(context), storage.tables(), StageTimer()
    with timer.step("embed"), embedder.logs_to(context.log):
        cache = storage.cache()
        try:
            if session is not None:
                spec = BackendSpec(embedder.backend_settings(), embedder.api_key())
                done = embed_day(session, tables, cache, day, spec)
            else:
                done = _embed_locally(tables, cache, day, embedder)
        except EmbeddingConfigError as error:
            # Every further request would fail alike: stop before any table is touched.
            raise Failure(
                str(error), metadata={CONFIGURATION_ERROR: True}, allow_retries=False
            ) from error
    summary, engine_name = done.summary, "local" if session is None else "spark"
    yield MaterializeResult(
        asset_key=EMBEDDINGS_TABLE,
        metadata={
            **table_rows(done.rows, EMBEDDINGS),
            "engine": engine_name,
            "chunks": done.chunks,
            "model_id": done.model_id,
            "dimension": done.dimension,
            **summary,
            "retry_reasons": MetadataValue.json(summary["retry_reasons"]),
            "failures_by_class": MetadataValue.json(summary["failures_by_class"]),
            "estimated_cost_usd": embedder.estimated_cost(summary["tokens"]),
            "dead_letters": done.dead_letters,
            "dead_letters_retried": done.retried,
            "dead_letters_recovered": done.recovered,
            "chunks_per_second": round(done.chunks / max(timer.seconds["embed"], 1e-9), 1),
            **table_metadata(storage, EMBEDDINGS_TABLE),
            **timer.metadata(),
        },
    )
    yield MaterializeResult(
        asset_key=DEAD_LETTER_TABLE,
        metadata={
            **table_rows(done.dead_letters, EMBEDDING_DEAD_LETTER),
            "engine": engine_name,
            "retried": done.retried,
            "recovered": done.recovered,
            "failures_by_class": MetadataValue.json(summary["failures_by_class"]),
            **table_metadata(storage, DEAD_LETTER_TABLE),
        },
    )
    yield MaterializeResult(
        asset_key=CACHE_TABLE,
        metadata={
            **table_rows(done.cache_rows, EMBEDDING_CACHE),
            "engine": engine_name,
            "hits": summary["cache_hits"],
            "misses": summary["cache_misses"],
            "rows_folded_into_index": done.cache_folded,
            "table": MetadataValue.path(cache.uri),
        },
    )


def _embed_locally(
    tables: DeltaTables, store: CacheStore, day, embedder: EmbeddingResource
) -> EmbeddedDay:
    backend = embedder.get_backend()
    retry_first = set(read_dead_letters(tables, day)["chunk_id"].to_list())
    # The previous run's failures are sent first, so a run cut short by a rate limit or a
    # quota spends what it had on the oldest gaps.
    chunk_rows = tables.read_partition(CHUNKS_TABLE, day, CHUNKS).sort(
        pl.col("chunk_id").is_in(list(retry_first)).not_(), "chunk_id"
    )
    chunk_ids, texts = chunk_rows["chunk_id"].to_list(), chunk_rows["text"].to_list()
    keys = [embedding_cache_key(backend.model_id, backend.dimension, t) for t in texts]
    cache = LanceVectorCache(store, backend.model_id, backend.dimension)
    outcome = embed_with_cache(texts, keys, backend, cache)
    embedded = [v for v in outcome.vectors if v is not None]
    vectors = np.stack(embedded) if embedded else np.zeros((0, backend.dimension), np.float32)
    # Typed: on a day without chunks an untyped empty mask is Null, which `filter` refuses.
    embedded_mask = pl.Series([v is not None for v in outcome.vectors], dtype=pl.Boolean)
    rows = chunk_rows.filter(embedded_mask)
    table = embeddings_table(rows, vectors, day, backend.model_id, backend.dimension)
    # Dead letters first: should the second commit fail, a chunk may lack its vector but
    # never the row saying why.
    record_dead_letters(tables, day, backend.model_id, chunk_ids, outcome.failures)
    tables.replace_partition(EMBEDDINGS_TABLE, day, table, EMBEDDINGS)
    retried = retry_first.intersection(chunk_ids)
    failed = {chunk_ids[f.index] for f in outcome.failures}
    return EmbeddedDay(
        rows=table.num_rows,
        chunks=len(chunk_ids),
        model_id=backend.model_id,
        dimension=backend.dimension,
        summary=outcome.summary(),
        dead_letters=len(failed),
        retried=len(retried),
        recovered=len(retried - failed),
        cache_folded=store.fold_in(),  # this run's vectors into the key index
        cache_rows=store.count_rows(),
    )
