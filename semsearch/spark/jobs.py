"""The chunks and embeddings stages of one day as Spark jobs.

Executors read the day's Parquet files (listed from the Delta log by the driver), chunk, look
the day's keys up in the embedding cache (the LanceDB table's BTree, in `mapInArrow`), embed
the misses with a backend built once per Python worker process, validate the vectors, append
them to the cache as each request completes, and write every Delta table's files; the driver
commits those (`delta_files.commit`). What the driver receives: file actions, counters, a
five-row preview; never the cache.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa

from semsearch.config import Settings
from semsearch.core.chunking import ChunkSpec, chunk_documents, effective_spec
from semsearch.core.embedding import EmbeddingStats, embed_with_cache
from semsearch.core.ids import embedding_cache_key
from semsearch.core.openai import EmbeddingConfigError
from semsearch.spark.delta_files import PART_SCHEMA, commit, file_uris, write_parts
from semsearch.storage.delta import DeltaTables
from semsearch.storage.embedding_cache import CacheStore, LanceVectorCache
from semsearch.storage.schemas import (
    CHUNKS,
    CHUNKS_TABLE,
    DEAD_LETTER_TABLE,
    DOCUMENTS,
    EMBEDDING_DEAD_LETTER,
    EMBEDDINGS,
    EMBEDDINGS_TABLE,
    PARTITION_COLUMN,
    RAW_TABLE,
)

log = logging.getLogger(__name__)

ROWS_PER_TASK = 4096  # rows a task chunks or embeds, at most about
STAGING = "_staging"  # under a table's folder: files of a run that no commit names
# Spark conf naming jobs (comma-separated: raw, chunks, embed, dead, embeddings) whose first task
# fails on its first attempt after writing its file (tests of Spark's task retries); unset in
# production.
FAIL_FIRST_ATTEMPT = "spark.semsearch.failFirstAttempt"
FAILURES = pa.schema(
    [
        ("cache_key", pa.string()),
        ("error_class", pa.string()),
        ("message", pa.string()),
        ("attempts", pa.int32()),
    ]
)

# One backend per Python worker process (the model loads once, the HTTP client is reused):
# Spark reuses its Python workers across tasks (spark.python.worker.reuse, on by default).
_WORKER_BACKENDS: dict[tuple, object] = {}


@dataclass(frozen=True)
class BackendSpec:
    """What an executor needs to build the backend: settings and the API key (openai only)."""

    settings: Settings
    api_key: str = ""

    def for_slots(self, slots: int) -> BackendSpec:
        """The spec of one of `slots` concurrent tasks: the rate budget divided among them."""
        s = self.settings

        def share(value: int) -> int:
            return max(1, value // slots) if value else 0

        return BackendSpec(
            s.replace(
                openai_requests_per_minute=share(s.openai_requests_per_minute),
                openai_tokens_per_minute=share(s.openai_tokens_per_minute),
                openai_concurrency=max(1, s.openai_concurrency // slots),
            ),
            self.api_key,
        )


def worker_backend(spec: BackendSpec):
    """The backend of this worker process, built on first use."""
    key = (spec.settings, spec.api_key)
    if key not in _WORKER_BACKENDS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from pyspark import TaskContext

        from semsearch.core.backends import build_backend

        context = TaskContext.get()
        if context is not None and spec.settings.embedding_backend == "local":
            import torch

            torch.set_num_threads(max(1, context.cpus()))  # one task slot, its cores
        _WORKER_BACKENDS[key] = build_backend(spec.settings, spec.api_key)
    return _WORKER_BACKENDS[key]


@dataclass(frozen=True)
class BackendFacts:
    model_id: str
    dimension: int
    max_input_tokens: int


def backend_facts(spark, spec: BackendSpec) -> BackendFacts:
    """Model id, dimension and input limit, from a one-task job: the driver loads no model."""

    def facts(_: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        backend = worker_backend(spec)
        row = {
            "facts": [json.dumps([backend.model_id, backend.dimension, backend.max_input_tokens])]
        }
        yield pa.RecordBatch.from_pydict(row)

    (row,) = spark.range(1, numPartitions=1).mapInArrow(facts, "facts string").collect()
    return BackendFacts(*json.loads(row["facts"]))


def _spark_schema(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def read_table(spark, tables: DeltaTables, name: str, schema: pa.Schema, day: date | None):
    """The table's rows (the day's partition, when given) as a DataFrame, read by executors."""
    from pyspark.sql import functions as F

    uris = file_uris(tables, name, day)
    partitioned = PARTITION_COLUMN in schema.names and day is not None
    data = pa.schema([f for f in schema if not (partitioned and f.name == PARTITION_COLUMN)])
    if not uris:
        frame = spark.createDataFrame([], _spark_schema(data))
    elif PARTITION_COLUMN in schema.names and day is None:
        # Every day's files: the day of each comes from its folder (partition_date=<day>/,
        # the layout deltalake and `write_parts` write), typed by the schema.
        reader = spark.read.schema(_spark_schema(data)).option("basePath", tables.uri(name))
        frame = reader.parquet(*uris).select(*data.names)
    else:
        frame = spark.read.schema(_spark_schema(data)).parquet(*uris)
    if partitioned:
        frame = frame.withColumn(PARTITION_COLUMN, F.lit(day))
    return frame


def _tasks(spark, rows: int) -> int:
    return max(spark.sparkContext.defaultParallelism, math.ceil(rows / ROWS_PER_TASK))


def write_files(spark, frame, tables: DeltaTables, name: str, schema: pa.Schema, day, job: str):
    """Executors write `frame`'s rows as Parquet parts of table `name`; returns the parts."""
    fail = job in _failing_jobs(spark)
    writer = write_parts(tables.uri(name), schema, day)

    def write(batches):
        yield from writer(batches)
        _maybe_fail(fail)

    return [r.asDict() for r in frame.mapInArrow(write, PART_SCHEMA).collect()]


