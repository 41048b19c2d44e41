"""Search filters reach LanceDB only as validated, quoted SQL: injections fail or match nothing."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from semsearch.config import Settings
from semsearch.core.filters import FilterError, SearchFilter, metadata_tags
from semsearch.storage.schemas import index_schema
from semsearch.storage.vector_index import AnnParams, VectorIndex

TEXTS = [
    ("c1", date(2024, 1, 1), "my card has not arrived", {"category": "card", "team": "o'neil"}),
    ("c2", date(2024, 1, 2), "refund for a double charge", {"category": "billing"}),
    ("c3", date(2024, 1, 3), "how to reset my passcode", {"category": "security"}),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory, local_backend) -> VectorIndex:
    vectors = local_backend.embed([t for _, _, t, _ in TEXTS]).vectors
    rows = pa.Table.from_pylist(
        [
            {
                "chunk_id": cid,
                "doc_id": cid,
                "partition_date": day,
                "title": None,
                "text": text,
                "metadata": json.dumps(meta),
                "metadata_tags": metadata_tags(json.dumps(meta)),
                "model_id": local_backend.model_id,
                "vector": vec.tolist(),
            }
            for (cid, day, text, meta), vec in zip(TEXTS, vectors, strict=True)
        ],
        schema=index_schema(local_backend.dimension),
    )
    vector_index = VectorIndex(str(tmp_path_factory.mktemp("lance")))
    for day in sorted({d for _, d, _, _ in TEXTS}):
        vector_index.replace_partition(
            day, rows.filter(pa.compute.equal(rows["partition_date"], day)), local_backend.model_id
        )
    return vector_index


def run(index: VectorIndex, backend, **filters) -> list[str]:
    where = SearchFilter.parse(**filters).to_sql()
    query = backend.embed(["card"]).vectors[0]
    return index.search(query, 10, where, AnnParams(min_rows=Settings().ann_min_rows), exact=True)[
        "chunk_id"
    ].to_pylist()


def test_metadata_and_date_filters_select_rows(index, local_backend):
    assert run(index, local_backend, where=["category=billing"]) == ["c2"]
    assert run(index, local_backend, where={"team": "o'neil"}) == ["c1"]  # quote inside a value
    assert sorted(run(index, local_backend, since="2024-01-02")) == ["c2", "c3"]
    assert run(index, local_backend, since="2024-01-01", until="2024-01-01") == ["c1"]


@pytest.mark.parametrize(
    "value",
    ["card' OR '1'='1", "x') OR true OR ('", "card'; DROP TABLE chunks; --", "' OR 1=1 --"],
)
def test_injection_in_a_value_matches_nothing_and_changes_nothing(index, local_backend, value):
    before = index.count_rows()
    assert run(index, local_backend, where=[f"category={value}"]) == []
    assert index.count_rows() == before


@pytest.mark.parametrize(
    "pair", ["category) OR (1=1=x", "1=1", "cat egory=x", "category", "a;b=c", "x'--=1"]
)
def test_malformed_keys_are_rejected_with_a_clear_error(pair):
    with pytest.raises(FilterError):
        SearchFilter.parse(where=[pair])


@pytest.mark.parametrize("since", ["2024-01-01' OR '1'='1", "yesterday", "2024-13-01"])
def test_dates_must_be_iso_dates(since):
    with pytest.raises(FilterError, match="not a date"):
        SearchFilter.parse(since=since)


def test_since_after_until_is_an_error():
    with pytest.raises(FilterError, match="after"):
        SearchFilter.parse(since="2024-02-01", until="2024-01-01")


def test_vectors_returned_are_cosine_scores(index, local_backend):
    query = local_backend.embed(["my card has not arrived"]).vectors[0]
    top = index.search(query, 1, None, AnnParams(min_rows=Settings().ann_min_rows), exact=True)
    assert top["chunk_id"][0].as_py() == "c1"
    assert top["_distance"][0].as_py() == pytest.approx(0.0, abs=1e-5)
    assert np.isfinite(top["_distance"].to_numpy()).all()


@pytest.mark.parametrize("where", [{1: "x"}, {"category": 3}, {None: "x"}])
def test_non_string_keys_and_values_are_filter_errors_not_type_errors(where):
    with pytest.raises(FilterError):
        SearchFilter.parse(where=where)


def test_spaces_around_key_and_value_are_ignored():
    assert SearchFilter.parse(where=[" label = bug "]).where == {"label": "bug"}
