"""Known-item search: a paraphrase of an issue's title finds that issue in the top 3.

300 real GitHub issues (huggingface/datasets, 2021) are landed and indexed through Dagster; the
queries below are hand-written paraphrases of 29 of their titles, avoiding the titles' wording
where a natural paraphrase allows.
"""

from __future__ import annotations

import logging

import pytest
from dagster import DagsterInstance

from semsearch.config import Settings
from semsearch.core.filters import FilterError
from semsearch.query import search
from semsearch.runner import run_pipeline
from semsearch_tests.conftest import write_jsonl

log = logging.getLogger(__name__)

PARAPHRASES = {
    "1672": "loading a dataset freezes while waiting for a lock file",
    "1727": "computing the BLEURT metric fails with an unknown flag exception",
    "1771": "cannot connect to raw githubusercontent to fetch the csv loading script",
    "1817": "arrow error: the input_ids column has a mismatched length",
    "1856": "checksums do not match when downloading the amazon polarity reviews",
    "1919": "saving a dataset to disk does not work",
    "1973": "why does the cache folder take so much space and what is kept in it",
    "2009": "the documentation is unclear and confusing",
    "2058": "how can I turn a tensorflow datasets object into a hugging face dataset",
    "2104": "problem when I try to load the wiki movies data",
    "2144": "pyarrow exception while loading the english wikipedia dump",
    "2188": "the TIMIT speech corpus contains repeated examples",
    "2237": "the dataset size attribute is stale after applying map",
    "2360": "find datasets whose task schema is compatible automatically",
    "2413": "DatasetInfo is missing the task_templates attribute",
    "2474": "can I pass a cache directory when calling load_from_disk",
    "2520": "some datasets have task templates that are hard to handle",
    "2563": "interleaving datasets that are not streaming",
    "2629": "load data hosted on the hub when there is no loading script",
    "2677": "the C4 corpus fails to download",
    "2724": "not found error loading remote data files from a private repository",
    "2768": "arrow complains the added column length differs from the table after select",
    "2826": "request to add the KanHope text classification data",
    "2875": "new speech data for Congolese Swahili",
    "2919": "progress bars show up when I index into examples",
    "2965": "broken download link for the WMT17 chinese english pair",
    "3010": "filters applied one after another leak",
    "3057": "bug when computing precision for each class",
    "3099": "huggingface_hub hf_api has no DatasetInfo",
}
DAY = "2021-06-01"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, hf_issues):
    root = tmp_path_factory.mktemp("known_item")
    settings = Settings(home=str(root / "home"), partitions_start=DAY)
    in_2021 = sorted(
        (r for r in hf_issues if r["date"].startswith("2021")), key=lambda r: int(r["id"])
    )
    # One day holds all 300, so the test materializes one partition rather than a year of them.
    records = [r | {"created_at": f"{DAY}T12:00:00Z"} for r in in_2021[::2][:300]]
    write_jsonl(settings.landing_path / "issues.jsonl", records)
    with DagsterInstance.ephemeral(tempdir=str(root / "dagster")) as instance:
        run_pipeline(settings, instance)
    return settings


def test_paraphrased_titles_find_their_issue_in_the_top_three(indexed):
    found = {
        doc_id: doc_id in [h.doc_id for h in search(query, k=3, settings=indexed)]
        for doc_id, query in PARAPHRASES.items()
    }
    rate = sum(found.values()) / len(found)
    log.warning(
        "known-item top-3 rate: %d/%d = %.2f; missed: %s",
        sum(found.values()),
        len(found),
        rate,
        [d for d, ok in found.items() if not ok],
    )
    assert rate >= 0.75


def test_a_metadata_key_no_document_has_is_an_error_listing_the_keys(indexed):
    assert search("dataset loading", k=3, where={"state": "closed"}, settings=indexed)
    with pytest.raises(FilterError, match="'stat'.*the keys are: .*state") as error:
        search("dataset loading", k=3, where={"stat": "closed"}, settings=indexed)
    assert "comments" in str(error.value)


@pytest.mark.parametrize(
    ("query", "k", "message"),
    [("x" * 100_000, 3, "100,000 characters; at most 4,000"), ("bug", 0, "k must be 1..1000"),
     ("bug", 1001, "k must be 1..1000")],
)  # fmt: skip
def test_queries_and_k_out_of_bounds_are_refused_clearly(indexed, query, k, message):
    with pytest.raises(ValueError, match=message):
        search(query, k=k, settings=indexed)


def test_document_results_hold_each_document_once_and_chunks_stay_available(indexed):
    query = "loading a dataset fails with an error"
    # Vector mode: its documents are its chunk ranking collapsed (hybrid fuses documents as
    # documents; test_search_modes covers collapse in every mode).
    documents = search(query, k=10, settings=indexed, mode="vector")
    chunks = search(query, k=40, unit="chunk", settings=indexed, mode="vector")
    assert len(documents) == 10 and len({h.doc_id for h in documents}) == 10
    # The documents are the chunk ranking collapsed: each one's first (best) chunk, in order.
    first_chunk_of = {}
    for hit in chunks:
        first_chunk_of.setdefault(hit.doc_id, hit)
    collapsed = list(first_chunk_of.values())[:10]
    assert [h.chunk_id for h in documents] == [h.chunk_id for h in collapsed]
    assert any(h.matched_chunks > 1 for h in documents) or len(chunks) == len(first_chunk_of)


def test_hits_mark_the_query_words_in_their_passage(indexed):
    hit = search("metric computation", k=1, settings=indexed)[0]
    marked = {hit.text[a:b].lower() for a, b in hit.highlights}
    assert marked and all(word.startswith(("metric", "comput")) for word in marked)


@pytest.mark.parametrize(
    ("option", "message"),
    [({"mode": "fuzzy"}, "mode must be one of"),
     ({"unit": "page"}, "unit must be one of document, chunk")],
)  # fmt: skip
def test_unknown_mode_or_unit_is_refused_naming_the_choices(indexed, option, message):
    with pytest.raises(ValueError, match=message):
        search("bug", settings=indexed, **option)
