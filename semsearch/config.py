"""Every setting semsearch reads, with its default, in one place.

`Settings.from_env` is the only code that reads the process environment; everything else
receives a `Settings` (or a Dagster resource built from one). `.env.example` mirrors this file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from semsearch.storage.schemas import CACHE_TABLE, INDEX_TABLE

ENV_PREFIX = "SEMSEARCH_"
# The embedding API key is no setting: it never enters Settings, run config, logs or metadata.
OPENAI_KEY_VARIABLE = "OPENAI_API_KEY"
MIN_RETENTION_HOURS = 24
# Field type (a string: annotations are postponed) -> parser and how to name it in errors.
_NUMBER_TYPES = {"int": (int, "a whole number"), "float": (float, "a number")}


@dataclass(frozen=True)
class Settings:
    # Where everything lives by default: landing folder, Delta tables, LanceDB.
    home: str = ".semsearch"
    landing_dir: str = ""  # default: <home>/landing
    tables_dir: str = ""  # default: <home>/tables
    lance_uri: str = ""  # default: <home>/lancedb
    # The first daily partition (UTC), ISO date; empty: the first day the landed data holds.
    partitions_start: str = ""

    # Source column mapping; any other column is kept as metadata.
    id_column: str = "id"
    text_column: str = "text"
    title_column: str = "title"
    created_at_column: str = "created_at"
    # "reject" (default), "file_mtime", or a fixed ISO date such as 2026-01-01.
    missing_date_policy: str = "reject"
    # Longest document text accepted; a longer record is rejected with the reason.
    max_document_chars: int = 100_000

    # Chunking, in tokens of the embedding model's own tokenizer.
    chunk_size_tokens: int = 200
    chunk_overlap_tokens: int = 32

    # Embeddings.
    embedding_backend: str = "local"  # "local" or "openai"
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_batch_size: int = 64  # local backend: texts per forward pass

    # Embedding API (openai backend): OpenAI, Azure OpenAI or any OpenAI-compatible server
    # (vLLM, llama.cpp, Ollama, TEI...). The key is not a setting: it is read from
    # OPENAI_API_KEY through Dagster's EnvVar, and never logged or stored.
    openai_base_url: str = ""  # empty: the official endpoint; Azure: https://<res>.openai.azure.com
    openai_api_version: str = ""  # Azure OpenAI only (e.g. 2024-10-21); model = deployment name
    openai_dimensions: int = 0  # sent as `dimensions`; 0: the model's native dimension
    openai_expected_dimension: int = 0  # vector size, needed for models unknown to semsearch
    openai_timeout_seconds: float = 60.0  # per HTTP request
    openai_concurrency: int = 4  # requests in flight
    openai_max_attempts: int = 6  # per request batch, first attempt included
    openai_initial_wait_seconds: float = 1.0  # first backoff; doubles per retry, with jitter
    openai_max_wait_seconds: float = 60.0  # cap on one wait, Retry-After included
    openai_max_total_seconds: float = 300.0  # retry budget per request batch
    # Connection failures, time-outs or 5xx in a row, across batches, that stop the run: the
    # endpoint is down, and retrying every batch would dead-letter everything after minutes.
    openai_circuit_breaker_failures: int = 10
    openai_requests_per_minute: int = 0  # client-side rate limit; 0: none
    openai_tokens_per_minute: int = 0  # client-side rate limit; 0: none
    openai_max_input_tokens: int = 8191  # per input; chunks are cut below it
    openai_max_inputs_per_request: int = 2048
    openai_price_per_million_tokens: float = 0.0  # USD, for the estimated_cost metadata

    # Execution engine of the per-day stages that grow with the data (chunks, embeddings):
    # "local" (this process) or "spark" (Spark jobs; executors write Delta files, the driver
    # commits). Spark: master URL (local[*], spark://host:7077, yarn...), app name and extra
    # conf as "key=value,key=value".
    engine: str = "local"
    spark_master: str = "local[*]"
    spark_app_name: str = "semsearch"
    spark_conf: str = ""

    # Vector index.
    lance_table: str = INDEX_TABLE
    ann_min_rows: int = 100_000  # exact search below this many rows
    # A local sentence-transformers CrossEncoder folder that reranks every search's top
    # candidates; empty: no reranking.
    reranker_path: str = ""

    # Themes (measured defaults: benchmarks/bench_themes.py, README "Themes").
    theme_window_days: int = 30  # 0: all history up to the partition
    # The smallest theme: this share of the fitted documents, but never fewer than the floor.
    theme_min_cluster_share: float = 0.004
    theme_min_cluster_size: int = 5  # the floor, in documents
    theme_min_samples: int = 5  # HDBSCAN's density smoothing
    theme_merge_similarity: float = 0.9  # themes whose centroids are this close are merged
    # A document joins its nearest theme when at least as close as this quantile of the
    # theme's own members; farther documents stay outliers.
    theme_member_quantile: float = 0.01
    theme_fit_sample: int = 20_000  # documents the model is fitted on, at most (a fixed sample)
    theme_batch_documents: int = 10_000  # documents read and assigned per batch
    theme_vocabulary: int = 20_000  # keyword terms kept, at most
    theme_keyword_min_df: int = 2  # documents of the fit sample a keyword must appear in
    theme_refit_days: int = 7  # refit at least this often; between, new documents are assigned
    theme_drift_margin: float = 0.1  # refit when new documents' outlier share exceeds the fit's
    # At a refit, a document keeps its previous theme while that theme's cosine is within this
    # margin of its best theme's (stability over the last few hundredths of similarity).
    theme_keep_margin: float = 0.05
    # Trends: emerging/fading compares the last N days with the rest of the window.
    theme_trend_recent_days: int = 3
    theme_trend_ratio: float = 2.0
    theme_trend_min_documents: int = 5
    # Optional short labels from an OpenAI-compatible chat model; empty: keywords only. The key
    # is OPENAI_API_KEY (through EnvVar, never logged); the base URL defaults to the embedding
    # API's (SEMSEARCH_OPENAI_BASE_URL).
    theme_label_model: str = ""
    theme_label_base_url: str = ""
    # Compiled numba code (UMAP, HDBSCAN) is kept here so a fresh process does not recompile.
    numba_cache_dir: str = ""  # default: ~/.cache/semsearch/numba
    # The local model's query encoder exported to ONNX (see core/query_encoder.py) is kept here.
    onnx_cache_dir: str = ""  # default: ~/.cache/semsearch/onnx

    # Operations (checks, alerts, sensors).
    # Check thresholds; each check says in the UI whether it blocks (ERROR) or warns (WARN).
    check_min_documents: int = 1  # fewer documents in a day: WARN; 0 accepts empty days
    check_max_rejected_share: float = 0.1  # of the day's source files' records; ERROR above
    # Of the day's chunks without a vector (dead letters); ERROR above: the day is incomplete.
    check_max_dead_letter_share: float = 0.05
    check_probe_items: int = 3  # stored chunks searched for themselves per day
    check_min_ann_recall: float = 0.9  # ANN recall@10 against exact search, once an index exists
    check_max_noise_share: float = 0.7  # share of a window's chunks left as outliers
    check_min_themes: int = 1
    check_max_themes: int = 200
    check_min_theme_stability: float = 0.8  # assignments a re-run of the same window keeps
    # A labelled evaluation set: the metadata key holding each document's label (e.g. a ticket
    # category). When set, the themes asset records how well its themes agree with the labels
    # (eval_v_measure etc.) and themes/label_agreement warns below the V-measure floor.
    eval_label_field: str = ""
    check_min_v_measure: float = 0.4  # measured: README "Evaluation"
    profiling: int = 0  # 1: null counts, length distributions, metadata breakdowns as metadata
    # Alerts: a Slack-compatible incoming webhook. Read through Dagster's EnvVar, so the UI
    # shows the variable's name, never the URL; empty: alerts go to the log and table only.
    alert_webhook_url: str = ""
    alert_resolved: int = 1  # 1: post a "resolved" message when a failing check passes again
    # Sensors.
    sensor_interval_seconds: int = 30
    landing_settle_seconds: int = 60  # a file unchanged across two ticks or this old is complete
    # UTC hour by which the latest day (today) must be indexed each day; -1: no freshness check.
    freshness_deadline_hour: int = 9
    source_table_uri: str = ""  # an upstream Delta table to follow (e.g. tickets); empty: none
    # Storage maintenance: compaction, then deletion of files (and LanceDB versions) that no
    # version younger than the retention needs. Time travel reaches back this far; a reader
    # slower than it can fail, so keep it well above the longest run.
    maintenance_cron: str = "0 3 * * *"  # UTC; the schedule of the maintain_storage job
    maintenance_retention_hours: int = 168  # at least 24
    # A run started here waits at most this long for a pool (embedding, LanceDB writer, themes)
    # held by another live run, then fails naming that run. Killed runs are released at once.
    pool_wait_seconds: int = 900
    # HTTP API and pages (semsearch serve). 127.0.0.1 needs no token; any other address
    # requires SEMSEARCH_API_TOKEN, then checked on every request (Authorization: Bearer).
    serve_host: str = "127.0.0.1"
    serve_port: int = 8765
    # Server processes: each loads the model and answers requests on its own cores (one Python
    # process is bound by its interpreter lock to about one core's worth of request handling).
    serve_workers: int = 2
    api_token: str = dataclasses.field(default="", repr=False)  # a secret: never logged

    @staticmethod
    def embedding_api_key(environ: Mapping[str, str] | None = None) -> str:
        """The key for the openai backend outside a Dagster run (inside one, an EnvVar)."""
        return (os.environ if environ is None else environ).get(OPENAI_KEY_VARIABLE, "")

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def landing_path(self) -> Path:
        return Path(self.landing_dir) if self.landing_dir else self.home_path / "landing"

    @property
    def tables_path(self) -> Path:
        return Path(self.tables_dir) if self.tables_dir else self.home_path / "tables"

    @property
    def lance_path(self) -> str:
        return self.lance_uri or str(self.home_path / "lancedb")

    @property
    def numba_cache_path(self) -> Path:
        # Shared by every home of the user: the compiled code does not depend on the data.
        return Path(self.numba_cache_dir or Path.home() / ".cache/semsearch/numba")

    @property
    def onnx_cache_path(self) -> Path:
        return Path(self.onnx_cache_dir or Path.home() / ".cache/semsearch/onnx")

    def spark_conf_pairs(self) -> dict[str, str]:
        """SEMSEARCH_SPARK_CONF ("k=v,k=v") as a dict; a malformed item is an error naming it."""
        pairs: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in self.spark_conf.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(
                    f"SEMSEARCH_SPARK_CONF: {item!r} is not key=value (use 'k=v,k=v', e.g. "
                    "spark.executor.memory=4g)"
                )
            pairs[key.strip()] = value.strip()
        return pairs

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        """Every value, the secrets included: only for handing to a child process's memory or
        environment, never to a log or a file."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls(**json.loads(text))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from SEMSEARCH_* variables; unknown or malformed values fail loudly."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            if field.type in _NUMBER_TYPES:
                parse, kind = _NUMBER_TYPES[field.type]
                try:
                    values[field.name] = parse(raw)
                except ValueError:
                    raise ValueError(
                        f"{ENV_PREFIX}{field.name.upper()}={raw!r} is not {kind}"
                    ) from None
            else:
                values[field.name] = raw
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        try:
            if self.partitions_start:
                date.fromisoformat(self.partitions_start)
        except ValueError:
            raise ValueError(
                f"SEMSEARCH_PARTITIONS_START={self.partitions_start!r} is not an ISO date "
                "(YYYY-MM-DD); leave it empty to start at the first day of the data"
            ) from None
        if self.chunk_overlap_tokens >= self.chunk_size_tokens:
            raise ValueError("SEMSEARCH_CHUNK_OVERLAP_TOKENS must be smaller than the chunk size")
        if self.embedding_backend not in ("local", "openai"):
            raise ValueError(
                f"SEMSEARCH_EMBEDDING_BACKEND={self.embedding_backend!r}: use 'local' or 'openai'"
            )
        if self.engine not in ("local", "spark"):
            raise ValueError(f"SEMSEARCH_ENGINE={self.engine!r}: use 'local' or 'spark'")
        self.spark_conf_pairs()
        if self.missing_date_policy not in ("reject", "file_mtime"):
            try:
                date.fromisoformat(self.missing_date_policy)
            except ValueError:
                raise ValueError(
                    f"SEMSEARCH_MISSING_DATE_POLICY={self.missing_date_policy!r}: use 'reject', "
                    "'file_mtime' or an ISO date"
                ) from None
        if not -1 <= self.freshness_deadline_hour <= 23:
            raise ValueError(
                f"SEMSEARCH_FRESHNESS_DEADLINE_HOUR={self.freshness_deadline_hour}: use an hour "
                "0..23, or -1 for no freshness check"
            )
        if self.maintenance_retention_hours < MIN_RETENTION_HOURS:
            # Runs, checks and searches read a table's snapshot while maintenance may run.
            raise ValueError(
                f"SEMSEARCH_MAINTENANCE_RETENTION_HOURS={self.maintenance_retention_hours} "
                f"must be >= {MIN_RETENTION_HOURS}: files of older versions may still be read "
                "by a run, check or search that started before them"
            )
        if "%" in str(self.tables_path):
            # polars' Delta reader percent-decodes local paths: every read would fail.
            raise ValueError(
                f"the tables folder {self.tables_path} (SEMSEARCH_HOME / SEMSEARCH_TABLES_DIR) "
                "contains '%', which the Delta reader cannot open; choose a path without it"
            )
        if self.lance_table == CACHE_TABLE:
            raise ValueError(
                f"SEMSEARCH_LANCE_TABLE={self.lance_table!r} is the embedding cache's table beside "
                "the index; name the index table otherwise"
            )
        self._validate_embedding_api()
        self._validate_themes()

    def _validate_themes(self) -> None:
        shares = (
            "check_min_v_measure",
            "theme_min_cluster_share",
            "theme_member_quantile",
            "theme_drift_margin",
            "theme_keep_margin",
        )
        positive = (
            "theme_min_cluster_size",
            "theme_min_samples",
            "theme_fit_sample",
            "theme_batch_documents",
            "theme_vocabulary",
            "theme_keyword_min_df",
            "theme_trend_recent_days",
            "theme_trend_min_documents",
            "serve_workers",
        )
        for name in shares:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}={getattr(self, name)!r} must be 0..1")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}={getattr(self, name)!r} must be >= 1")
        if not 0.0 < self.theme_merge_similarity <= 1.0:
            raise ValueError("SEMSEARCH_THEME_MERGE_SIMILARITY must be in (0, 1] (1: never merge)")
        if self.theme_trend_ratio <= 1.0:
            raise ValueError("SEMSEARCH_THEME_TREND_RATIO must be > 1")

    def _validate_embedding_api(self) -> None:
        positive = (
            "openai_timeout_seconds",
            "openai_concurrency",
            "openai_max_attempts",
            "openai_max_wait_seconds",
            "openai_max_total_seconds",
            "openai_circuit_breaker_failures",
            "openai_max_input_tokens",
            "openai_max_inputs_per_request",
        )
        not_negative = (
            "openai_dimensions",
            "openai_expected_dimension",
            "openai_initial_wait_seconds",
            "openai_requests_per_minute",
            "openai_tokens_per_minute",
            "openai_price_per_million_tokens",
        )
        for name in positive + not_negative:
            value = getattr(self, name)
            in_range = value > 0 if name in positive else value >= 0
            if not (math.isfinite(value) and in_range):
                bound = "> 0" if name in positive else ">= 0"
                raise ValueError(f"{ENV_PREFIX}{name.upper()}={value!r} must be {bound}")
