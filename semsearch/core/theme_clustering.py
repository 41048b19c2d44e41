"""Fitting themes: UMAP + HDBSCAN on a bounded sample, topic reduction, nearest-theme assignment.

The steps, each a plain function of numpy arrays:

1. `cluster_sample`: UMAP to a few dimensions, then HDBSCAN with leaf selection; the smallest
   theme is a share of the sample (`min_cluster_share`), so the number of themes follows how
   many topics the data holds, not how many documents the window happens to have.
2. `merge_similar`: topic reduction (as BERTopic's): leaf clusters whose centroids are nearly the
   same direction are one topic split by density; they are merged, closest pair first.
3. `theme_thresholds` and `assign`: every document, in the sample or not, goes to its nearest
   theme centroid (cosine) when it sits as close as that theme's own members do (outlier
   reduction); the rest stay outliers. The same rule for sampled and unsampled documents makes
   the result independent of which documents happened to be sampled, and lets assignment run in
   batches over any number of documents.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

SEED = 42
NOISE = -1


@dataclass(frozen=True)
class ClusterParams:
    min_cluster_size: int  # floor of the smallest theme, in documents
    min_cluster_share: float  # the smallest theme as a share of the fit sample
    min_samples: int
    n_components: int
    n_neighbors: int
    merge_similarity: float  # centroid cosine at or above which two themes are one
    member_quantile: float  # outlier bound: this quantile of a theme's members' similarity

    def cluster_size(self, documents: int) -> int:
        return max(self.min_cluster_size, round(self.min_cluster_share * documents))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)


def doc_hash(doc_id: str) -> int:
    """A stable 64-bit hash of a document id (same across processes and library versions)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big")


def sample_ids(doc_ids: Iterable[str], size: int) -> set[str]:
    """The `size` documents with the smallest id hash: deterministic, order-free, and mostly the
    same documents when a tenth of the window changes (a bounded heap, whatever the window)."""
    heap: list[tuple[int, str]] = []  # max-heap by negated hash
    for doc_id in doc_ids:
        item = (-doc_hash(doc_id), doc_id)
        if len(heap) < size:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    return {doc_id for _, doc_id in heap}


def reduce_dimensions(vectors: np.ndarray, params: ClusterParams) -> np.ndarray:
    """UMAP to a few dimensions, where density-based clustering works on sentence embeddings."""
    n = len(vectors)
    if n <= params.n_components + 2:
        return vectors
    import umap  # heavy import (numba), only when fitting

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


def cluster_sample(vectors: np.ndarray, params: ClusterParams) -> np.ndarray:
    """HDBSCAN leaf clusters of the (reduced) sample; NOISE for points in no cluster."""
    n = len(vectors)
    size = params.cluster_size(n)
    if n < size * 2:
        return np.full(n, NOISE)
    import hdbscan

    reduced = reduce_dimensions(vectors, params)
    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=size,
        min_samples=min(params.min_samples, size),
        metric="euclidean",
        cluster_selection_method="leaf",
        core_dist_n_jobs=1,
    )
    return clusterer.fit_predict(reduced)


def centroids_of(vectors: np.ndarray, labels: np.ndarray, clusters: Sequence[int]) -> np.ndarray:
    if not len(clusters):
        return np.zeros((0, vectors.shape[1]), dtype=np.float32)
    return unit_rows(np.stack([vectors[labels == c].mean(axis=0) for c in clusters]))


def merge_similar(vectors: np.ndarray, labels: np.ndarray, min_similarity: float) -> np.ndarray:
    """Merge clusters whose centroids have cosine >= `min_similarity`, the closest pair first.

    Centroid linkage on size-weighted means: after each merge the merged centroid is recomputed,
    so a chain of slightly different clusters does not collapse into one.
    """
    labels = labels.copy()
    clusters = sorted(set(labels.tolist()) - {NOISE})
    if len(clusters) < 2:
        return labels
    sums = {c: vectors[labels == c].sum(axis=0).astype(np.float64) for c in clusters}
    while len(sums) > 1:
        ids = sorted(sums)
        cents = unit_rows(np.stack([sums[c] for c in ids]))
        sims = cents @ cents.T
        np.fill_diagonal(sims, -np.inf)
        i, j = np.unravel_index(np.argmax(sims), sims.shape)
        if sims[i, j] < min_similarity:
            break
        keep, gone = ids[min(i, j)], ids[max(i, j)]
        sums[keep] += sums.pop(gone)
        labels[labels == gone] = keep
    # Renumber 0..k-1 in order of first appearance of the smallest original label.
    remap = {c: k for k, c in enumerate(sorted(sums))}
    return np.array([remap.get(int(c), NOISE) for c in labels])


def theme_thresholds(
    vectors: np.ndarray, labels: np.ndarray, centroids: np.ndarray, quantile: float
) -> np.ndarray:
    """Per theme, the similarity its members reach at `quantile`: the outlier bound."""
    bounds = np.zeros(len(centroids), dtype=np.float32)
    for k, centroid in enumerate(centroids):
        sims = vectors[labels == k] @ centroid
        bounds[k] = np.quantile(sims, quantile) if len(sims) else 1.0
    return bounds


def assign(
    vectors: np.ndarray, centroids: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest theme and its cosine for each (unit) vector; NOISE below the theme's bound."""
    if not len(centroids):
        return np.full(len(vectors), NOISE), np.zeros(len(vectors), dtype=np.float32)
    sims = vectors @ centroids.T
    best = np.argmax(sims, axis=1)
    similarity = sims[np.arange(len(vectors)), best].astype(np.float32)
    labels = np.where(similarity >= thresholds[best], best, NOISE)
    return labels, similarity


@dataclass
class FittedClusters:
    centroids: np.ndarray  # unit, one row per theme
    thresholds: np.ndarray  # minimum cosine to join each theme
    sample_labels: np.ndarray  # per sampled document after merging and reassignment
    leaf_clusters: int  # HDBSCAN's clusters before merging
    cluster_size: int  # the min_cluster_size used


def fit_clusters(vectors: np.ndarray, params: ClusterParams) -> FittedClusters:
    """Themes of the sample: cluster, merge the same topic, then reduce the outliers.

    HDBSCAN's members keep their theme; its outliers join their nearest theme when they sit
    inside it (`assign`), the rest stay outliers.
    """
    vectors = unit_rows(vectors)
    leaf = cluster_sample(vectors, params)
    leaf_count = len(set(leaf.tolist()) - {NOISE})
    merged = merge_similar(vectors, leaf, params.merge_similarity)
    clusters = sorted(set(merged.tolist()) - {NOISE})
    centroids = centroids_of(vectors, merged, clusters)
    thresholds = theme_thresholds(vectors, merged, centroids, params.member_quantile)
    nearest, _ = assign(vectors, centroids, thresholds)
    labels = np.where(merged == NOISE, nearest, merged)
    log.info(
        "fitted %d themes (%d leaf clusters merged) on %d documents",
        len(clusters),
        leaf_count,
        len(vectors),
    )
    return FittedClusters(
        centroids, thresholds, labels, leaf_count, params.cluster_size(len(vectors))
    )