def _failing_jobs(spark) -> set[str]:
    return set(spark.conf.get(FAIL_FIRST_ATTEMPT, "").split(","))


def _maybe_fail(fail: bool) -> None:
    from pyspark import TaskContext

    context = TaskContext.get()
    if fail and context.attemptNumber() == 0 and context.partitionId() == 0:
        raise RuntimeError(
            "injected failure of the first attempt (spark.semsearch.failFirstAttempt)"
        )


def _rows(parts: list[dict]) -> int:
    return sum(p["rows"] for p in parts)


@dataclass
class ChunkedDay:
    documents: int
    rows: int
    token_counts: pl.DataFrame  # token_count, count
    tokens_max: int
    tokens_mean: float
    preview: pl.DataFrame


def chunk_day(spark, tables: DeltaTables, day: date, spec: ChunkSpec, backend: BackendSpec):
    """The day's documents cut into chunks by the executors, committed as the day's replace."""
    from pyspark.sql import functions as F

    facts = backend_facts(spark, backend)
    spec = effective_spec(spec, facts.max_input_tokens)
    documents = read_table(spark, tables, RAW_TABLE, DOCUMENTS, day)
    count = documents.count()
    data_schema = pa.schema([f for f in CHUNKS if f.name != PARTITION_COLUMN])

    def chunk(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tokenizer = worker_backend(backend)
        for batch in batches:
            rows = chunk_documents(
                batch.select(["doc_id", "title", "text"]).to_pylist(), spec, tokenizer
            )
            yield pa.RecordBatch.from_pylist(rows, schema=data_schema)

    chunks = (
        documents.select("doc_id", "title", "text")
        .repartition(_tasks(spark, count), "doc_id")
        .mapInArrow(chunk, _spark_schema(data_schema))
        .withColumn(PARTITION_COLUMN, F.lit(day))
    )
    parts = write_files(spark, chunks, tables, CHUNKS_TABLE, CHUNKS, day, "chunks")
    commit(tables, CHUNKS_TABLE, CHUNKS, parts, day)
    written = read_table(spark, tables, CHUNKS_TABLE, CHUNKS, day)
    counts = written.groupBy("token_count").count().toArrow()
    summary = written.agg(F.max("token_count"), F.mean("token_count")).first()
    preview = written.orderBy("chunk_id").limit(5).toArrow()
    return (
        ChunkedDay(
            documents=count,
            rows=_rows(parts),
            token_counts=pl.from_arrow(counts),
            tokens_max=int(summary[0] or 0),
            tokens_mean=round(float(summary[1] or 0), 1),
            preview=pl.from_arrow(preview),
        ),
        spec,
    )


@dataclass
class EmbeddedDay:
    """What the embeddings stage reports, from either engine."""

    rows: int
    chunks: int
    model_id: str
    dimension: int
    summary: dict
    dead_letters: int
    retried: int
    recovered: int
    cache_rows: int
    cache_folded: int  # rows added to the cache's key index at the end of the run


def embed_day(
    spark, tables: DeltaTables, cache: CacheStore, day: date, backend: BackendSpec
) -> EmbeddedDay:
    """Cache lookups, misses embedded on the executors, then the day's tables committed.

    The day's distinct keys are looked up by the executors (BTree lookups per batch, at the
    cache version the driver pinned). The first job embeds the distinct missing texts through
    the same `embed_with_cache` as the local engine: each task appends its vectors to the cache
    as each request completes (a task Spark retries, or a run killed and run again, finds them
    there and pays nothing twice) and writes its failures to a staging file. The second joins
    the day's chunks with the cache's vectors for the `embeddings` rows and with the failures
    (and the day's earlier dead letters, for attempts and first_seen) for
    `embedding_dead_letter`; the driver commits dead letters, then embeddings, each the day's
    replace, and folds the run's cache rows into the key index.
    """
    from pyspark.sql import functions as F

    facts = backend_facts(spark, backend)
    slots = spark.sparkContext.defaultParallelism
    task_backend = backend.for_slots(slots)
    chunks = read_table(spark, tables, CHUNKS_TABLE, CHUNKS, day).select(
        "chunk_id", "doc_id", "text"
    )
    total = chunks.count()
    keyed_schema = "chunk_id string, doc_id string, text string, cache_key string"

    def key(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            texts = batch.column("text").to_pylist()
            keys = [embedding_cache_key(facts.model_id, facts.dimension, t) for t in texts]
            yield batch.append_column("cache_key", pa.array(keys, pa.string()))

    keyed = chunks.repartition(_tasks(spark, total), "chunk_id").mapInArrow(key, keyed_schema)
    keyed = keyed.persist()
    day_keys = keyed.select("cache_key").distinct()
    cached = _cache_vectors(spark, cache, day_keys, _tasks(spark, total)).persist()
    hits = keyed.join(cached.select("cache_key"), "cache_key", "left_semi").count()
    misses = keyed.join(cached.select("cache_key"), "cache_key", "left_anti")
    misses = misses.select("cache_key", "text").dropDuplicates(["cache_key"])
    run = f"{day.isoformat()}-{os.getpid()}-{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}"
    staging = f"{tables.uri(DEAD_LETTER_TABLE)}/{STAGING}/{run}"
    fail = "embed" in _failing_jobs(spark)
    lance_uri = cache.lance_uri

    def embed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        rows = pa.Table.from_batches(
            list(batches), schema=pa.schema([("cache_key", pa.string()), ("text", pa.string())])
        )
        if rows.num_rows == 0:
            return
        keys, texts = rows.column("cache_key").to_pylist(), rows.column("text").to_pylist()
        sink = LanceVectorCache(CacheStore(lance_uri), facts.model_id, facts.dimension)
        info: dict = {"inputs": len(keys)}
        try:
            outcome = embed_with_cache(texts, keys, worker_backend(task_backend), sink)
            stats, failures = outcome.stats, outcome.failures
        except EmbeddingConfigError as error:
            info["fatal"] = str(error)
            stats, failures = EmbeddingStats(), []
        info["stats"] = [stats.requests, stats.retries, stats.tokens, dict(stats.retry_reasons)]
        if failures:
            failed = pa.table(
                {
                    "cache_key": [keys[f.index] for f in failures],
                    "error_class": [f.error_class for f in failures],
                    "message": [f.message for f in failures],
                    "attempts": pa.array([f.attempts for f in failures], pa.int32()),
                }
            )
            (part,) = write_parts(staging, FAILURES, None)(iter(failed.to_batches()))
            info["failures"] = part.to_pylist()[0]["path"]
        _maybe_fail(fail)
        yield pa.RecordBatch.from_pydict({"info": [json.dumps(info)]})

    miss_count = keyed.count() - hits
    infos = [
        json.loads(r["info"])
        for r in misses.repartition(_tasks(spark, miss_count), "cache_key")
        .mapInArrow(embed, "info string")
        .collect()
    ]
    cached.unpersist()
    fatal = [i["fatal"] for i in infos if "fatal" in i]
    if fatal:
        keyed.unpersist()
        raise EmbeddingConfigError(fatal[0])
    failure_files = [f"{staging}/{i['failures']}" for i in infos if "failures" in i]
    failures = (
        spark.read.schema(_spark_schema(FAILURES)).parquet(*failure_files)
        if failure_files
        else spark.createDataFrame([], _spark_schema(FAILURES))
    )
    now = datetime.now(UTC)
    earlier = read_table(spark, tables, DEAD_LETTER_TABLE, EMBEDDING_DEAD_LETTER, day)
    dead = (
        keyed.join(failures, "cache_key", "inner")
        .join(
            earlier.select(
                "chunk_id",
                F.col("attempts").alias("attempts_before"),
                F.col("first_seen").alias("first_seen_before"),
            ),
            "chunk_id",
            "left",
        )
        .select(
            "chunk_id",
            F.lit(day).alias(PARTITION_COLUMN),
            F.lit(facts.model_id).alias("model_id"),
            "error_class",
            "message",
            (F.coalesce("attempts_before", F.lit(0)) + F.col("attempts"))
            .cast("int")
            .alias("attempts"),
            F.coalesce("first_seen_before", F.lit(now)).alias("first_seen"),
            F.lit(now).alias("last_seen"),
        )
    )
    dead_parts = write_files(
        spark, dead, tables, DEAD_LETTER_TABLE, EMBEDDING_DEAD_LETTER, day, "dead"
    )
    if dead_parts or tables.exists(DEAD_LETTER_TABLE):
        commit(tables, DEAD_LETTER_TABLE, EMBEDDING_DEAD_LETTER, dead_parts, day)
    vectors = _cache_vectors(spark, cache, day_keys, _tasks(spark, total))
    embedded = keyed.join(vectors, "cache_key", "inner").select(
        "chunk_id",
        "doc_id",
        F.lit(day).alias(PARTITION_COLUMN),
        F.lit(facts.model_id).alias("model_id"),
        F.lit(facts.dimension).cast("int").alias("dimension"),
        "vector",
    )
    parts = write_files(spark, embedded, tables, EMBEDDINGS_TABLE, EMBEDDINGS, day, "embeddings")
    commit(tables, EMBEDDINGS_TABLE, EMBEDDINGS, parts, day)
    retried_ids = keyed.join(earlier.select("chunk_id"), "chunk_id", "left_semi")
    retried = retried_ids.count()
    recovered = retried_ids.join(
        read_table(spark, tables, DEAD_LETTER_TABLE, EMBEDDING_DEAD_LETTER, day).select("chunk_id"),
        "chunk_id",
        "left_anti",
    ).count()
    keyed.unpersist()
    _remove_staging(staging)
    return EmbeddedDay(
        rows=_rows(parts),
        chunks=total,
        model_id=facts.model_id,
        dimension=facts.dimension,
        summary=_summary(
            infos, hits, total - hits, _failures_by_class(spark, dead_parts, tables, day)
        ),
        dead_letters=_rows(dead_parts),
        retried=retried,
        recovered=recovered,
        cache_folded=cache.fold_in(),
        cache_rows=cache.count_rows(),
    )


def _cache_vectors(spark, cache: CacheStore, day_keys, tasks: int):
    """The cache's vector of each of the day's keys (one per key, its earliest), looked up by
    the executors at the cache's current version: only the day's hits leave the table."""
    lance_uri, version = cache.lance_uri, cache.version

    def lookup(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        store = CacheStore(lance_uri)
        for batch in batches:
            found = store.lookup(batch.column("cache_key").to_pylist(), version=version)
            yield from found.to_batches()

    schema = "cache_key string, vector array<float>"
    return day_keys.repartition(tasks, "cache_key").mapInArrow(lookup, schema)


def _failures_by_class(spark, dead_parts, tables: DeltaTables, day: date) -> dict:
    if not dead_parts:
        return {}
    dead = read_table(spark, tables, DEAD_LETTER_TABLE, EMBEDDING_DEAD_LETTER, day)
    return {r["error_class"]: r["count"] for r in dead.groupBy("error_class").count().collect()}


def _summary(infos: list[dict], hits: int, misses: int, failures_by_class: dict) -> dict:
    reasons: Counter = Counter()
    for info in infos:
        reasons.update(info["stats"][3])
    return {
        "cache_hits": hits,
        "cache_misses": misses,
        "texts_requested": sum(i["inputs"] for i in infos),
        "model_requests": sum(i["stats"][0] for i in infos),
        "retries": sum(i["stats"][1] for i in infos),
        "retry_reasons": dict(reasons),
        "tokens": sum(i["stats"][2] for i in infos),
        "failures_by_class": failures_by_class,
    }


def _remove_staging(staging: str) -> None:
    import shutil

    if "://" not in staging:
        shutil.rmtree(staging, ignore_errors=True)
