"""`semsearch eval` through the real entry point: a small SciFact subset ingested through the
pipeline and scored per search mode, and the themes of the session's demo-like home scored
against their labels."""

from __future__ import annotations

import json

import pytest

from semsearch.cli import main
from semsearch.core.evaluation import RETRIEVAL_METRICS, read_qrels
from semsearch.core.search_options import MODES
from semsearch.query import theme_assignments, themes
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS
from semsearch.testing.beir import beir_subset
from semsearch_tests.conftest import DATASETS

SUBSET_DOCUMENTS, QUERIES = 120, 30  # the judged documents of 30 test queries + distractors
# A sane floor for the local model on 120 documents (the whole SciFact test set scores ~0.65):
# far below means documents are lost, ids mangled or the ranking broken.
MIN_NDCG = 0.5


@pytest.fixture
def scifact_subset(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "unused_dagster_home"))
    return beir_subset(
        DATASETS / "scifact", tmp_path / "scifact", SUBSET_DOCUMENTS, queries_at_most=QUERIES
    )


def test_eval_retrieval_ingests_a_beir_subset_and_reports_every_mode(
    scifact_subset, tmp_path, capsys
):
    corpus, queries, qrels = scifact_subset
    home, report_path = tmp_path / "eval_home", tmp_path / "report.json"
    args = ["eval", "retrieval", "--queries", str(queries), "--qrels", str(qrels)]
    assert (
        main([*args, "--corpus", str(corpus), "--home", str(home), "--report", str(report_path)])
        == 0
    )

    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    judged = read_qrels(qrels)
    assert report["ingested"] is True
    assert report["documents_indexed"] == SUBSET_DOCUMENTS
    assert report["queries_evaluated"] == len(judged)
    assert report["judged_documents_not_indexed"] == 0
    assert set(report["modes"]) == set(MODES)
    for mode, row in report["modes"].items():
        assert set(RETRIEVAL_METRICS) <= set(row), mode
        assert row["ndcg@10"] >= MIN_NDCG, (mode, row)
        assert row["recall@100"] >= row["ndcg@10"] * 0.9, (mode, row)
        assert row["latency_ms"]["p99"] >= row["latency_ms"]["p50"] > 0
        assert set(report["per_query"][mode]) == set(judged)
        assert f"{row['ndcg@10']:.4f}" in out
    # The home is kept: evaluated again as it is, nothing is ingested and the figures repeat.
    again = tmp_path / "again.json"
    assert main([*args, "--home", str(home), "--report", str(again)]) == 0
    second = json.loads(again.read_text())
    assert second["ingested"] is False
    assert {m: r["ndcg@10"] for m, r in second["modes"].items()} == {
        m: r["ndcg@10"] for m, r in report["modes"].items()
    }


def test_eval_retrieval_of_a_home_with_nothing_indexed_says_so(scifact_subset, tmp_path, capsys):
    _, queries, qrels = scifact_subset
    args = ["eval", "retrieval", "--queries", str(queries), "--qrels", str(qrels)]
    assert main([*args, "--home", str(tmp_path / "empty")]) == 2
    assert "nothing is indexed" in capsys.readouterr().err


def test_eval_retrieval_with_a_missing_file_names_the_option(scifact_subset, tmp_path, capsys):
    _, queries, _ = scifact_subset
    missing = tmp_path / "qrels.tsv"
    args = ["eval", "retrieval", "--queries", str(queries), "--qrels", str(missing)]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"semsearch: error: --qrels {missing}: no such file"


def test_eval_themes_scores_the_latest_window_against_a_label_column(home, tmp_path, capsys):
    out_path = tmp_path / "themes.json"
    assert main(["eval", "themes", "--labels", "category", "--report", str(out_path)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out_path.read_text())
    window = themes(settings=home)
    last = window[0].window[1]
    assigned = DeltaTables(home.tables_path).read_partition(
        ASSIGNMENTS_TABLE, last, THEME_ASSIGNMENTS
    )
    assert report["window"][1] == last.isoformat()
    assert report["documents"] == report["labelled"] == assigned["doc_id"].n_unique()
    assert report["themes"] == sum(t.theme_id != "outliers" for t in window)
    outliers = assigned.filter(assigned["theme_id"] == "outliers")["doc_id"].n_unique()
    assert report["noise_share"] == pytest.approx(outliers / report["documents"], abs=1e-4)
    for name in ("v_measure", "homogeneity", "completeness"):
        assert 0.0 < report[name] <= 1.0, name
        assert f"{report[name]:.4f}" in printed
    # A document's theme is read back the same way the Python API gives it.
    doc = assigned["doc_id"][0]
    assert theme_assignments(doc, settings=home)["doc_id"][0] == doc


def test_eval_themes_with_an_unknown_label_names_the_keys_there_are(home, capsys):
    assert main(["eval", "themes", "--labels", "categroy"]) == 2
    err = capsys.readouterr().err
    assert "'categroy'" in err and "category" in err.replace("'categroy'", "")
