"""The LanceDB vector index: one row per chunk, cosine distance, replaced a partition at a time."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, timedelta

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import IvfHnswSq

from semsearch.core.filters import sql_literal
from semsearch.storage.schemas import INDEX_TABLE

log = logging.getLogger(__name__)

METRIC = "cosine"


class IndexModelMismatchError(RuntimeError):
    """The index holds vectors of another model; mixing them would make distances meaningless."""


@dataclass(frozen=True)
class AnnParams:
    """IVF-HNSW-SQ parameters chosen for recall (see benchmarks/bench_ann_recall.py)."""

    min_rows: int  # exact search below this many rows (SEMSEARCH_ANN_MIN_ROWS)
    rows_per_partition: int = 4096
    nprobes: int = 32
    ef: int = 128
    refine_factor: int = 5

    def num_partitions(self, rows: int) -> int:
        return max(1, min(256, math.ceil(rows / self.rows_per_partition)))


@dataclass(frozen=True)
class WriteStats:
    inserted: int
    updated: int
    deleted: int
    total_rows: int


def day_filter(day: date) -> str:
    return f"partition_date = date {sql_literal(day.isoformat())}"


class VectorIndex:
    def __init__(self, uri: str, table_name: str = INDEX_TABLE):
        self.uri = uri
        self.table_name = table_name
        self._db = lancedb.connect(uri)

    def table(self):
        if self.table_name not in self._db.list_tables().tables:
            return None
        return self._db.open_table(self.table_name)

    def count_rows(self, where: str | None = None) -> int:
        table = self.table()
        return 0 if table is None else table.count_rows(where)

    def other_model_ids(self, model_id: str) -> list[str]:
        table = self.table()
        if table is None:
            return []
        rows = (
            table.search()
            .where(f"model_id != {sql_literal(model_id)}")
            .select(["model_id"])
            .limit(10_000)
            .to_arrow()
        )
        return sorted(set(rows.column("model_id").to_pylist()))

    def check_model(self, model_id: str) -> None:
        table = self.table()
        if table is None:
            return
        others = table.count_rows(f"model_id != {sql_literal(model_id)}")
        if others:
            raise IndexModelMismatchError(
                f"the vector index {self.uri}/{self.table_name} holds {others} vectors from "
                f"{', '.join(self.other_model_ids(model_id))}; this run embeds with "
                f"{model_id}. Re-embed every partition with one model, or point "
                "SEMSEARCH_LANCE_URI / SEMSEARCH_LANCE_TABLE at a new index."
            )

    def replace_partition(self, day: date, rows: pa.Table, model_id: str) -> WriteStats:
        """Make the index's rows for `day` exactly `rows`, in one commit."""
        table = self.table()
        if table is None:
            try:
                table = self._db.create_table(self.table_name, rows, mode="create")
                return WriteStats(rows.num_rows, 0, 0, table.count_rows())
            except ValueError:
                # Another writer created it first (the LanceDB pool normally prevents that):
                # merge into theirs.
                table = self.table()
                if table is None:
                    raise
        self.check_model(model_id)
        result = (
            table.merge_insert("chunk_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(day_filter(day))
            .execute(rows)
        )
        return WriteStats(
            result.num_inserted_rows,
            result.num_updated_rows,
            result.num_deleted_rows,
            table.count_rows(),
        )

    def delete_partition(self, day: date) -> int:
        table = self.table()
        if table is None:
            return 0
        before = table.count_rows()
        table.delete(day_filter(day))
        return before - table.count_rows()

    def optimize(self, cleanup_older_than: timedelta) -> tuple[int, int]:
        """Compact, fold new rows into the indices, drop older versions: versions before, after."""
        table = self.table()
        if table is None:
            return 0, 0
        before = len(table.list_versions())
        table.optimize(cleanup_older_than=cleanup_older_than)
        return before, len(table.list_versions())

    def has_ann_index(self) -> bool:
        table = self.table()
        return table is not None and any(
            i.index_type.upper().startswith("IVF") for i in table.list_indices()
        )

    def maintain_ann_index(self, params: AnnParams) -> str:
        """Build the ANN index once the table is big enough; afterwards fold new rows into it."""
        table = self.table()
        rows = 0 if table is None else table.count_rows()
        if table is None or rows < params.min_rows:
            return f"exact (no ANN index below {params.min_rows} rows)"
        if self.has_ann_index():
            table.optimize()
            return "ann (index updated)"
        table.create_index(
            "vector",
            config=IvfHnswSq(distance_type=METRIC, num_partitions=params.num_partitions(rows)),
        )
        return f"ann (IVF_HNSW_SQ built over {rows} rows)"

    def search(
        self, vector: np.ndarray, k: int, where: str | None, params: AnnParams, exact: bool = False
    ) -> pa.Table:
        table = self.table()
        if table is None:
            return pa.table({})
        query = table.search(np.asarray(vector, dtype=np.float32), vector_column_name="vector")
        query = query.distance_type(METRIC).limit(k)
        if where:
            query = query.where(where, prefilter=True)
        if exact:
            query = query.bypass_vector_index()
        else:
            query = query.nprobes(params.nprobes).ef(params.ef).refine_factor(params.refine_factor)
        return query.to_arrow()
