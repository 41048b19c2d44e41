"""Reading a theme window in batches and writing themes, assignments and trends.

A window is read one day-partition at a time (a document lives in exactly one day, so a batch
always holds whole documents), and a day larger than the batch size is split further by a hash
of the document id. Nothing here collects the window's vectors at once.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.schema import Field as DeltaField
from deltalake.schema import Schema as DeltaSchema

from semsearch.core.evaluation import ThemeScores, theme_scores
from semsearch.core.themes import OUTLIERS, Documents, Theme, ThemeResult
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import (
    ASSIGNMENTS_TABLE,
    CHUNKS,
    CHUNKS_TABLE,
    DOCUMENTS,
    EMBEDDINGS,
    EMBEDDINGS_TABLE,
    LABELS_TABLE,
    PARTITION_COLUMN,
    RAW_TABLE,
    THEME_ASSIGNMENTS,
    THEME_LABELS,
    THEME_TRENDS,
    THEMES,
    THEMES_TABLE,
    TRENDS_TABLE,
)

log = logging.getLogger(__name__)

DAY = pl.col(PARTITION_COLUMN)
SPLIT_SEED = 7  # the hash that splits a large day into batches (batching only, not results)


def fast_vectors(column: pl.Series) -> np.ndarray:
    """A list[float32] column as a 2-d array without a Python object per row."""
    if column.len() == 0:
        return np.zeros((0, 0), dtype=np.float32)
    arrow = column.to_arrow()
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    flat = arrow.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(column.len(), -1)


class WindowSource:
    """The documents embedded on days [first, last]: a `DocumentSource` for `core.themes`.

    A document's vector is the mean of its chunks' vectors; its text is its chunks' text in
    order, cut at `text_chars` (enough for keywords and representatives).
    """

    def __init__(
        self,
        tables: DeltaTables,
        first: date,
        last: date,
        batch_documents: int,
        text_chars: int,
        only: set[str] | None = None,
    ) -> None:
        self.tables = tables
        self.first, self.last = first, last
        self.batch_documents = batch_documents
        self.text_chars = text_chars
        self.only = only  # restrict every pass to these documents (e.g. the new ones)
        self._docs_per_day: dict[date, int] | None = None

    def _embeddings(self) -> pl.LazyFrame:
        scan = self.tables.scan(EMBEDDINGS_TABLE, EMBEDDINGS)
        scan = scan.filter((DAY >= self.first) & (DAY <= self.last))
        if self.only is not None:
            scan = scan.filter(pl.col("doc_id").is_in(list(self.only)))
        return scan

    def docs_per_day(self) -> dict[date, int]:
        if self._docs_per_day is None:
            counts = (
                self._embeddings()
                .group_by(PARTITION_COLUMN)
                .agg(pl.col("doc_id").n_unique())
                .collect()
            )
            self._docs_per_day = dict(sorted(counts.iter_rows()))
        return self._docs_per_day

    def dimension(self) -> int:
        """The window's vector dimension (one model per window: the embeddings checks)."""
        return self._embeddings().select(pl.col("dimension").first()).collect().item() or 0

    def documents_total(self) -> int:
        return sum(self.docs_per_day().values())

    def _slices(self) -> Iterator[tuple[date, pl.LazyFrame]]:
        """Per day, the embeddings in batches of about `batch_documents` documents."""
        for day, documents in self.docs_per_day().items():
            scan = self._embeddings().filter(DAY == day)
            parts = max(1, math.ceil(documents / self.batch_documents))
            if parts == 1:
                yield day, scan
                continue
            bucket = pl.col("doc_id").hash(SPLIT_SEED) % parts
            for part in range(parts):
                yield day, scan.filter(bucket == part)

    def doc_ids(self) -> Iterator[list[str]]:
        for _, scan in self._slices():
            yield scan.select("doc_id").unique().collect()["doc_id"].to_list()

    def documents(self, only: set[str] | None = None) -> Iterator[Documents]:
        for day, scan in self._slices():
            if only is not None:
                scan = scan.filter(pl.col("doc_id").is_in(list(only)))
            frame = scan.select("chunk_id", "doc_id", "vector").collect()
            if frame.height:
                yield self._documents(frame, day)

    def _documents(self, frame: pl.DataFrame, day: date) -> Documents:
        texts = (
            self.tables.scan(CHUNKS_TABLE, CHUNKS)
            .filter(DAY == day)  # a document's chunks share its day: one partition is read
            .filter(pl.col("chunk_id").is_in(frame["chunk_id"].implode()))
            .select("chunk_id", "position", "text")
            .collect()
        )
        frame = frame.join(texts, on="chunk_id", how="left").sort("doc_id", "position", "chunk_id")
        vectors = fast_vectors(frame["vector"])
        doc_ids = frame["doc_id"].to_numpy()
        starts = np.flatnonzero(np.r_[True, doc_ids[1:] != doc_ids[:-1]])
        sums = np.add.reduceat(vectors, starts, axis=0)
        per_doc = frame.group_by("doc_id", maintain_order=True).agg(
            pl.col("text").fill_null("").str.join(" ").str.slice(0, self.text_chars)
        )
        return Documents(per_doc["doc_id"].to_list(), sums, per_doc["text"].to_list())


