"""Themes of a window of documents: fit on a bounded sample, assign every document in batches.

A theme describes documents, not chunks: a document is its chunks' mean vector (so a pasted log
of 5,000 chunks counts once, like a one-line ticket), and every count is of documents.

Fitting (`fit_themes`) reads the window twice, one batch at a time: once for the ids (to draw a
deterministic sample of at most `fit_sample` documents, the smallest id hashes), once to assign
every document to its nearest theme, count keywords and pick representatives. Only the sample is
ever held whole, so memory stops growing with the window once it exceeds the sample.

Deterministic by construction: the sample and its order depend on document ids only, UMAP runs
with a fixed seed, and ties break by id, so the same documents give the same themes in any order.
Theme ids persist across windows: a theme inherits the id of the previous window's theme it
shares most documents with (optimal one-to-one matching), otherwise it gets an id derived from
its sampled members. A day's run can also keep the fitted themes and assign only what is new
(`assign_themes`); `refit_reason` says when the model must be fitted again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Protocol

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment

from semsearch.config import Settings
from semsearch.core.theme_clustering import (
    NOISE,
    ClusterParams,
    assign,
    fit_clusters,
    sample_ids,
    unit_rows,
)
from semsearch.core.theme_keywords import KeywordCounter

log = logging.getLogger(__name__)

OUTLIERS = "outliers"
ALL_HISTORY_DAYS = 100_000  # "all history" as an offset: longer than any partition range
REPRESENTATIVE_CHARS = 1000  # a representative text is cut here; a theme is read, not dumped


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


@dataclass(frozen=True)
class ThemeParams:
    """How themes are fitted and kept. The tunable ones are settings (`Settings.theme_*`, where
    their defaults live): build with `from_settings`."""

    min_cluster_size: int  # floor of the smallest theme, in documents
    min_cluster_share: float  # the smallest theme as a share of the fit sample
    min_samples: int
    merge_similarity: float
    member_quantile: float
    fit_sample: int
    batch_documents: int
    vocabulary: int
    keyword_min_df: int
    refit_days: int
    drift_margin: float
    keep_margin: float
    # Fixed by the method (see theme_clustering), not settings.
    n_components: int = 5
    n_neighbors: int = 15
    keywords: int = 5
    representatives: int = 3
    keyword_chars: int = 5_000  # of a document's text, for keywords and representatives
    match_min_jaccard: float = 0.3

    @classmethod
    def from_settings(cls, settings: Settings, **changes: object) -> ThemeParams:
        values = {
            "min_cluster_size": settings.theme_min_cluster_size,
            "min_cluster_share": settings.theme_min_cluster_share,
            "min_samples": settings.theme_min_samples,
            "merge_similarity": settings.theme_merge_similarity,
            "member_quantile": settings.theme_member_quantile,
            "fit_sample": settings.theme_fit_sample,
            "batch_documents": settings.theme_batch_documents,
            "vocabulary": settings.theme_vocabulary,
            "keyword_min_df": settings.theme_keyword_min_df,
            "refit_days": settings.theme_refit_days,
            "drift_margin": settings.theme_drift_margin,
            "keep_margin": settings.theme_keep_margin,
        }
        return cls(**values | changes)

    def clustering(self) -> ClusterParams:
        return ClusterParams(
            min_cluster_size=self.min_cluster_size,
            min_cluster_share=self.min_cluster_share,
            min_samples=self.min_samples,
            n_components=self.n_components,
            n_neighbors=self.n_neighbors,
            merge_similarity=self.merge_similarity,
            member_quantile=self.member_quantile,
        )

    def fingerprint(self) -> str:
        """What a fitted model depends on: a change of any of these forces a refit."""
        fitted = (
            self.clustering(),
            self.fit_sample,
            self.keywords,
            self.representatives,
            self.vocabulary,
            self.keyword_min_df,
            self.keyword_chars,
        )
        return hashlib.sha256(repr(fitted).encode()).hexdigest()[:12]


@dataclass
class Documents:
    """A batch of documents: ids, unit mean-chunk vectors and text (for keywords)."""

    doc_ids: list[str]
    vectors: np.ndarray
    texts: list[str]

    def __len__(self) -> int:
        return len(self.doc_ids)


class DocumentSource(Protocol):
    """A window of documents read in batches; each call starts a fresh pass."""

    def doc_ids(self) -> Iterator[list[str]]: ...

    def documents(self, only: set[str] | None = None) -> Iterator[Documents]: ...


@dataclass
class Theme:
    theme_id: str
    keywords: list[str]
    size: int  # documents
    representatives: list[str]
    centroid: np.ndarray
    threshold: float  # the least cosine to the centroid a member has
    label: str = ""  # a short human label (optional, from a chat model)

    @property
    def title(self) -> str:
        if self.label:
            return self.label
        if self.theme_id == OUTLIERS or not self.keywords:
            return self.theme_id
        return ", ".join(self.keywords[:3])


@dataclass
class ThemeResult:
    themes: list[Theme]  # the outlier bucket included (id OUTLIERS) when there are outliers
    assignments: pl.DataFrame  # doc_id, theme_id, similarity: one row per document
    fitted: bool = True  # False: the model was kept and only new documents were assigned
    stats: dict[str, object] = field(default_factory=dict)

    @property
    def noise_share(self) -> float:
        if self.assignments.height == 0:
            return 0.0
        return self.assignments.filter(pl.col("theme_id") == OUTLIERS).height / (
            self.assignments.height
        )

    def theme_of(self) -> dict[str, str]:
        return dict(self.assignments.select("doc_id", "theme_id").iter_rows())


ASSIGNMENT_SCHEMA = {"doc_id": pl.String, "theme_id": pl.String, "similarity": pl.Float32}


# Fitting.


def fit_themes(
    source: DocumentSource,
    params: ThemeParams,
    previous: pl.DataFrame | None = None,
    previous_themes: Sequence[Theme] = (),
) -> ThemeResult:
    """Fit themes on a sample of the window and assign every document.

    `previous` (doc_id, theme_id) and `previous_themes` are the previous window's: a fitted theme
    that matches a previous one (by sampled documents) keeps its id; a previous theme no fitted
    one matches stays a candidate with its old centroid; and a document keeps its previous theme
    while that theme is within `keep_margin` of its best (so a refit does not reshuffle
    documents between two nearly equal themes, nor split a theme only to renumber it).
    """
    sampled = sample_ids((d for batch in source.doc_ids() for d in batch), params.fit_sample)
    sample = _sorted(_concat(list(source.documents(only=sampled))))
    fitted = fit_clusters(sample.vectors, params.clustering())
    count = len(fitted.centroids)
    members = [
        [sample.doc_ids[i] for i in np.flatnonzero(fitted.sample_labels == k)] for k in range(count)
    ]
    before = None if previous is None else previous.filter(pl.col("doc_id").is_in(sample.doc_ids))
    ids = match_theme_ids(
        _frame(sample.doc_ids, fitted.sample_labels, np.zeros(len(sample), np.float32)),
        members,
        before,
        params.match_min_jaccard,
    )
    dimension = fitted.centroids.shape[1] if count else 0
    carried = [
        t
        for t in previous_themes
        if t.theme_id != OUTLIERS and t.theme_id not in ids and len(t.centroid) == dimension
    ]
    ids += [t.theme_id for t in carried]
    centroids = np.vstack([fitted.centroids, *[t.centroid[None, :] for t in carried]])
    thresholds = np.concatenate([fitted.thresholds, [t.threshold for t in carried]])
    total = len(ids)
    column = {theme_id: k for k, theme_id in enumerate(ids)}
    counter = KeywordCounter(
        [t[: params.keyword_chars] for t in sample.texts],
        total,
        params.vocabulary,
        params.keyword_min_df,
    )
    picker = RepresentativePicker(total, params.representatives)
    parts = []
    sample_label = dict(zip(sample.doc_ids, fitted.sample_labels.tolist(), strict=True))
    earlier = (
        dict(previous.select("doc_id", "theme_id").iter_rows()) if previous is not None else {}
    )
    for batch in source.documents():
        vectors = unit_rows(batch.vectors)
        sims = vectors @ centroids.T
        labels, _ = assign(vectors, centroids, thresholds)
        # Sampled documents keep the theme the clustering gave them; the rest go to the nearest.
        labels = np.array(
            [sample_label.get(d, n) for d, n in zip(batch.doc_ids, labels, strict=True)]
        )
        kept = np.array([column.get(earlier.get(d, ""), NOISE) for d in batch.doc_ids])
        if total and (kept != NOISE).any():
            own = sims[np.arange(len(batch)), np.maximum(kept, 0)]
            stay = (
                (kept != NOISE)
                & (own >= thresholds[np.maximum(kept, 0)])
                & (own >= sims.max(axis=1) - params.keep_margin)
            )
            labels = np.where(stay, kept, labels)
        similarity = _assigned_similarity(sims, labels)
        rows = np.where(labels == NOISE, total, labels)
        counter.add([t[: params.keyword_chars] for t in batch.texts], rows)
        picker.add(batch, rows, similarity)
        parts.append(_frame(batch.doc_ids, labels, similarity))
    labelled = _concat_frames(parts)
    keywords, representatives = counter.keywords(params.keywords), picker.texts()
    themes = [
        Theme(
            theme_id=ids[k],
            keywords=keywords[k],
            size=0,
            representatives=representatives[k],
            centroid=centroids[k],
            threshold=float(thresholds[k]),
        )
        for k in range(total)
    ]
    outliers = Theme(OUTLIERS, keywords[total], 0, representatives[total], _no_centroid(sample), 1)
    names = pl.DataFrame(
        {"cluster": [*range(total), NOISE], "theme_id": [*ids, OUTLIERS]},
        schema={"cluster": pl.Int32, "theme_id": pl.String},
    )
    assignments = labelled.join(names, on="cluster").select(list(ASSIGNMENT_SCHEMA))
    result = _result(themes, outliers, assignments, fitted=True)
    result.stats |= {
        "fit_sample": len(sample),
        "leaf_clusters": fitted.leaf_clusters,
        "min_cluster_size": fitted.cluster_size,
        "themes_carried": sum(t.theme_id in {c.theme_id for c in carried} for t in result.themes),
        "fit_noise_share": round(result.noise_share, 4),
    }
    return result


def assign_themes(
    themes: Sequence[Theme], known: pl.DataFrame, new: Iterable[Documents]
) -> ThemeResult:
    """Keep the fitted `themes` and their `known` assignments; assign only the `new` documents.

    `known` (doc_id, theme_id, similarity) are the window's documents whose content the model
    has already assigned; nothing about them changes while the model does not.
    """
    fitted = [t for t in themes if t.theme_id != OUTLIERS]
    outliers = next((t for t in themes if t.theme_id == OUTLIERS), None)
    centroids = np.stack([t.centroid for t in fitted]) if fitted else np.zeros((0, 1), np.float32)
    thresholds = np.array([t.threshold for t in fitted], dtype=np.float32)
    ids = np.array([t.theme_id for t in fitted] + [OUTLIERS], dtype=object)
    parts = [known.select(list(ASSIGNMENT_SCHEMA)).cast(ASSIGNMENT_SCHEMA)]
    new_documents = 0
    for batch in new:
        labels, similarity = assign(unit_rows(batch.vectors), centroids, thresholds)
        rows = np.where(labels == NOISE, len(fitted), labels)
        parts.append(
            pl.DataFrame(
                {"doc_id": batch.doc_ids, "theme_id": ids[rows].tolist(), "similarity": similarity},
                schema=ASSIGNMENT_SCHEMA,
            )
        )
        new_documents += len(batch)
    outliers = outliers or Theme(OUTLIERS, [], 0, [], np.zeros(0, np.float32), 1.0)
    result = _result(list(fitted), outliers, pl.concat(parts), fitted=False)
    new_rows = pl.concat(parts[1:]) if len(parts) > 1 else None
    new_outliers = (
        new_rows.filter(pl.col("theme_id") == OUTLIERS).height if new_rows is not None else 0
    )
    result.stats |= {"new_documents": new_documents, "new_outliers": new_outliers}
    return result


def refit_reason(
    *,
    has_model: bool,
    same_params: bool,
    days_since_fit: int,
    refit_days: int,
    new_documents: int,
    new_outliers: int,
    fit_noise_share: float,
    drift_margin: float,
    min_cluster_size: int,
) -> str | None:
    """Why the model must be fitted again, or None to keep it and assign the new documents.

    Refit when there is no model, its settings changed, it is `refit_days` old (a schedule),
    or the new documents drift from it: their outlier share exceeds the outlier share the model
    had when fitted by more than `drift_margin`, and they are enough outliers to form a theme
    (a new dense region the model does not know).
    """
    if not has_model:
        return "no earlier model"
    if not same_params:
        return "theme settings changed"
    if refit_days > 0 and days_since_fit >= refit_days:
        return f"scheduled: fitted {days_since_fit} days ago (every {refit_days})"
    share = new_outliers / new_documents if new_documents else 0.0
    if new_outliers >= min_cluster_size and share > fit_noise_share + drift_margin:
        return (
            f"drift: {share:.0%} of {new_documents} new documents are outliers "
            f"(fitted with {fit_noise_share:.0%})"
        )
    return None


def _result(
    themes: list[Theme], outliers: Theme, assignments: pl.DataFrame, fitted: bool
) -> ThemeResult:
    sizes = dict(assignments.group_by("theme_id").len().iter_rows())
    for theme in [*themes, outliers]:
        theme.size = int(sizes.get(theme.theme_id, 0))
    kept = [t for t in themes if t.size > 0]
    kept.sort(key=lambda t: (-t.size, t.theme_id))
    if outliers.size:
        kept.append(outliers)
    return ThemeResult(kept, assignments.sort("doc_id"), fitted=fitted)


# Theme ids across windows.


def _member_id(members: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()
    return "theme-" + digest[:8]


def match_theme_ids(
    labelled: pl.DataFrame,
    sample_members: list[list[str]],
    previous: pl.DataFrame | None,
    min_jaccard: float,
) -> list[str]:
    """An id per fitted theme: the previous theme it overlaps most in documents (one-to-one,
    Jaccard >= `min_jaccard`), else one derived from its sampled members."""
    ids = [_member_id(members) for members in sample_members]
    if not ids or previous is None or previous.height == 0:
        return _unique(ids)
    current = labelled.filter(pl.col("cluster") != NOISE).select("doc_id", "cluster")
    before = previous.filter(pl.col("theme_id") != OUTLIERS).select("doc_id", "theme_id")
    overlap = current.join(before, on="doc_id").group_by("cluster", "theme_id").len()
    if overlap.height == 0:
        return _unique(ids)
    sizes_now = dict(current.group_by("cluster").len().iter_rows())
    sizes_before = dict(before.group_by("theme_id").len().iter_rows())
    prev_ids = sorted(sizes_before)
    column = {p: j for j, p in enumerate(prev_ids)}
    scores = np.zeros((len(ids), len(prev_ids)))
    for cluster, theme_id, shared in overlap.iter_rows():
        union = sizes_now[cluster] + sizes_before[theme_id] - shared
        scores[cluster, column[theme_id]] = shared / union
    rows, cols = linear_sum_assignment(-scores)
    for i, j in zip(rows, cols, strict=True):
        if scores[i, j] >= min_jaccard:
            ids[i] = prev_ids[j]
    return _unique(ids)


def _unique(ids: list[str]) -> list[str]:
    """A derived id that collides with another theme's (a matched previous id) gets a suffix."""
    seen: set[str] = set()
    unique = []
    for theme_id in ids:
        candidate, n = theme_id, 1
        while candidate in seen:
            n += 1
            candidate = f"{theme_id}-{n}"
        seen.add(candidate)
        unique.append(candidate)
    return unique


