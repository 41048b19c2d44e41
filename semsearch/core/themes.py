"""Themes: reduce embeddings with UMAP, cluster with HDBSCAN, label with c-TF-IDF keywords.

Deterministic by construction: inputs are ordered by chunk id before anything random happens and
UMAP runs with a fixed seed, so the same chunks give the same themes. Theme ids persist across
windows: a new cluster inherits the id of the previous window's theme it shares most members
with (optimal one-to-one matching), otherwise it gets an id derived from its members.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

log = logging.getLogger(__name__)

OUTLIERS = "outliers"


ALL_HISTORY_DAYS = 100_000  # "all history" as an offset: longer than any partition range


@dataclass(frozen=True)
class ThemeWindow:
    """The trailing window of days a day's themes cluster; `days=0` means all history."""

    days: int
    first_partition: date  # no window reaches before the first partition

    def first_day(self, day: date) -> date:
        if self.days <= 0:
            return self.first_partition
        return max(self.first_partition, day - timedelta(days=self.days - 1))

    def days_before(self) -> int:
        """How many days before its day a window reaches, at most (its upstream offset)."""
        return self.days - 1 if self.days > 0 else ALL_HISTORY_DAYS


WEB_STOP_WORDS = frozenset({"http", "https", "www", "com", "html", "org", "github"})
SEED = 42


@dataclass(frozen=True)
class ThemeParams:
    min_cluster_size: int  # SEMSEARCH_THEME_MIN_CLUSTER_SIZE
    min_samples: int | None = 5
    n_components: int = 5
    n_neighbors: int = 15
    keywords: int = 5
    representatives: int = 3
    match_min_jaccard: float = 0.3


@dataclass
class Theme:
    theme_id: str
    keywords: list[str]
    size: int
    representatives: list[str]
    centroid: np.ndarray
    members: list[str]

    @property
    def label(self) -> str:
        if self.theme_id == OUTLIERS or not self.keywords:
            return self.theme_id
        return ", ".join(self.keywords[:3])


@dataclass
class ThemeResult:
    themes: list[Theme]  # the outlier bucket included, with id OUTLIERS
    chunk_ids: list[str]
    theme_ids: list[str]  # per chunk, aligned with chunk_ids
    probabilities: np.ndarray

    @property
    def noise_share(self) -> float:
        if not self.theme_ids:
            return 0.0
        return sum(t == OUTLIERS for t in self.theme_ids) / len(self.theme_ids)


def reduce_dimensions(vectors: np.ndarray, params: ThemeParams) -> np.ndarray:
    """UMAP to a few dimensions, where density-based clustering works on sentence embeddings."""
    n = len(vectors)
    if n <= params.n_components + 2:
        return vectors
    import umap  # heavy import (numba), only when clustering

    reducer = umap.UMAP(
        n_neighbors=min(params.n_neighbors, n - 1),
        n_components=params.n_components,
        min_dist=0.0,
        metric="cosine",
        random_state=SEED,
        n_jobs=1,  # a fixed seed forces one thread anyway; saying so silences UMAP's warning
        init="spectral" if n > params.n_neighbors * 2 else "random",
    )
    return reducer.fit_transform(vectors)


def cluster_labels(reduced: np.ndarray, params: ThemeParams) -> tuple[np.ndarray, np.ndarray]:
    n = len(reduced)
    if n < params.min_cluster_size * 2:
        return np.full(n, -1), np.zeros(n, dtype=np.float32)
    import hdbscan

    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=params.min_cluster_size,
        min_samples=params.min_samples,
        metric="euclidean",
        cluster_selection_method="leaf",
        core_dist_n_jobs=1,
    )
    labels = clusterer.fit_predict(reduced)
    return labels, clusterer.probabilities_.astype(np.float32)


def ctfidf_keywords(texts_per_class: Sequence[str], top: int) -> list[list[str]]:
    """Class-based TF-IDF: words frequent in one theme and rare across themes."""
    if not texts_per_class:
        return []
    vectorizer = CountVectorizer(
        stop_words=list(ENGLISH_STOP_WORDS | WEB_STOP_WORDS),
        token_pattern=r"(?u)\b[^\W\d_][^\W\d_]+\b",  # words, not numbers or identifiers
        ngram_range=(1, 2),
    )
    try:
        counts = vectorizer.fit_transform(texts_per_class).toarray().astype(np.float64)
    except ValueError:  # only stop words
        return [[] for _ in texts_per_class]
    words = vectorizer.get_feature_names_out()
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    avg_words = counts.sum() / len(texts_per_class)
    idf = np.log(1 + avg_words / np.maximum(counts.sum(axis=0), 1))
    scores = tf * idf
    return [_distinct_keywords(words, row, top) for row in scores]


