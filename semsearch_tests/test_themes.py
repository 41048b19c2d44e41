"""Themes on real Banking77 messages: quality against the intents, determinism, stable ids under a
sliding window, document-level counting, the bounded-memory path, keywords and the refit rule."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import v_measure_score

from semsearch.config import Settings
from semsearch.core.quality import assignments_kept
from semsearch.core.theme_keywords import KeywordCounter
from semsearch.core.themes import (
    OUTLIERS,
    ArraySource,
    ThemeParams,
    ThemeWindow,
    assign_themes,
    find_themes,
    fit_themes,
    refit_reason,
)

SAMPLE = 1200
PARAMS = ThemeParams.from_settings(Settings())  # the defaults, as the pipeline runs them


@pytest.fixture(scope="module")
def sample(banking77, local_backend):
    records = banking77[:: len(banking77) // SAMPLE][:SAMPLE]
    texts = [r["text"] for r in records]
    return (
        [r["id"] for r in records],
        local_backend.embed(texts).vectors,
        texts,
        [r["label"] for r in records],
    )


@pytest.fixture(scope="module")
def themed(sample):
    ids, vectors, texts, _ = sample
    return find_themes(ids, vectors, texts, PARAMS)


def v_measure(result, ids, labels) -> float:
    theme_of = result.theme_of()
    return v_measure_score(labels, [theme_of[i] for i in ids])


def test_themes_match_intents_with_few_outliers_and_a_count_that_follows_the_intents(
    sample, themed
):
    ids, _, _, labels = sample
    # Before topic reduction and outlier reduction: V 0.66 with 23% outliers on this sample.
    assert v_measure(themed, ids, labels) >= 0.74
    assert themed.noise_share <= 0.15
    themes = sum(t.theme_id != OUTLIERS for t in themed.themes)
    intents = len(set(labels))
    assert intents / 2 <= themes <= intents * 2


def test_themes_have_keywords_sizes_and_representatives(sample, themed):
    real = [t for t in themed.themes if t.theme_id != OUTLIERS]
    assert sum(t.size for t in themed.themes) == len(sample[0]) == themed.assignments.height
    for theme in real:
        assert theme.keywords and 1 <= len(theme.representatives) <= 3
        assert 0 < theme.threshold <= 1 and abs(np.linalg.norm(theme.centroid) - 1) < 1e-4


def test_same_input_in_any_order_gives_the_same_themes(sample, themed):
    ids, vectors, texts, _ = sample
    order = np.random.default_rng(7).permutation(len(ids))
    again = find_themes([ids[i] for i in order], vectors[order], [texts[i] for i in order], PARAMS)
    assert again.theme_of() == themed.theme_of()
    assert [t.keywords for t in again.themes] == [t.keywords for t in themed.themes]


def _window(sample, keep: np.ndarray):
    ids, vectors, texts, _ = sample
    rows = np.flatnonzero(keep)
    return ArraySource([ids[i] for i in rows], vectors[rows], [texts[i] for i in rows])


def test_a_tenth_of_the_window_replaced_keeps_nine_in_ten_documents_in_their_theme(sample):
    days = np.arange(len(sample[0])) % 10
    first = fit_themes(_window(sample, days <= 8), PARAMS)
    previous = first.assignments
    # The day's run: the model is kept, the new day's documents are assigned.
    known = previous.filter(pl.col("doc_id").is_in(list(_ids(sample, days >= 1))))
    kept = assign_themes(first.themes, known, _window(sample, days == 9).documents())
    daily = assignments_kept(kept.assignments, previous, 0.9, key="doc_id")
    assert daily.passed and daily.metadata["ari"] >= 0.99
    # A refit of the slid window: ids carry over by document overlap.
    refit = fit_themes(_window(sample, days >= 1), PARAMS, previous, first.themes)
    outcome = assignments_kept(refit.assignments, previous, 0.0, key="doc_id")
    assert outcome.metadata["share_kept"] >= 0.7
    carried = {t.theme_id for t in refit.themes} & {t.theme_id for t in first.themes}
    assert len(carried) >= 0.7 * len(first.themes)


def _ids(sample, keep: np.ndarray) -> set[str]:
    return {sample[0][i] for i in np.flatnonzero(keep)}


def test_one_huge_document_counts_once_and_owns_no_theme(sample, local_backend):
    ids, vectors, texts, _ = sample
    ids, vectors, texts = ids[:300], vectors[:300], texts[:300]
    log_lines = [f"ERROR worker {i} timeout connecting to db shard {i % 7}" for i in range(400)]
    log_vectors = local_backend.embed(log_lines).vectors
    chunk_ids = ids + [f"log-{i}" for i in range(len(log_lines))]
    doc_ids = ids + ["pasted-log"] * len(log_lines)
    result = find_themes(
        chunk_ids, np.vstack([vectors, log_vectors]), texts + log_lines, PARAMS, doc_ids=doc_ids
    )
    assert result.assignments.height == 301  # documents, not 700 chunks
    assert sum(t.size for t in result.themes) == 301
    log_theme = result.theme_of()["pasted-log"]
    assert all(t.size > 1 for t in result.themes if t.theme_id == log_theme)


def test_the_bounded_memory_path_fits_on_a_sample_and_assigns_every_document_in_batches(
    sample,
):
    ids, vectors, texts, labels = sample
    tiny = ThemeParams.from_settings(Settings(), fit_sample=400, batch_documents=100)
    result = fit_themes(ArraySource(ids, vectors, texts, batch_documents=100), tiny)
    assert result.stats["fit_sample"] == 400
    assert result.assignments.height == len(ids)
    assert v_measure(result, ids, labels) >= 0.5  # 5 messages per intent in the sample


def test_keywords_stay_within_the_vocabulary_and_a_long_document_does_not_own_them():
    texts = ["card arrived late", "card never arrived", "pin change", "change my pin code"]
    counter = KeywordCounter(texts + ["refund " * 500], themes=2, max_terms=8, min_df=1)
    assert len(counter.words) <= 8
    counter.add(texts[:2] + ["refund " * 500], np.array([0, 0, 0]))
    counter.add(texts[2:], np.array([1, 1]))
    card, pin, _ = counter.keywords(3)
    assert card[0] in {"card", "arrived"}  # one long document weighs as much as one short one
    assert "pin" in pin


def test_the_model_is_refitted_on_schedule_on_drift_or_on_new_settings_only():
    base = {
        "has_model": True,
        "same_params": True,
        "days_since_fit": 1,
        "refit_days": 7,
        "new_documents": 100,
        "new_outliers": 5,
        "fit_noise_share": 0.03,
        "drift_margin": 0.1,
        "min_cluster_size": 5,
    }
    assert refit_reason(**base) is None
    assert "no earlier model" in refit_reason(**base | {"has_model": False})
    assert "settings" in refit_reason(**base | {"same_params": False})
    assert "scheduled" in refit_reason(**base | {"days_since_fit": 7})
    assert "drift" in refit_reason(**base | {"new_outliers": 30})
    assert refit_reason(**base | {"new_documents": 4, "new_outliers": 4}) is None  # too few


def test_tiny_windows_become_outliers_instead_of_failing(local_backend):
    vectors = local_backend.embed(["one", "two", "three"]).vectors
    result = find_themes(["a", "b", "c"], vectors, ["one", "two", "three"], PARAMS)
    assert result.assignments["theme_id"].to_list() == [OUTLIERS] * 3
    assert result.themes[0].theme_id == OUTLIERS and result.themes[0].size == 3


def test_theme_window_trails_the_day_and_never_reaches_before_the_first_partition():
    start = date(2026, 11, 1)
    month = ThemeWindow(30, start)
    assert month.first_day(date(2026, 12, 15)) == date(2026, 11, 16)
    assert month.first_day(date(2026, 11, 3)) == start
    assert month.days_before() == 29
    assert ThemeWindow(0, start).first_day(date(2027, 5, 1)) == start