# Representatives.


class RepresentativePicker:
    """The documents nearest each theme's centroid, kept across batches (ties by id)."""

    def __init__(self, themes: int, keep: int) -> None:
        self.keep = keep
        self._best: list[list[tuple[float, str, str]]] = [[] for _ in range(themes + 1)]

    def add(self, batch: Documents, rows: np.ndarray, similarity: np.ndarray) -> None:
        order = np.lexsort((np.asarray(batch.doc_ids, dtype=object), -similarity, rows))
        taken: dict[int, int] = {}
        for i in order:
            row = int(rows[i])
            if taken.get(row, 0) >= self.keep * 2:  # spare candidates for duplicate texts
                continue
            taken[row] = taken.get(row, 0) + 1
            text = " ".join(batch.texts[i].split())[:REPRESENTATIVE_CHARS]
            self._best[row].append((-float(similarity[i]), batch.doc_ids[i], text))
        for row in taken:
            self._best[row] = sorted(self._best[row])[: self.keep * 2]

    def texts(self) -> list[list[str]]:
        picked = []
        for candidates in self._best:
            texts: list[str] = []
            for _, _, text in candidates:
                if text and text not in texts:
                    texts.append(text)
            picked.append(texts[: self.keep])
        return picked


# In memory: chunks given as arrays (tests, benchmarks, notebooks).


