"""Themes on Banking77: quality against the intent labels, determinism and persistent ids."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from sklearn.metrics import v_measure_score

from semsearch.config import Settings
from semsearch.core.themes import OUTLIERS, ThemeParams, ThemeWindow, find_themes

SAMPLE = 1200


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
    return find_themes(ids, vectors, texts, ThemeParams(min_cluster_size=10))


def test_themes_match_intents_far_better_than_a_notebook(sample, themed):
    ids, _, _, labels = sample
    theme_of = dict(zip(themed.chunk_ids, themed.theme_ids, strict=True))
    v_measure = v_measure_score(labels, [theme_of[i] for i in ids])
    # A notebook's PCA + HDBSCAN scores V≈0.46 with about half the points as noise.
    assert v_measure >= 0.65
    assert themed.noise_share <= 0.30


def test_themes_have_keywords_sizes_and_representatives(themed):
    outliers = [t for t in themed.themes if t.theme_id == OUTLIERS]
    real = [t for t in themed.themes if t.theme_id != OUTLIERS]
    assert len(real) >= 20 and len(outliers) <= 1
    assert sum(t.size for t in themed.themes) == len(themed.chunk_ids)
    for theme in real:
        assert theme.keywords and len(theme.representatives) >= 1
        assert theme.size == len(theme.members)


def test_same_input_in_any_order_gives_the_same_themes(sample, themed):
    ids, vectors, texts, _ = sample
    order = np.random.default_rng(7).permutation(len(ids))
    again = find_themes(
        [ids[i] for i in order],
        vectors[order],
        [texts[i] for i in order],
        ThemeParams(min_cluster_size=10),
    )
    assert dict(zip(again.chunk_ids, again.theme_ids, strict=True)) == dict(
        zip(themed.chunk_ids, themed.theme_ids, strict=True)
    )


def test_theme_ids_carry_over_to_the_next_window(sample, themed):
    ids, vectors, texts, _ = sample
    previous = {t.theme_id: set(t.members) for t in themed.themes if t.theme_id != OUTLIERS}
    keep = len(ids) * 9 // 10  # the window slides: a tenth of the chunks drops out
    later = find_themes(
        ids[:keep], vectors[:keep], texts[:keep], ThemeParams(min_cluster_size=10), previous
    )
    later_ids = {t.theme_id for t in later.themes} - {OUTLIERS}
    assert len(later_ids & set(previous)) / len(later_ids) >= 0.7


def test_tiny_windows_become_outliers_instead_of_failing(local_backend):
    vectors = local_backend.embed(["one", "two", "three"]).vectors
    result = find_themes(
        ["a", "b", "c"],
        vectors,
        ["one", "two", "three"],
        ThemeParams(min_cluster_size=Settings().theme_min_cluster_size),
    )
    assert result.theme_ids == [OUTLIERS] * 3
    assert result.themes[0].theme_id == OUTLIERS and result.themes[0].size == 3


def test_theme_window_trails_the_day_and_never_reaches_before_the_first_partition():
    start = date(2026, 11, 1)
    month = ThemeWindow(30, start)
    assert month.first_day(date(2026, 12, 15)) == date(2026, 11, 16)
    assert month.first_day(date(2026, 11, 3)) == start
    assert month.days_before() == 29
    assert ThemeWindow(0, start).first_day(date(2027, 5, 1)) == start