# The previous window: its themes (the fitted model) and its document assignments.


def latest_window_before(tables: DeltaTables, day: date) -> date | None:
    scan = tables.scan(THEMES_TABLE, THEMES).filter(DAY < day)
    return scan.select(DAY.max()).collect().item()


@dataclass
class PreviousWindow:
    day: date
    themes: list[Theme]
    fitted_on: date
    fingerprint: str
    fit_noise_share: float
    assignments: pl.DataFrame  # chunk_id, doc_id, theme_id, probability

    def documents(self) -> pl.DataFrame:
        """doc_id, theme_id, similarity: one row per document of the previous window."""
        return (
            self.assignments.group_by("doc_id")
            .agg(pl.col("theme_id").first(), pl.col("probability").first().alias("similarity"))
            .sort("doc_id")
        )


def previous_window(tables: DeltaTables, day: date) -> PreviousWindow | None:
    """The latest window that ended before `day`, or None."""
    before = latest_window_before(tables, day)
    if before is None:
        return None
    rows = tables.read_partition(THEMES_TABLE, before, THEMES)
    assignments = tables.read_partition(ASSIGNMENTS_TABLE, before, THEME_ASSIGNMENTS)
    themes = [
        Theme(
            theme_id=r["theme_id"],
            keywords=list(r["keywords"] or []),
            size=int(r["size"]),
            representatives=list(r["representatives"] or []),
            centroid=np.asarray(r["centroid"] or [], dtype=np.float32),
            # Tables written before these columns existed lack them: such a model refits.
            threshold=float(r.get("threshold") if r.get("threshold") is not None else 1.0),
            label=r["label"] if r.get("label_source") == "chat" else "",
        )
        for r in rows.iter_rows(named=True)
    ]
    first = rows.row(0, named=True) if rows.height else {}
    return PreviousWindow(
        day=before,
        themes=themes,
        fitted_on=first.get("fitted_on") or before,
        fingerprint=first.get("model_fingerprint") or "",
        fit_noise_share=float(first.get("fit_noise_share") or 0.0),
        assignments=assignments.select("chunk_id", "doc_id", "theme_id", "probability"),
    )


def unchanged_documents(
    tables: DeltaTables, first: date, last: date, previous: PreviousWindow
) -> tuple[pl.DataFrame, set[str]]:
    """(documents the previous window assigned whose chunks are the same now, every other doc).

    A document re-embedded with other text has new chunk ids, so it counts as new; documents
    that left the window are simply not in it.
    """
    current = (
        tables.scan(EMBEDDINGS_TABLE, EMBEDDINGS)
        .filter((DAY >= first) & (DAY <= last))
        .select("chunk_id", "doc_id")
        .collect()
    )
    before = previous.assignments.select("chunk_id", "doc_id")
    added = current.join(before, on="chunk_id", how="anti")["doc_id"]
    dropped = before.join(current, on="chunk_id", how="anti")["doc_id"]
    changed = set(added.to_list()) | set(dropped.to_list())
    window_docs = set(current["doc_id"].unique().to_list())
    known = previous.documents().filter(pl.col("doc_id").is_in(list(window_docs - changed)))
    return known, window_docs - set(known["doc_id"].to_list())


