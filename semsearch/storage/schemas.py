"""Column names and types of every table, defined once."""

from __future__ import annotations

import pyarrow as pa

PARTITION_COLUMN = "partition_date"

# Table names: one Delta folder each under the tables root. A daily asset is named after its table.
BRONZE_TABLE = "bronze_documents"
LANDED_TABLE = "landed_files"
REJECTED_TABLE = "rejected_records"
RAW_TABLE = "raw_documents"
CHUNKS_TABLE = "chunks"
EMBEDDINGS_TABLE = "embeddings"
CACHE_TABLE = "embedding_cache"  # a LanceDB table beside the index (storage/embedding_cache.py)
DEAD_LETTER_TABLE = "embedding_dead_letter"
THEMES_TABLE = "themes"
ASSIGNMENTS_TABLE = "theme_assignments"
TRENDS_TABLE = "theme_trends"
LABELS_TABLE = "theme_labels"  # the chat label cache, by theme content
ALERTS_TABLE = "alerts"
INDEX_TABLE = "chunks"  # the LanceDB table of the vector and keyword index (not a Delta table)
# The Delta tables. A home of an earlier version may still hold a Delta `embedding_cache`: it is
# imported into the LanceDB cache once and no longer maintained.
ALL_TABLES = (
    BRONZE_TABLE,
    LANDED_TABLE,
    REJECTED_TABLE,
    RAW_TABLE,
    CHUNKS_TABLE,
    EMBEDDINGS_TABLE,
    DEAD_LETTER_TABLE,
    THEMES_TABLE,
    ASSIGNMENTS_TABLE,
    TRENDS_TABLE,
    LABELS_TABLE,
    ALERTS_TABLE,
)
UTC_TS = pa.timestamp("us", tz="UTC")

LANDED_FILES = pa.schema(
    [
        ("path", pa.string()),
        ("size_bytes", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha256", pa.string()),
        ("status", pa.string()),  # "loaded" or "unparseable"
        ("error", pa.string()),
        ("rows_loaded", pa.int64()),
        ("rows_rejected", pa.int64()),
        ("ingested_at", UTC_TS),
    ]
)

REJECTED_RECORDS = pa.schema(
    [
        ("source_file", pa.string()),
        ("source_row", pa.int64()),  # 1-based record number in the file; null: the whole file
        ("reason", pa.string()),
        ("raw", pa.string()),  # the record as read, truncated, invalid bytes escaped
        ("rejected_at", UTC_TS),
    ]
)

DOCUMENTS = pa.schema(
    [
        ("doc_id", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("created_at", UTC_TS),
        (PARTITION_COLUMN, pa.date32()),
        ("metadata", pa.string()),  # JSON object of the source's extra columns
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
        ("ingested_at", UTC_TS),
    ]
)

CHUNKS = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("text", pa.string()),
        ("token_count", pa.int32()),
        (PARTITION_COLUMN, pa.date32()),
    ]
)

EMBEDDINGS = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        (PARTITION_COLUMN, pa.date32()),
        ("model_id", pa.string()),
        ("dimension", pa.int32()),
        ("vector", pa.list_(pa.float32())),
    ]
)

EMBEDDING_CACHE = pa.schema(
    [
        ("cache_key", pa.string()),
        ("model_id", pa.string()),
        ("dimension", pa.int32()),
        ("vector", pa.list_(pa.float32())),
        ("created_at", UTC_TS),
    ]
)

EMBEDDING_DEAD_LETTER = pa.schema(
    [
        ("chunk_id", pa.string()),
        (PARTITION_COLUMN, pa.date32()),
        ("model_id", pa.string()),
        ("error_class", pa.string()),
        ("message", pa.string()),
        ("attempts", pa.int32()),
        ("first_seen", UTC_TS),
        ("last_seen", UTC_TS),
    ]
)

THEMES = pa.schema(
    [
        (PARTITION_COLUMN, pa.date32()),  # the last day of the window (a day with documents)
        ("theme_id", pa.string()),
        ("label", pa.string()),  # the chat label when there is one, else the top keywords
        ("keywords", pa.list_(pa.string())),
        ("size", pa.int64()),  # documents in the window (a document counts once)
        ("representatives", pa.list_(pa.string())),
        ("centroid", pa.list_(pa.float32())),  # unit mean of the members' document vectors
        ("window_start", pa.date32()),
        ("chunks", pa.int64()),  # the members' chunks
        ("threshold", pa.float32()),  # least cosine to the centroid a member has
        ("label_source", pa.string()),  # "chat" or "keywords"
        ("fitted_on", pa.date32()),  # the window whose sample the themes were fitted on
        ("model_fingerprint", pa.string()),  # the theme settings the fit used
        ("fit_noise_share", pa.float32()),  # outlier share when fitted (the drift baseline)
    ]
)

THEME_ASSIGNMENTS = pa.schema(
    [
        (PARTITION_COLUMN, pa.date32()),  # the window's last day
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("theme_id", pa.string()),  # the document's theme: all its chunks carry it
        ("probability", pa.float32()),  # membership: the document's cosine to the centroid
        ("document_date", pa.date32()),  # the day the document belongs to
    ]
)

THEME_TRENDS = pa.schema(
    [
        (PARTITION_COLUMN, pa.date32()),  # the window's last day
        ("theme_id", pa.string()),
        ("label", pa.string()),
        ("day", pa.date32()),
        ("documents", pa.int64()),  # the theme's documents dated that day
        ("share", pa.float64()),  # of all the day's documents
        ("first_day", pa.date32()),  # the theme's first and last day with documents
        ("last_day", pa.date32()),
        ("emerging", pa.bool_()),  # rule in semsearch.core.theme_trends
        ("fading", pa.bool_()),
    ]
)

THEME_LABELS = pa.schema(
    [
        ("content_key", pa.string()),  # hash of model, prompt, keywords and representatives
        ("model", pa.string()),
        ("label", pa.string()),
        ("created_at", UTC_TS),
    ]
)

ALERTS = pa.schema(
    [
        ("alert_id", pa.string()),
        ("key", pa.string()),  # what failed, e.g. check:embeddings/finite_vectors:2026-11-03
        ("status", pa.string()),  # "firing" or "resolved"
        ("kind", pa.string()),  # "check" or "run"
        ("severity", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("asset", pa.string()),
        ("check_name", pa.string()),
        ("partition", pa.string()),
        ("job", pa.string()),
        ("run_id", pa.string()),
        ("payload", pa.string()),  # the JSON posted to the webhook
        ("delivered", pa.bool_()),  # False: no webhook configured, or the post failed
        ("delivery_error", pa.string()),
        ("occurred_at", UTC_TS),
        ("sent_at", UTC_TS),
    ]
)


def index_schema(dimension: int) -> pa.Schema:
    """The LanceDB index: a row per chunk with what search filters on and shows."""
    return pa.schema(
        [
            ("chunk_id", pa.string()),
            ("doc_id", pa.string()),
            ("partition_date", pa.date32()),
            ("title", pa.string()),
            ("text", pa.string()),
            ("metadata", pa.string()),
            ("metadata_tags", pa.list_(pa.string())),
            ("model_id", pa.string()),
            ("vector", pa.list_(pa.float32(), dimension)),
        ]
    )