class ArraySource:
    """A `DocumentSource` over chunk arrays; chunks of a document are averaged into one vector."""

    def __init__(
        self,
        chunk_ids: Sequence[str],
        vectors: np.ndarray,
        texts: Sequence[str],
        doc_ids: Sequence[str] | None = None,
        batch_documents: int = 10_000,
    ) -> None:
        doc_ids = list(doc_ids) if doc_ids is not None else list(chunk_ids)
        frame = pl.DataFrame(
            {"doc_id": doc_ids, "chunk_id": list(chunk_ids), "row": np.arange(len(doc_ids))}
        ).sort("doc_id", "chunk_id")
        vectors = np.asarray(vectors, dtype=np.float32)
        grouped = frame.group_by("doc_id", maintain_order=True).agg("row")
        self._ids = grouped["doc_id"].to_list()
        rows = grouped["row"].to_list()
        self._vectors = unit_rows(
            np.stack([vectors[r].mean(axis=0) for r in rows]) if rows else vectors
        )
        self._texts = [" ".join(texts[i] for i in r) for r in rows]
        self.batch_documents = batch_documents

    def doc_ids(self) -> Iterator[list[str]]:
        for start in range(0, len(self._ids), self.batch_documents):
            yield self._ids[start : start + self.batch_documents]

    def documents(self, only: set[str] | None = None) -> Iterator[Documents]:
        keep = [i for i, d in enumerate(self._ids) if only is None or d in only]
        for start in range(0, len(keep), self.batch_documents):
            idx = keep[start : start + self.batch_documents]
            yield Documents(
                [self._ids[i] for i in idx], self._vectors[idx], [self._texts[i] for i in idx]
            )