def window_documents(tables: DeltaTables, first: date, last: date) -> int:
    return (
        tables.scan(EMBEDDINGS_TABLE, EMBEDDINGS)
        .filter((DAY >= first) & (DAY <= last))
        .select(pl.col("doc_id").n_unique())
        .collect()
        .item()
    )


# Writing.


def ensure_columns(tables: DeltaTables, name: str, schema: pa.Schema) -> None:
    """Add columns a newer semsearch writes to a table an older one created (nullable)."""
    table = tables.table(name)
    if table is None:
        return
    have = set(table.schema().to_arrow().names)
    missing = [f for f in schema if f.name not in have]
    if missing:
        fields = DeltaSchema.from_arrow(pa.schema(missing)).fields
        DeltaTable(tables.uri(name), storage_options=tables.storage_options).alter.add_columns(
            [DeltaField(f.name, f.type, nullable=True) for f in fields]
        )
        log.info("added columns %s to %s", [f.name for f in missing], name)


@dataclass(frozen=True)
class WindowInfo:
    day: date
    first: date
    fitted_on: date
    fingerprint: str
    fit_noise_share: float


def theme_rows(info: WindowInfo, result: ThemeResult, chunks: dict[str, int]) -> pa.Table:
    themes = result.themes
    return pa.table(
        {
            PARTITION_COLUMN: [info.day] * len(themes),
            "theme_id": [t.theme_id for t in themes],
            "label": [t.title for t in themes],
            "keywords": [t.keywords for t in themes],
            "size": [t.size for t in themes],
            "representatives": [t.representatives for t in themes],
            "centroid": [np.asarray(t.centroid, dtype=np.float32).tolist() for t in themes],
            "window_start": [info.first] * len(themes),
            "chunks": [chunks.get(t.theme_id, 0) for t in themes],
            "threshold": [float(t.threshold) for t in themes],
            "label_source": ["chat" if t.label else "keywords" for t in themes],
            "fitted_on": [info.fitted_on] * len(themes),
            "model_fingerprint": [info.fingerprint] * len(themes),
            "fit_noise_share": [info.fit_noise_share] * len(themes),
        },
        schema=THEMES,
    )


def assignment_rows(tables: DeltaTables, info: WindowInfo, result: ThemeResult) -> pl.DataFrame:
    """One row per chunk of the window, carrying its document's theme."""
    documents = result.assignments.lazy().select(
        "doc_id",
        "theme_id",
        pl.col("similarity").clip(0.0, 1.0).alias("probability"),
    )
    return (
        tables.scan(EMBEDDINGS_TABLE, EMBEDDINGS)
        .filter((DAY >= info.first) & (DAY <= info.day))
        .select("chunk_id", "doc_id", pl.col(PARTITION_COLUMN).alias("document_date"))
        .join(documents, on="doc_id")
        .with_columns(pl.lit(info.day).alias(PARTITION_COLUMN))
        .sort("chunk_id")
        .collect()
    )


def write_window(
    tables: DeltaTables, info: WindowInfo, result: ThemeResult, assignments: pl.DataFrame
) -> pa.Table:
    chunks = dict(assignments.group_by("theme_id").len().iter_rows())
    themes = theme_rows(info, result, chunks)
    for name, schema in ((THEMES_TABLE, THEMES), (ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS)):
        ensure_columns(tables, name, schema)
    tables.replace_partition(THEMES_TABLE, info.day, themes, THEMES)
    tables.replace_partition(ASSIGNMENTS_TABLE, info.day, assignments.to_arrow(), THEME_ASSIGNMENTS)
    return themes


