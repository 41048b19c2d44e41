"""What the index holds for a day: embeddings joined with chunk text and document metadata."""

from __future__ import annotations

from datetime import date

import polars as pl
import pyarrow as pa

from semsearch.core.filters import metadata_tags
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import (
    CHUNKS,
    CHUNKS_TABLE,
    DOCUMENTS,
    EMBEDDINGS,
    EMBEDDINGS_TABLE,
    RAW_TABLE,
    index_schema,
)


def index_rows(tables: DeltaTables, day: date) -> tuple[pa.Table | None, str | None, int]:
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