def find_themes(
    chunk_ids: Sequence[str],
    vectors: np.ndarray,
    texts: Sequence[str],
    params: ThemeParams,
    previous: pl.DataFrame | None = None,
    doc_ids: Sequence[str] | None = None,
) -> ThemeResult:
    """Themes of chunks held in memory (each chunk its own document unless `doc_ids` is given)."""
    source = ArraySource(chunk_ids, vectors, texts, doc_ids, params.batch_documents)
    return fit_themes(source, params, previous)


# Helpers.


def _assigned_similarity(sims: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine to the assigned theme's centroid (to the nearest one for outliers)."""
    if sims.shape[1] == 0:
        return np.zeros(len(labels), dtype=np.float32)
    chosen = np.where(labels == NOISE, np.argmax(sims, axis=1), labels)
    return sims[np.arange(len(labels)), chosen].astype(np.float32)


def _frame(doc_ids: list[str], labels: np.ndarray, similarity: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {"doc_id": doc_ids, "cluster": labels.astype(np.int32), "similarity": similarity},
        schema={"doc_id": pl.String, "cluster": pl.Int32, "similarity": pl.Float32},
    )


def _concat_frames(parts: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(parts) if parts else _frame([], np.zeros(0), np.zeros(0, np.float32))


def _concat(batches: list[Documents]) -> Documents:
    if not batches:
        return Documents([], np.zeros((0, 1), dtype=np.float32), [])
    return Documents(
        [d for b in batches for d in b.doc_ids],
        np.concatenate([b.vectors for b in batches]),
        [t for b in batches for t in b.texts],
    )


def _sorted(documents: Documents) -> Documents:
    order = np.argsort(np.asarray(documents.doc_ids, dtype=object), kind="stable")
    return Documents(
        [documents.doc_ids[i] for i in order],
        unit_rows(documents.vectors[order]) if len(order) else documents.vectors,
        [documents.texts[i] for i in order],
    )


def _no_centroid(sample: Documents) -> np.ndarray:
    return np.zeros(sample.vectors.shape[1] if sample.vectors.ndim == 2 else 0, np.float32)
