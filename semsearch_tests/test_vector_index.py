"""The LanceDB index: per-partition replace, model mixing refused, ANN recall against exact."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from semsearch.core.metrics import recall_at_k
from semsearch.storage.schemas import index_schema
from semsearch.storage.vector_index import (
    AnnParams,
    IndexModelMismatchError,
    VectorIndex,
)

N_VECTORS = 3000
DAYS = [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]


@pytest.fixture(scope="module")
def vectors(banking77, local_backend) -> np.ndarray:
    texts = [r["text"] for r in banking77[:: len(banking77) // N_VECTORS][:N_VECTORS]]
    return local_backend.embed(texts).vectors


def rows(
    vectors: np.ndarray, day: date, model_id: str = "local/test", prefix: str = "c"
) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "chunk_id": f"{prefix}{day.isoformat()}-{i}",
                "doc_id": f"d{i}",
                "partition_date": day,
                "title": None,
                "text": f"text {i}",
                "metadata": "{}",
                "metadata_tags": [],
                "model_id": model_id,
                "vector": v.tolist(),
            }
            for i, v in enumerate(vectors)
        ],
        schema=index_schema(vectors.shape[1]),
    )


def test_replacing_a_partition_keeps_the_others(tmp_path, vectors):
    index = VectorIndex(str(tmp_path))
    for day in DAYS:
        index.replace_partition(day, rows(vectors[:10], day), "local/test")
    stats = index.replace_partition(DAYS[1], rows(vectors[:4], DAYS[1]), "local/test")
    assert (stats.updated, stats.deleted, stats.inserted) == (4, 6, 0)
    assert index.count_rows() == 24
    assert index.count_rows("partition_date = date '2024-01-01'") == 10
    again = index.replace_partition(DAYS[1], rows(vectors[:4], DAYS[1]), "local/test")
    assert index.count_rows() == 24 and again.inserted == 0


def test_vectors_of_another_model_are_refused_with_a_clear_error(tmp_path, vectors):
    index = VectorIndex(str(tmp_path))
    index.replace_partition(DAYS[0], rows(vectors[:5], DAYS[0]), "local/test")
    with pytest.raises(IndexModelMismatchError, match="local/test.*openai/other"):
        index.replace_partition(DAYS[1], rows(vectors[:5], DAYS[1], "openai/other"), "openai/other")
    assert index.count_rows() == 5


def test_ann_index_is_built_past_the_threshold_and_keeps_recall_high(tmp_path, vectors):
    index = VectorIndex(str(tmp_path))
    params = AnnParams(min_rows=2000)
    half = len(vectors) // 2
    index.replace_partition(DAYS[0], rows(vectors[:half], DAYS[0]), "local/test")
    assert index.maintain_ann_index(params).startswith("exact")
    index.replace_partition(DAYS[1], rows(vectors[half:], DAYS[1]), "local/test")
    assert "built" in index.maintain_ann_index(params)
    assert index.has_ann_index()

    queries = vectors[::60] + np.random.default_rng(0).normal(
        0, 0.02, (len(vectors[::60]), vectors.shape[1])
    )
    approximate = [index.search(q, 10, None, params)["chunk_id"].to_pylist() for q in queries]
    exact = [index.search(q, 10, None, params, exact=True)["chunk_id"].to_pylist() for q in queries]
    assert recall_at_k(approximate, exact, 10) >= 0.9


def test_a_writer_that_loses_the_race_to_create_the_table_merges_into_it(tmp_path, vectors):
    late = VectorIndex(str(tmp_path))
    VectorIndex(str(tmp_path)).replace_partition(DAYS[0], rows(vectors[:3], DAYS[0]), "local/test")
    looks = []

    def table_as_seen():  # the late writer's first look came before the other's create
        looks.append(1)
        return None if len(looks) == 1 else VectorIndex.table(late)

    late.table = table_as_seen
    late.replace_partition(DAYS[1], rows(vectors[:4], DAYS[1]), "local/test")
    assert VectorIndex(str(tmp_path)).count_rows() == 7
