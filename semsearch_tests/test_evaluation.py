"""Evaluation metrics against values computed by hand on toy inputs, and the BEIR file readers."""

from __future__ import annotations

import math
from datetime import date

import pytest

from semsearch.core import evaluation as ev
from semsearch.core.quality import label_agreement


def log2(x: float) -> float:
    return math.log(x, 2)


def test_ndcg_recall_and_mrr_match_hand_computed_values():
    qrels = {"q1": {"d1": 1, "d2": 1}, "q2": {"d5": 1}}
    rankings = {"q1": ["d3", "d1", "d4", "d2"], "q2": ["d6", "d7"]}
    scores = ev.per_query_scores(rankings, qrels)
    dcg = 1 / log2(3) + 1 / log2(5)  # relevant at ranks 2 and 4
    ideal = 1 + 1 / log2(3)
    assert scores["q1"]["ndcg@10"] == pytest.approx(dcg / ideal, abs=1e-4)
    assert scores["q1"]["recall@100"] == 1.0
    assert scores["q1"]["mrr@10"] == 0.5
    assert scores["q2"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    assert ev.retrieval_scores(rankings, qrels)["ndcg@10"] == pytest.approx(dcg / ideal / 2, 1e-4)


def test_graded_relevance_uses_the_grade_as_gain():
    qrels = {"q": {"a": 2, "b": 1}}
    scores = ev.per_query_scores({"q": ["b", "a"]}, qrels)
    dcg, ideal = 1 + 2 / log2(3), 2 + 1 / log2(3)
    assert scores["q"]["ndcg@10"] == pytest.approx(dcg / ideal, abs=1e-4)


def test_mrr_counts_the_first_ten_only_and_recall_the_first_hundred():
    ranked = [f"n{i}" for i in range(10)] + ["hit"]  # relevant at rank 11
    scores = ev.per_query_scores({"q": ranked}, {"q": {"hit": 1, "far": 1}})["q"]
    assert scores["mrr@10"] == 0.0
    assert scores["recall@100"] == 0.5
    deep = [f"n{i}" for i in range(100)] + ["far"]  # rank 101: outside Recall@100
    assert ev.per_query_scores({"q": deep}, {"q": {"far": 1}})["q"]["recall@100"] == 0.0


def test_search_order_is_kept_whatever_the_doc_ids_and_repeats_count_once():
    # trec_eval orders a run by score; ranks become strictly decreasing scores, so "z" stays
    # first although "a" sorts before it, and a repeated doc keeps its first rank.
    scores = ev.per_query_scores({"q": ["z", "z", "a"]}, {"q": {"a": 1}})["q"]
    assert scores["mrr@10"] == 0.5


def test_unjudged_queries_are_ignored_and_missing_ones_score_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 0}}  # q3: no relevant document
    scores = ev.per_query_scores({"q1": ["d1"], "other": ["d9"]}, qrels)
    assert set(scores) == {"q1", "q2"}
    assert ev.mean_scores(scores) == {"ndcg@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5}


def test_theme_scores_of_a_perfect_a_merged_and_a_crossed_clustering():
    labels = ["x", "x", "y", "y"]
    perfect = ev.theme_scores(["a", "a", "b", "b"], labels, "outliers")
    assert (perfect.v_measure, perfect.homogeneity, perfect.completeness, perfect.ari) == (
        1.0,
        1.0,
        1.0,
        1.0,
    )
    merged = ev.theme_scores(["a"] * 4, labels, "outliers")
    assert (merged.homogeneity, merged.completeness, merged.v_measure) == (0.0, 1.0, 0.0)
    # ARI of two crossed pairs: (0 - 2*2/6) / ((2+2)/2 - 2*2/6) = -0.5
    assert ev.theme_scores(["a", "b", "a", "b"], labels, "outliers").ari == pytest.approx(-0.5)


def test_theme_scores_match_the_entropy_definitions():
    themes, labels = ["a", "a", "a", "b"], ["x", "x", "y", "y"]
    h_labels = 1.0  # two labels, two documents each
    h_labels_given_theme = 3 / 4 * -(2 / 3 * log2(2 / 3) + 1 / 3 * log2(1 / 3))
    h_themes = -(3 / 4 * log2(3 / 4) + 1 / 4 * log2(1 / 4))
    h_themes_given_label = 1 / 2 * 1.0  # label y splits over a and b
    homogeneity = 1 - h_labels_given_theme / h_labels
    completeness = 1 - h_themes_given_label / h_themes
    v = 2 * homogeneity * completeness / (homogeneity + completeness)
    scores = ev.theme_scores(themes, labels, "outliers")
    assert scores.homogeneity == pytest.approx(homogeneity, abs=1e-4)
    assert scores.completeness == pytest.approx(completeness, abs=1e-4)
    assert scores.v_measure == pytest.approx(v, abs=1e-4)


def test_outliers_count_as_noise_and_unlabelled_documents_are_left_out_of_label_metrics():
    scores = ev.theme_scores(
        ["a", "a", "outliers", "b", "b"], ["x", "x", "y", None, "z"], "outliers"
    )
    assert scores.noise_share == 0.2
    assert scores.themes == 2
    assert (scores.documents, scores.labelled) == (5, 4)
    assert scores.homogeneity == 1.0  # every cluster (outliers included) holds one label
    with pytest.raises(ValueError, match="labels"):
        ev.theme_scores(["a"], [], "outliers")


def test_label_agreement_warns_below_the_floor_and_names_a_missing_key():
    scores = ev.theme_scores(["a", "a", "b", "b"], ["x", "y", "x", "y"], "outliers")
    assert not label_agreement(scores, 0.4).passed
    assert label_agreement(ev.theme_scores(["a", "b"], ["x", "y"], "outliers"), 0.4).passed
    missing = label_agreement(None, 0.4, "no document has the metadata key 'topic'")
    assert not missing.passed and "topic" in missing.description


def test_percentile_is_the_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert ev.percentile(values, 0.5) == 50.0
    assert ev.percentile(values, 0.99) == 99.0
    assert ev.percentile([3.0], 0.99) == 3.0
    assert ev.percentile([], 0.5) == 0.0


def test_beir_files_are_read_with_either_id_key_and_a_header(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "title": "T", "text": "x"}\n\n{"id": 7, "text": "y"}\n')
    assert ev.read_corpus(corpus) == [
        {"id": "d1", "title": "T", "text": "x"},
        {"id": "7", "title": "", "text": "y"},
    ]
    qrels = tmp_path / "test.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n")
    assert ev.read_qrels(qrels) == {"q1": {"d1": 1, "d2": 0}}
    trec = tmp_path / "qrels.txt"
    trec.write_text("q1 0 d1 2\n")
    assert ev.read_qrels(trec) == {"q1": {"d1": 2}}
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1\td1\t1\nq2\td2\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2"):
        ev.read_qrels(bad)


def test_an_undated_corpus_is_spread_over_the_days_at_noon_utc():
    days = [date(2024, 1, 1), date(2024, 1, 2)]
    dated = ev.dated_documents([{"id": str(i)} for i in range(3)], days)
    assert [d["created_at"] for d in dated] == [
        "2024-01-01T12:00:00+00:00",
        "2024-01-02T12:00:00+00:00",
        "2024-01-01T12:00:00+00:00",
    ]
