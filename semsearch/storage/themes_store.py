"""Reading the window to cluster and writing themes and per-chunk theme assignments."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pyarrow as pa

from semsearch.core.themes import OUTLIERS, ThemeResult
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import (
    ASSIGNMENTS_TABLE,
    CHUNKS,
    CHUNKS_TABLE,
    EMBEDDINGS,
    EMBEDDINGS_TABLE,
    THEME_ASSIGNMENTS,
    THEMES,
    THEMES_TABLE,
)


def window_members(tables: DeltaTables, first: date, last: date) -> pl.DataFrame:
    """chunk_id, doc_id, vector and text of every embedded chunk dated within [first, last]."""
    vectors = tables.read_days(EMBEDDINGS_TABLE, first, last, EMBEDDINGS).select(
        "chunk_id", "doc_id", "vector"
    )
    texts = tables.read_days(CHUNKS_TABLE, first, last, CHUNKS).select("chunk_id", "text")
    return vectors.join(texts, on="chunk_id", how="inner").sort("chunk_id")


def previous_theme_members(tables: DeltaTables, day: date) -> dict[str, set[str]]:
    """Members of each theme of the latest window that ended before `day`."""
    assignments = tables.scan(ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS).filter(
        pl.col("partition_date") < day
    )
    latest = assignments.select(pl.col("partition_date").max()).collect().item()
    if latest is None:
        return {}
    rows = (
        assignments.filter((pl.col("partition_date") == latest) & (pl.col("theme_id") != OUTLIERS))
        .select("theme_id", "chunk_id")
        .collect()
    )
    members: dict[str, set[str]] = {}
    for theme_id, chunk_id in rows.iter_rows():
        members.setdefault(theme_id, set()).add(chunk_id)
    return members


def write_themes(
    tables: DeltaTables, day: date, first: date, result: ThemeResult, members: pl.DataFrame
) -> None:
    themes = pa.table(
        {
            "partition_date": [day] * len(result.themes),
            "theme_id": [t.theme_id for t in result.themes],
            "label": [t.label for t in result.themes],
            "keywords": [t.keywords for t in result.themes],
            "size": [t.size for t in result.themes],
            "representatives": [t.representatives for t in result.themes],
            "centroid": [np.asarray(t.centroid, dtype=np.float32).tolist() for t in result.themes],
            "window_start": [first] * len(result.themes),
        },
        schema=THEMES,
    )
    doc_of = dict(zip(members["chunk_id"].to_list(), members["doc_id"].to_list(), strict=True))
    assignments = pa.table(
        {
            "partition_date": [day] * len(result.chunk_ids),
            "chunk_id": result.chunk_ids,
            "doc_id": [doc_of[c] for c in result.chunk_ids],
            "theme_id": result.theme_ids,
            "probability": np.asarray(result.probabilities, dtype=np.float32),
        },
        schema=THEME_ASSIGNMENTS,
    )
    tables.replace_partition(THEMES_TABLE, day, themes, THEMES)
    tables.replace_partition(ASSIGNMENTS_TABLE, day, assignments, THEME_ASSIGNMENTS)