def clear_window(tables: DeltaTables, day: date) -> None:
    """A day with no documents has no window: remove one an earlier run may have written."""
    for name, schema in ((THEMES_TABLE, THEMES), (ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS)):
        if tables.exists(name):
            tables.replace_partition(name, day, schema.empty_table(), schema)


def window_assignments(tables: DeltaTables, day: date) -> pl.DataFrame:
    return tables.read_partition(ASSIGNMENTS_TABLE, day, THEME_ASSIGNMENTS)


def labelled_window(tables: DeltaTables, day: date, field: str) -> pl.DataFrame:
    """One row per document of the window ending at `day`: doc_id, theme_id and the value of
    metadata key `field` (a string; null where the document has none). Raises ValueError,
    listing the keys that exist, when no document of the window has `field`."""
    documents = (
        window_assignments(tables, day)
        .unique("doc_id")
        .select("doc_id", "theme_id", pl.col("document_date").alias(PARTITION_COLUMN))
    )
    if documents.height == 0:
        return documents.select("doc_id", "theme_id", label=pl.lit(None, pl.String))
    first, last = documents[PARTITION_COLUMN].min(), documents[PARTITION_COLUMN].max()
    raw = tables.read_days(RAW_TABLE, first, last, DOCUMENTS).select(
        "doc_id", PARTITION_COLUMN, "metadata"
    )
    joined = documents.join(raw, on=["doc_id", PARTITION_COLUMN], how="left")
    parsed = [json.loads(m) if m else {} for m in joined["metadata"].to_list()]
    labels = [None if p.get(field) is None else str(p[field]) for p in parsed]
    if all(label is None for label in labels):
        keys = sorted({k for p in parsed for k in p})
        raise ValueError(
            f"no document of the window ending {day} has the metadata key {field!r}; "
            f"the keys are: {', '.join(keys) or 'none'}"
        )
    return joined.select("doc_id", "theme_id").with_columns(
        label=pl.Series(labels, dtype=pl.String)
    )


def window_label_scores(tables: DeltaTables, day: date, field: str) -> ThemeScores:
    """The themes of the window ending at `day` against the labels in metadata key `field`
    (ValueError, naming the keys there are, when no document of the window has it)."""
    labelled = labelled_window(tables, day, field)
    return theme_scores(labelled["theme_id"].to_list(), labelled["label"].to_list(), OUTLIERS)


def write_trends(tables: DeltaTables, day: date, trends: pl.DataFrame) -> None:
    ensure_columns(tables, TRENDS_TABLE, THEME_TRENDS)
    tables.replace_partition(TRENDS_TABLE, day, trends.to_arrow(), THEME_TRENDS)


def is_outlier(theme_id: str) -> bool:
    return theme_id == OUTLIERS


# The chat label cache: one row per theme content, appended as labels are made.


def cached_labels(tables: DeltaTables, keys: list[str]) -> dict[str, str]:
    if not keys:
        return {}
    rows = (
        tables.scan(LABELS_TABLE, THEME_LABELS)
        .filter(pl.col("content_key").is_in(keys))
        .select("content_key", "label")
        .unique("content_key")
        .collect()
    )
    return dict(rows.iter_rows())


def store_labels(tables: DeltaTables, model: str, labels: dict[str, str]) -> None:
    now = datetime.now(UTC)
    rows = pa.table(
        {
            "content_key": list(labels),
            "model": [model] * len(labels),
            "label": list(labels.values()),
            "created_at": [now] * len(labels),
        },
        schema=THEME_LABELS,
    )
    tables.append(LABELS_TABLE, rows, THEME_LABELS, partitioned=False)


def window_chunks(tables: DeltaTables, first: date, last: date) -> int:
    return (
        tables.scan(EMBEDDINGS_TABLE, EMBEDDINGS)
        .filter((DAY >= first) & (DAY <= last))
        .select(pl.len())
        .collect()
        .item()
    )
