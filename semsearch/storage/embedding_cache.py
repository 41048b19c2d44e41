"""The embedding cache: vectors by cache key in a LanceDB table with a BTree on the key.

The table is `embedding_cache` beside the vector index (`<lance uri>/embedding_cache.lance`,
openable with `lancedb.connect(uri).open_table("embedding_cache")`), one table for every model
(the key hashes model, dimensions and text). A lookup asks `cache_key IN (...)` in batches, which
the BTree answers by reading the index pages of those keys: it does not scan the table, so its
cost does not follow the table's row count as the Delta scan it replaces did (see
benchmarks/bench_cache_lookup.py for the figures).

Writes are Lance appends, one commit per completed request: a run cut off keeps every vector it
was paid for, and concurrent runs' appends are compatible commits (both succeed). Rows appended
after the index was last updated are searched flat until `fold_in` adds them to the index; the
embeddings stage folds them in at the end of every run and `semsearch maintain` compacts, folds
and drops old versions, so the flat part stays small. Two runs racing on the same text may both
store it: a lookup returns the earliest row of a key, so a duplicate is harmless.

A home that has the Delta `embedding_cache` table of earlier versions gets it imported when the
Lance table is first created (streamed in batches, one commit: a cut-off import leaves no table
and runs again), so nobody pays twice after upgrading. The Delta folder is left as it was.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import lance
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from semsearch.storage.delta import DeltaTables
from semsearch.storage.embedding_store import vectors_column
from semsearch.storage.schemas import CACHE_TABLE, EMBEDDING_CACHE

log = logging.getLogger(__name__)

# Keys per `IN (...)` lookup: each batch is one query that the BTree answers.
KEYS_PER_LOOKUP = 4096
# Rows per batch streamed from an old Delta cache into the Lance table.
IMPORT_BATCH_ROWS = 65_536
INDEX_NAME = "cache_key_idx"
KEY_COLUMN = "cache_key"


def cache_uri(lance_uri: str) -> str:
    """Where the cache table lives: a LanceDB table named `embedding_cache` under `lance_uri`."""
    return f"{str(lance_uri).rstrip('/')}/{CACHE_TABLE}.lance"


def cache_rows(keys: Sequence[str], vectors: np.ndarray, model_id: str, dimension: int) -> pa.Table:
    """Rows of the cache table: `keys[i]` with `vectors[i]`, written now."""
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(keys), dimension)
    now = datetime.now(UTC)
    return pa.table(
        {
            KEY_COLUMN: pa.array(list(keys), pa.string()),
            "model_id": [model_id] * len(keys),
            "dimension": pa.array([dimension] * len(keys), pa.int32()),
            "vector": vectors_column(vectors),
            "created_at": pa.array([now] * len(keys), EMBEDDING_CACHE.field("created_at").type),
        },
        schema=EMBEDDING_CACHE,
    )


@dataclass(frozen=True)
class CacheMaintenance:
    rows: int
    fragments_before: int
    fragments_after: int
    unindexed_rows_before: int  # rows a lookup scanned flat before the fold-in
    unindexed_rows_after: int
    versions_before: int
    versions_after: int
    seconds: float
    problem: str = ""  # why part of the work was not done, if it was not


class CacheStore:
    """The `embedding_cache` Lance table: key lookups, appends, index upkeep.

    Every read opens the latest version (or the `version` given: Spark tasks read the one the
    driver pinned), so rows another process appended are seen at once.
    """

    def __init__(self, lance_uri: str):
        self.lance_uri = str(lance_uri)
        self.uri = cache_uri(self.lance_uri)

    @classmethod
    def open(cls, lance_uri: str, legacy: DeltaTables | None = None) -> CacheStore:
        """The store, its table created first if missing: from `legacy`'s Delta
        `embedding_cache` when that exists (imported once, streamed), else empty."""
        store = cls(lance_uri)
        if not store.exists():
            store._create(legacy)
        return store

    def exists(self) -> bool:
        try:
            lance.dataset(self.uri)
        except ValueError:  # lance: "Dataset at path ... was not found"
            return False
        return True

    def dataset(self, version: int | None = None) -> lance.LanceDataset:
        return lance.dataset(self.uri, version=version)

    @property
    def version(self) -> int:
        return self.dataset().version

    def _create(self, legacy: DeltaTables | None) -> None:
        try:
            old = legacy.table(CACHE_TABLE) if legacy is not None else None
        except Exception as error:
            raise RuntimeError(
                f"the Delta embedding cache {legacy.uri(CACHE_TABLE)} of an earlier version, to "
                f"be imported into {self.uri}, cannot be read ({type(error).__name__}: {error}); "
                "repair it, or move it away to start the new cache empty (its vectors would be "
                "paid for again)"
            ) from error
        start = time.perf_counter()
        source: pa.RecordBatchReader | pa.Table
        if old is None:
            source = EMBEDDING_CACHE.empty_table()
        else:
            source = pa.RecordBatchReader.from_batches(EMBEDDING_CACHE, _delta_batches(old))
        try:
            lance.write_dataset(source, self.uri, schema=EMBEDDING_CACHE, mode="create")
        except OSError as error:
            if "already exists" not in str(error):
                raise
            log.info("embedding cache %s was created by another writer meanwhile", self.uri)
            return
        if old is not None:
            log.info(
                "embedding cache: imported %d rows of the Delta table %s into %s (%.1f s)",
                self.count_rows(),
                legacy.uri(CACHE_TABLE),
                self.uri,
                time.perf_counter() - start,
            )
        self.fold_in()

    def count_rows(self) -> int:
        return self.dataset().count_rows()

    def unindexed_rows(self, dataset: lance.LanceDataset | None = None) -> int:
        """Rows a lookup scans flat: appended after the index was last updated."""
        dataset = dataset or self.dataset()
        if not _has_index(dataset):
            return dataset.count_rows()
        return int(dataset.stats.index_stats(INDEX_NAME)["num_unindexed_rows"])

    def lookup(self, keys: Sequence[str], version: int | None = None) -> pa.Table:
        """`cache_key` and `vector` of every key held, one row per key (its earliest)."""
        dataset = self.dataset(version)
        wanted = sorted(set(keys))
        found = [
            dataset.to_table(
                columns=[KEY_COLUMN, "vector", "created_at"],
                filter=pc.field(KEY_COLUMN).isin(wanted[start : start + KEYS_PER_LOOKUP]),
            )
            for start in range(0, len(wanted), KEYS_PER_LOOKUP)
        ]
        if not found:
            return pa.table(
                {KEY_COLUMN: pa.array([], pa.string()), "vector": pa.array([], _VECTOR_TYPE)}
            )
        rows = pl.from_arrow(pa.concat_tables(found))
        first = rows.sort("created_at").unique(subset=KEY_COLUMN, keep="first")
        return first.select(KEY_COLUMN, "vector").to_arrow().cast(_FOUND)

    def append(self, rows: pa.Table) -> None:
        """`rows` added in one commit (compatible with other writers' appends)."""
        if rows.num_rows:
            lance.write_dataset(rows.cast(EMBEDDING_CACHE), self.uri, mode="append")

    def write_fragments(self, rows: pa.Table) -> list[str]:
        """`rows` written as files of the table that no commit names yet (a Spark task's part);
        `commit_fragments` adds them. Returns the fragments' metadata as JSON."""
        from lance.fragment import write_fragments

        written = write_fragments(rows.cast(EMBEDDING_CACHE), self.uri, schema=EMBEDDING_CACHE)
        return [json.dumps(f.to_json()) for f in written]

    def commit_fragments(self, fragments: Sequence[str]) -> None:
        """Fragments from `write_fragments` added to the table in one append commit."""
        from lance.fragment import FragmentMetadata

        if not fragments:
            return
        operation = lance.LanceOperation.Append([FragmentMetadata.from_json(f) for f in fragments])
        dataset = self.dataset()
        lance.LanceDataset.commit(self.uri, operation, read_version=dataset.version)

    def fold_in(self) -> int:
        """Add the rows appended since the last index update to the BTree (creating it if the
        table has none); returns how many rows that was. A concurrent fold-in or append is a
        compatible commit; should one conflict anyway, the rows stay searchable (flat) and the
        next fold-in takes them."""
        dataset = self.dataset()
        unindexed = self.unindexed_rows(dataset)
        if not unindexed and _has_index(dataset):
            return 0
        try:
            if _has_index(dataset):
                dataset.optimize.optimize_indices(index_names=[INDEX_NAME])
            else:
                dataset.create_scalar_index(KEY_COLUMN, "BTREE", name=INDEX_NAME, replace=False)
        except (OSError, RuntimeError, ValueError) as error:
            log.warning("embedding cache: fold-in of %d rows skipped: %s", unindexed, error)
            return 0
        return unindexed

    def maintain(self, cleanup_older_than: timedelta) -> CacheMaintenance:
        """Compact the per-request fragments, fold every row into the index, and drop versions
        (and the files only they used) older than `cleanup_older_than`."""
        start = time.perf_counter()
        dataset = self.dataset()
        fragments, unindexed = len(dataset.get_fragments()), self.unindexed_rows(dataset)
        versions, problem = len(dataset.versions()), ""
        try:
            dataset.optimize.compact_files()
        except (OSError, RuntimeError) as error:
            # A run's commit (an index fold-in) conflicted: its write wins, the next
            # maintenance compacts what is there then; fold-in and cleanup still run.
            log.warning("compaction of the embedding cache skipped: %s", error)
            problem = f"compaction skipped: {error}"
        self.fold_in()
        dataset = self.dataset()
        dataset.cleanup_old_versions(older_than=cleanup_older_than)
        dataset = self.dataset()
        return CacheMaintenance(
            rows=dataset.count_rows(),
            fragments_before=fragments,
            fragments_after=len(dataset.get_fragments()),
            unindexed_rows_before=unindexed,
            unindexed_rows_after=self.unindexed_rows(dataset),
            versions_before=versions,
            versions_after=len(dataset.versions()),
            seconds=time.perf_counter() - start,
            problem=problem,
        )


_VECTOR_TYPE = pa.list_(pa.float32())
_FOUND = pa.schema([(KEY_COLUMN, pa.string()), ("vector", _VECTOR_TYPE)])


def _has_index(dataset: lance.LanceDataset) -> bool:
    return any(i.name == INDEX_NAME for i in dataset.describe_indices())


def _delta_batches(table) -> Iterator[pa.RecordBatch]:
    """The old Delta cache's rows in batches, cast to the cache schema (never all at once)."""
    scan = table.to_pyarrow_dataset().to_batches(
        columns=EMBEDDING_CACHE.names, batch_size=IMPORT_BATCH_ROWS
    )
    for batch in scan:
        yield pa.Table.from_batches([batch]).cast(EMBEDDING_CACHE).combine_chunks().to_batches()[0]


def vectors_of(found: pa.Table, dimension: int) -> np.ndarray:
    """The `vector` column of `found` as an (n, dimension) float32 array."""
    column = found.column("vector").combine_chunks()
    if len(column) == 0:
        return np.zeros((0, dimension), dtype=np.float32)
    lengths = pc.list_value_length(column)
    if pc.min(lengths).as_py() != dimension or pc.max(lengths).as_py() != dimension:
        raise ValueError(
            f"the embedding cache holds vectors whose length is not {dimension} "
            "under keys of that dimension: the cache table is damaged"
        )
    return pc.list_flatten(column).to_numpy(zero_copy_only=False).reshape(-1, dimension)


class LanceVectorCache:
    """The `VectorCache` of one model over a `CacheStore`: what `embed_with_cache` uses."""

    def __init__(self, cache: CacheStore, model_id: str, dimension: int):
        self.cache = cache
        self.model_id = model_id
        self.dimension = dimension

    def lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        if not keys:
            return {}
        found = self.cache.lookup(keys)
        vectors = vectors_of(found, self.dimension)
        return dict(zip(found.column(KEY_COLUMN).to_pylist(), vectors, strict=True))

    def store(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        self.cache.append(cache_rows(keys, vectors, self.model_id, self.dimension))

    def count_rows(self) -> int:
        return self.cache.count_rows()