def _distinct_keywords(words: np.ndarray, scores: np.ndarray, top: int) -> list[str]:
    """Best-scoring terms, skipping a term whose words a better term already shows."""
    picked: list[str] = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] <= 0 or len(picked) == top:
            break
        term = words[i]
        shown = {w for p in picked for w in p.split()}
        if not set(term.split()) <= shown:
            picked.append(term)
    return picked


def _representatives(
    vectors: np.ndarray, texts: Sequence[str], centroid: np.ndarray, k: int
) -> list[str]:
    sims = vectors @ centroid
    order = np.argsort(-sims, kind="stable")
    picked: list[str] = []
    for i in order:
        if texts[i] not in picked:
            picked.append(texts[i])
        if len(picked) == k:
            break
    return picked


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v)
    return v / norm if norm else v


def _member_id(members: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()
    return "theme-" + digest[:8]


def match_theme_ids(
    clusters: list[list[str]], previous: dict[str, set[str]], min_jaccard: float
) -> list[str]:
    """Give each cluster the id of the previous theme it overlaps most (one-to-one)."""
    ids = [_member_id(members) for members in clusters]
    if not clusters or not previous:
        return ids
    prev_ids = sorted(previous)
    scores = np.zeros((len(clusters), len(prev_ids)))
    for i, members in enumerate(clusters):
        current = set(members)
        for j, pid in enumerate(prev_ids):
            union = len(current | previous[pid])
            scores[i, j] = len(current & previous[pid]) / union if union else 0.0
    rows, cols = linear_sum_assignment(-scores)
    for i, j in zip(rows, cols, strict=True):
        if scores[i, j] >= min_jaccard:
            ids[i] = prev_ids[j]
    return ids


def find_themes(
    chunk_ids: Sequence[str],
    vectors: np.ndarray,
    texts: Sequence[str],
    params: ThemeParams,
    previous: dict[str, set[str]] | None = None,
) -> ThemeResult:
    """Cluster chunks into themes; `previous` maps earlier theme ids to their member chunk ids."""
    order = np.argsort(np.asarray(chunk_ids, dtype=object), kind="stable")
    chunk_ids = [chunk_ids[i] for i in order]
    texts = [texts[i] for i in order]
    vectors = np.asarray(vectors, dtype=np.float32)[order]

    labels, probabilities = cluster_labels(reduce_dimensions(vectors, params), params)
    cluster_numbers = sorted(set(labels.tolist()) - {-1})
    members = [[chunk_ids[i] for i in np.flatnonzero(labels == c)] for c in cluster_numbers]
    ids = match_theme_ids(members, previous or {}, params.match_min_jaccard)
    id_of = dict(zip(cluster_numbers, ids, strict=True)) | {-1: OUTLIERS}

    groups = cluster_numbers + ([-1] if (labels == -1).any() else [])
    joined = [" ".join(texts[i] for i in np.flatnonzero(labels == c)) for c in groups]
    keywords = ctfidf_keywords(joined, params.keywords)
    themes = []
    for c, words in zip(groups, keywords, strict=True):
        idx = np.flatnonzero(labels == c)
        centroid = _unit(vectors[idx].mean(axis=0))
        themes.append(
            Theme(
                theme_id=id_of[c],
                keywords=words,
                size=len(idx),
                representatives=_representatives(
                    vectors[idx], [texts[i] for i in idx], centroid, params.representatives
                ),
                centroid=centroid,
                members=[chunk_ids[i] for i in idx],
            )
        )
    themes.sort(key=lambda t: (t.theme_id == OUTLIERS, -t.size, t.theme_id))
    return ThemeResult(
        themes=themes,
        chunk_ids=chunk_ids,
        theme_ids=[id_of[int(c)] for c in labels],
        probabilities=probabilities,
    )
