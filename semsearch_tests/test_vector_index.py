"""The LanceDB index: per-partition replace, model mixing refused, ANN recall against exact."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pytest
from lancedb.index import FTS, IvfHnswSq

from semsearch.core.metrics import recall_at_k
from semsearch.storage.schemas import index_schema
from semsearch.storage.vector_index import (
    AnnParams,
    IndexModelMismatchError,
    VectorIndex,
    segments_to_merge,
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


def tagged_rows(vectors: np.ndarray, labels: list[str], day: date) -> pa.Table:
    table = rows(vectors, day)
    tags = pa.array([[f"intent={label}"] for label in labels], pa.list_(pa.string()))
    return table.set_column(table.schema.get_field_index("metadata_tags"), "metadata_tags", tags)


@pytest.fixture(scope="module")
def labels(banking77) -> list[str]:
    return [r["label"] for r in banking77[:: len(banking77) // N_VECTORS][:N_VECTORS]]


def test_a_selective_filter_returns_exactly_the_exact_filtered_top_k(
    tmp_path, vectors, labels, local_backend
):
    # 2 MiB holds a day's 1,000 vectors (1.5 KiB each), not two days'.
    index = VectorIndex(str(tmp_path), resident_bytes=2**21)
    # Many small partitions and few probes: the matching rows lie outside the probed ones.
    params = AnnParams(min_rows=100, rows_per_partition=60, nprobes=2, ef=20, exact_filter_rows=200)
    thirds = np.array_split(np.arange(len(vectors)), len(DAYS))
    for day, part in zip(DAYS, thirds, strict=True):
        index.replace_partition(
            day, tagged_rows(vectors[part], [labels[i] for i in part], day), "local/test"
        )
    assert "built" in index.maintain_ann_index(params)
    rare = min(set(labels), key=labels.count)
    where = f"array_has(metadata_tags, 'intent={rare}')"
    assert 0 < index.count_rows(where) <= params.exact_filter_rows
    assert index.plan(where, params) == "exact"
    query = local_backend.embed(["I want to change my home address"]).vectors[0]
    found = index.search(query, 10, where, params)
    exact = index.search(query, 10, where, params, exact=True)
    assert found["chunk_id"].to_pylist() == exact["chunk_id"].to_pylist()
    assert found.num_rows == min(10, index.count_rows(where))
    # A broad filter whose rows fit in memory is answered exactly from them too.
    last_day = f"partition_date = date '{DAYS[-1]}'"
    assert index.count_rows(last_day) > params.exact_filter_rows
    assert index.plan(last_day, params) == "exact"
    exact = index.search(query, 10, last_day, params, exact=True)
    assert index.search(query, 10, last_day, params).equals(exact)
    # A filter matching more rows than memory holds goes through the ANN index, still only
    # returning matches.
    day_only = "partition_date >= date '2024-01-02'"
    assert index.plan(day_only, params) == "ann"
    hits = index.search(query, 10, day_only, params)
    assert hits.num_rows == 10 and min(hits["partition_date"].to_pylist()) >= DAYS[1]


# Exact search's three ways to the vectors: the whole table held in memory; only a filter's rows
# held (512 KiB holds a tag's ~50 rows, not the table's 2,500 nor a day's 500); none (Lance's scan).
@pytest.mark.parametrize("resident_bytes", [2**27, 2**19, 0], ids=["table", "filter", "none"])
def test_exact_search_is_the_brute_force_top_k_of_the_rows_that_match(
    tmp_path, vectors, labels, resident_bytes
):
    index = VectorIndex(str(tmp_path), resident_bytes=resident_bytes)
    params = AnnParams(min_rows=100, rows_per_partition=60, exact_filter_rows=5000)
    thirds = np.array_split(np.arange(len(vectors)), 3)
    common = max(set(labels), key=labels.count)
    filters = [
        f"array_has(metadata_tags, 'intent={common}')",
        "partition_date = date '2024-01-02'",
        None,
    ]
    for day, part in zip(DAYS, thirds, strict=True):
        index.replace_partition(
            day, tagged_rows(vectors[part], [labels[i] for i in part], day), "local/test"
        )
    index.maintain_ann_index(params)
    for where in filters:  # what is held for this version must not outlive it
        index.search(vectors[0], 10, where, params, exact=True)
    # Day 2 replaced by half of itself: its deleted rows must not come back.
    half = thirds[1][: len(thirds[1]) // 2]
    index.replace_partition(
        DAYS[1], tagged_rows(vectors[half], [labels[i] for i in half], DAYS[1]), "local/test"
    )
    live = {}  # chunk_id -> (vector, label, day): what the table holds now
    for day, part in zip(DAYS, [thirds[0], half, thirds[2]], strict=True):
        live |= {
            f"c{day.isoformat()}-{n}": (vectors[i], labels[i], day) for n, i in enumerate(part)
        }
    ids = np.array(list(live))
    matrix = np.array([v for v, _, _ in live.values()])
    masks = [
        [lab == common for _, lab, _ in live.values()],
        [d == DAYS[1] for _, _, d in live.values()],
        [True] * len(live),
    ]
    for query in vectors[::500] + 0.01:
        for where, mask in zip(filters, masks, strict=True):
            found = index.search(query, 10, where, params, exact=True)
            similarity = matrix[mask] @ query / np.linalg.norm(matrix[mask], axis=1)
            similarity /= np.linalg.norm(query)
            best = np.argsort(-similarity)[:10]
            assert found["chunk_id"].to_pylist() == ids[mask][best].tolist(), where
            np.testing.assert_allclose(
                found["_distance"].to_numpy(), 1 - similarity[best], atol=1e-5
            )
            assert set(found.column_names) >= {"text", "doc_id", "partition_date", "metadata"}


def test_the_ann_index_is_re_partitioned_once_the_table_outgrows_it(tmp_path, vectors):
    index = VectorIndex(str(tmp_path))
    params = AnnParams(min_rows=500, rows_per_partition=100, rebuild_growth=2.0)
    index.replace_partition(DAYS[0], rows(vectors[:600], DAYS[0]), "local/test")
    assert "built over 600" in index.maintain_ann_index(params)
    index.replace_partition(DAYS[1], rows(vectors[600:1100], DAYS[1]), "local/test")
    assert "updated" in index.maintain_ann_index(params)  # 1100 < 2 x 600
    assert index.ann_index_names() == ["vector_ivf_600_p6"]
    index.replace_partition(DAYS[2], rows(vectors[1100:1300], DAYS[2]), "local/test")
    assert "re-partitioned over 1300" in index.maintain_ann_index(params)
    assert index.ann_index_names() == ["vector_ivf_1300_p13"]
    hit = index.search(vectors[1200], 1, None, params)["chunk_id"].to_pylist()
    assert hit == [f"c{DAYS[2].isoformat()}-100"]


def ann_segments(index: VectorIndex) -> tuple[list[int], list[list[int]], set[int]]:
    """Rows per segment of the ANN index, the fragments each segment lists, the live ones."""
    dataset = index.table().to_lance()
    name = index.ann_index_names()[0]
    stats = dataset.stats.index_stats(name)
    assert stats["num_unindexed_rows"] == 0
    (ann,) = [i for i in dataset.describe_indices() if i.name == name]
    listed = [sorted(segment.fragment_ids) for segment in ann.segments]
    return (
        stats["num_indexed_rows_per_delta"],
        listed,
        {f.fragment_id for f in dataset.get_fragments()},
    )


def test_each_day_is_a_segment_of_its_own_and_maintenance_merges_them_like_a_binary_counter(
    tmp_path, vectors
):
    index = VectorIndex(str(tmp_path))
    params = AnnParams(min_rows=500, rebuild_growth=10.0)
    index.replace_partition(DAYS[0], rows(vectors[:600], DAYS[0]), "local/test")
    index.maintain_ann_index(params)
    merged = []
    for n, start in enumerate(range(600, 1000, 100)):  # four more days of 100 rows each
        day = date(2024, 2, 1 + n)
        index.replace_partition(day, rows(vectors[start : start + 100], day), "local/test")
        assert "ann (index updated" in index.maintain_ann_index(params)
        # A re-run of the day removes its fragment and, with it, its whole segment: no
        # segment lists a removed fragment (which Lance would mask out of every search).
        index.replace_partition(day, rows(vectors[start : start + 100], day), "local/test")
        index.maintain_ann_index(params)
        _, listed, live = ann_segments(index)
        assert set().union(*listed) <= live
        index.optimize(cleanup_older_than=timedelta(days=7))  # the nightly maintenance
        merged.append(ann_segments(index)[0])
    assert merged == [[600, 100], [600, 200], [600, 200, 100], [600, 400]]
    hit = index.search(vectors[950], 1, None, params)["chunk_id"].to_pylist()
    assert hit == [f"c{date(2024, 2, 4).isoformat()}-50"]


@pytest.mark.parametrize(
    ("deltas", "new", "merged"),
    [
        ([], 5, 0),
        ([5], 5, 1),
        ([10], 5, 0),
        ([10, 5], 5, 2),
        ([20, 10, 5], 5, 3),
        ([8, 3], 5, 2),
        ([9, 3], 5, 1),
    ],
)
def test_segments_to_merge_carries_like_a_binary_counter(deltas, new, merged):
    assert segments_to_merge(deltas, new) == merged


def test_an_index_partitioned_by_other_rules_is_re_partitioned_once(tmp_path, vectors):
    """An index of an earlier version (named without its partitions, 6 partitions of 100 rows)
    is rebuilt to the current rule (one partition up to a million rows), then only updated."""
    index = VectorIndex(str(tmp_path))
    index.replace_partition(DAYS[0], rows(vectors[:600], DAYS[0]), "local/test")
    index.table().create_index(
        "vector", config=IvfHnswSq(distance_type="cosine", num_partitions=6), name="vector_ivf_600"
    )
    params = AnnParams(min_rows=500)
    assert "re-partitioned over 600 rows, 1 partitions" in index.maintain_ann_index(params)
    assert index.ann_index_names() == ["vector_ivf_600_p1"]
    assert "updated" in index.maintain_ann_index(params)


def test_a_warm_index_sees_a_day_written_by_another_process(tmp_path, vectors):
    warm = VectorIndex(str(tmp_path))
    VectorIndex(str(tmp_path)).replace_partition(DAYS[0], rows(vectors[:5], DAYS[0]), "local/test")
    params = AnnParams(min_rows=10_000)
    assert warm.count_rows() == 5
    warm.check_model("local/test")
    writer = VectorIndex(str(tmp_path))
    writer.replace_partition(DAYS[1], rows(vectors[5:9], DAYS[1], prefix="n"), "local/test")
    assert warm.count_rows() == 9
    assert warm.search(vectors[7], 1, None, params)["chunk_id"].to_pylist() == [
        f"n{DAYS[1].isoformat()}-2"
    ]
    # The model check passed for the old version only: rows of another model are caught.
    writer.table().add(rows(vectors[:1], DAYS[2], "openai/other"))
    with pytest.raises(IndexModelMismatchError, match="openai/other"):
        warm.check_model("local/test")


def test_a_day_is_replaced_in_one_commit_and_its_new_rows_are_found_through_every_index(
    tmp_path, vectors
):
    index = VectorIndex(str(tmp_path))
    params = AnnParams(min_rows=500, rows_per_partition=100)
    for day, part in zip(DAYS, np.array_split(np.arange(900), 3), strict=True):
        index.replace_partition(day, rows(vectors[part], day), "local/test")
    assert "built" in index.maintain_ann_index(params)
    index.table().create_index("text", config=FTS(), replace=True)
    indexes_before = sorted(i.name for i in index.table().list_indices())
    version = index.table().version

    fresh = rows(vectors[2000:2100], DAYS[1], prefix="new")
    fresh = fresh.set_column(
        fresh.schema.get_field_index("text"), "text", pa.array(["zebra crossing"] * 100)
    )
    stats = index.replace_partition(DAYS[1], fresh, "local/test")

    assert index.table().version == version + 1  # delete of the day + add: one commit
    assert (stats.inserted, stats.updated, stats.deleted) == (100, 0, 300)
    assert sorted(i.name for i in index.table().list_indices()) == indexes_before
    on_day = index.table().search().where("partition_date = date '2024-01-02'").limit(1000)
    assert set(on_day.to_arrow()["chunk_id"].to_pylist()) == set(fresh["chunk_id"].to_pylist())
    assert index.search(vectors[2050], 1, None, params)["chunk_id"].to_pylist() == [
        f"new{DAYS[1].isoformat()}-50"
    ]
    keyword = index.table().search("zebra", query_type="fts").limit(1000).to_arrow()
    assert keyword.num_rows == 100
    assert index.count_rows() == 700


def test_a_chunk_that_moved_day_is_not_left_behind_in_its_old_day(tmp_path, vectors):
    index = VectorIndex(str(tmp_path))
    index.replace_partition(DAYS[0], rows(vectors[:5], DAYS[0], prefix="same"), "local/test")
    moved = rows(vectors[:2], DAYS[0], prefix="same").set_column(
        2, "partition_date", pa.array([DAYS[1]] * 2, pa.date32())
    )
    stats = index.replace_partition(DAYS[1], moved, "local/test")
    assert (stats.inserted, stats.updated, stats.deleted) == (0, 2, 0)
    ids = index.table().to_arrow()["chunk_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 5
    assert index.count_rows("partition_date = date '2024-01-02'") == 2
