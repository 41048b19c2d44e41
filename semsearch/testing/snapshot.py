"""What a semsearch home holds, as comparable data: two equal runs must give equal snapshots.

Used by the tests (idempotency, resumability) and by `benchmarks/bench_fault_probe.py`.
"""

from __future__ import annotations

import polars as pl

from semsearch.config import Settings
from semsearch.storage.delta import DeltaTables
from semsearch.storage.vector_index import VectorIndex

# Columns that record when a row was written, not what it holds: left out of comparisons.
WRITE_TIMES = {"ingested_at", "rejected_at", "first_seen", "last_seen"}
TABLES = [
    "bronze_documents",
    "raw_documents",
    "chunks",
    "embeddings",
    "embedding_dead_letter",
    "themes",
    "theme_assignments",
    "rejected_records",
]
INDEX = "vector_index"


def snapshot(settings: Settings) -> dict[str, list[tuple]]:
    """Every table's rows (write times left out), sorted, and the index's rows (no vectors)."""
    tables = DeltaTables(settings.tables_path)
    state = {}
    for name in TABLES:
        if not tables.exists(name):
            state[name] = []
            continue
        frame = pl.read_delta(tables.uri(name))
        keep = [c for c in frame.columns if c not in WRITE_TIMES]
        state[name] = sorted(_hashable(r) for r in frame.select(keep).rows())
    table = VectorIndex(settings.lance_path, settings.lance_table).table()
    rows = table.to_arrow().drop_columns(["vector"]).to_pylist() if table is not None else []
    state[INDEX] = sorted(_hashable(tuple(r.values())) for r in rows)
    return state


def _hashable(row: tuple) -> tuple:
    return tuple(tuple(v) if isinstance(v, list) else v for v in row)
