"""The `embeddings` rows and the dead-letter table (both Delta); the embedding cache is a
LanceDB table, see `embedding_cache`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pyarrow as pa

from semsearch.core.embedding import EmbeddingFailure
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import (
    DEAD_LETTER_TABLE,
    EMBEDDING_DEAD_LETTER,
    EMBEDDINGS,
)


def vectors_column(vectors: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    fixed = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    return fixed.cast(pa.list_(pa.float32()))


def embeddings_table(
    chunks: pl.DataFrame, vectors: np.ndarray, day: date, model_id: str, dimension: int
) -> pa.Table:
    """Rows of the `embeddings` table: `chunks` (chunk_id, doc_id) with row i's vector."""
    return pa.table(
        {
            "chunk_id": chunks["chunk_id"].to_list(),
            "doc_id": chunks["doc_id"].to_list(),
            "partition_date": [day] * chunks.height,
            "model_id": [model_id] * chunks.height,
            "dimension": [dimension] * chunks.height,
            "vector": vectors_column(vectors.reshape(chunks.height, dimension)),
        },
        schema=EMBEDDINGS,
    )


def read_dead_letters(tables: DeltaTables, day: date) -> pl.DataFrame:
    return tables.read_partition(DEAD_LETTER_TABLE, day, EMBEDDING_DEAD_LETTER)


def record_dead_letters(
    tables: DeltaTables,
    day: date,
    model_id: str,
    chunk_ids: Sequence[str],
    failures: Sequence[EmbeddingFailure],
) -> None:
    """Make the day's dead letters exactly `failures`, in one commit.

    A chunk that failed before keeps its `first_seen`, and its `attempts` add up over runs; a
    chunk no longer failing (embedded, or gone from the day) loses its row.
    """
    now = datetime.now(UTC)
    earlier = {row["chunk_id"]: row for row in read_dead_letters(tables, day).iter_rows(named=True)}
    rows = []
    for failure in failures:
        chunk_id = chunk_ids[failure.index]
        before = earlier.get(chunk_id, {"first_seen": now, "attempts": 0})
        rows.append(
            {
                "chunk_id": chunk_id,
                "partition_date": day,
                "model_id": model_id,
                "error_class": failure.error_class,
                "message": failure.message,
                "attempts": before["attempts"] + failure.attempts,
                "first_seen": before["first_seen"],
                "last_seen": now,
            }
        )
    columns = {name: [r[name] for r in rows] for name in EMBEDDING_DEAD_LETTER.names}
    table = pa.table(columns, schema=EMBEDDING_DEAD_LETTER)
    if rows or tables.exists(DEAD_LETTER_TABLE):
        tables.replace_partition(DEAD_LETTER_TABLE, day, table, EMBEDDING_DEAD_LETTER)


def dead_letter_count(tables: DeltaTables, day: date | None = None) -> int:
    """Chunks of `day` (default: all days) that have no vector because embedding them failed."""
    scan = tables.scan(DEAD_LETTER_TABLE, EMBEDDING_DEAD_LETTER)
    if day is not None:
        scan = scan.filter(pl.col("partition_date") == day)
    return scan.select(pl.len()).collect().item()
