"""Dagster resources: where the tables live, how text is embedded, and the pipeline's knobs.

Each resource is built from `Settings` (the one place defaults live) by `from_settings`; the
OpenAI key is the only secret and comes through `EnvVar`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from dagster import ConfigurableResource, EnvVar, InitResourceContext
from dagster_deltalake import AzureConfig, DeltaTableResource, GcsConfig, LocalConfig, S3Config
from dagster_pyspark import PySparkResource
from pydantic import PrivateAttr

from semsearch.config import OPENAI_KEY_VARIABLE, Settings
from semsearch.core.backends import build_backend
from semsearch.core.chunking import ChunkSpec
from semsearch.core.embedding import EmbeddingBackend
from semsearch.core.ingest import ColumnMapping, DatePolicy, RecordParser
from semsearch.core.theme_trends import TrendRule
from semsearch.core.themes import ThemeParams
from semsearch.storage.delta import DeltaTables
from semsearch.storage.embedding_cache import CacheStore
from semsearch.storage.vector_index import AnnParams, VectorIndex


class StorageResource(ConfigurableResource):
    """The landing folder, the Delta tables folder, the LanceDB index and embedding cache."""

    landing_dir: str
    tables_dir: str
    lance_uri: str
    lance_table: str

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageResource:
        return cls(
            landing_dir=str(settings.landing_path),
            tables_dir=str(settings.tables_path),
            lance_uri=settings.lance_path,
            lance_table=settings.lance_table,
        )

    def tables(self) -> DeltaTables:
        return DeltaTables(self.tables_dir)

    def index(self) -> VectorIndex:
        return VectorIndex(self.lance_uri, self.lance_table)

    def cache(self) -> CacheStore:
        """The embedding cache (created on first use, from an old Delta cache if there is one)."""
        return CacheStore.open(self.lance_uri, legacy=self.tables())


def source_table_resource(uri: str) -> DeltaTableResource:
    """The upstream Delta table (SEMSEARCH_SOURCE_TABLE_URI) as dagster-deltalake's resource.

    The object store follows the URI's scheme. No credential is configured here: delta-rs reads
    AWS_*, GOOGLE_* and AZURE_* from the process environment, so none reaches run config or
    metadata; Azure's account name, which delta-rs cannot infer, comes through `EnvVar`.
    """
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    if scheme in ("s3", "s3a"):
        options = S3Config()
    elif scheme in ("gs", "gcs"):
        options = GcsConfig()
    elif scheme in ("az", "abfs", "abfss", "adl", "azure"):
        options = AzureConfig(account_name=EnvVar("AZURE_STORAGE_ACCOUNT_NAME"))
    elif scheme == "file":
        options = LocalConfig()
    else:
        raise ValueError(
            f"SEMSEARCH_SOURCE_TABLE_URI {uri!r}: unsupported scheme {scheme!r}; use a local path, "
            "file://, s3://, gs:// or abfss://"
        )
    return DeltaTableResource(url=uri, storage_options=options)


def source_storage_options(source: DeltaTableResource) -> dict[str, str]:
    """delta-rs's storage options of the source resource, without Dagster's provider tag."""
    # Not `str_dict()`: it calls pydantic's deprecated `.dict()` and warns on every use.
    options = source.storage_options.model_dump(exclude_none=True)
    return {key: str(value) for key, value in options.items() if key != "provider"}


class PipelineResource(ConfigurableResource):
    """Tunables of the stages: source mapping, chunking, index and theme parameters."""

    # No defaults: `from_settings` fills every field, so `Settings` stays the one place.
    partitions_start: str
    id_column: str
    text_column: str
    title_column: str
    created_at_column: str
    missing_date_policy: str
    max_document_chars: int
    chunk_size_tokens: int
    chunk_overlap_tokens: int
    ann_min_rows: int
    theme_min_cluster_share: float
    theme_min_cluster_size: int
    theme_min_samples: int
    theme_merge_similarity: float
    theme_member_quantile: float
    theme_fit_sample: int
    theme_batch_documents: int
    theme_vocabulary: int
    theme_keyword_min_df: int
    theme_refit_days: int
    theme_drift_margin: float
    theme_keep_margin: float
    theme_trend_recent_days: int
    theme_trend_ratio: float
    theme_trend_min_documents: int
    eval_label_field: str  # a metadata key of labels to score the themes against; "": none
    numba_cache_dir: str

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineResource:
        values = {name: getattr(settings, name) for name in cls.model_fields}
        return cls(**values | {"numba_cache_dir": str(settings.numba_cache_path)})

    def column_mapping(self) -> ColumnMapping:
        return ColumnMapping(
            id=self.id_column,
            text=self.text_column,
            title=self.title_column,
            created_at=self.created_at_column,
        )

    def date_policy(self) -> DatePolicy:
        return DatePolicy.parse(self.missing_date_policy)

    def record_parser(self) -> RecordParser:
        # No start set: the partitions begin at the first day of the data, whatever it is.
        first_day = date.fromisoformat(self.partitions_start) if self.partitions_start else date.min
        return RecordParser(
            self.column_mapping(),
            self.date_policy(),
            first_day,
            max_text_chars=self.max_document_chars,
        )

    def chunk_spec(self) -> ChunkSpec:
        return ChunkSpec(size=self.chunk_size_tokens, overlap=self.chunk_overlap_tokens)

    def ann_params(self) -> AnnParams:
        return AnnParams(min_rows=self.ann_min_rows)

    def theme_params(self) -> ThemeParams:
        names = [n for n in type(self).model_fields if n.startswith("theme_")]
        return ThemeParams.from_settings(Settings(**{n: getattr(self, n) for n in names}))

    def trend_rule(self) -> TrendRule:
        return TrendRule(
            recent_days=self.theme_trend_recent_days,
            ratio=self.theme_trend_ratio,
            min_documents=self.theme_trend_min_documents,
        )

    def numba_cache_path(self) -> Path:
        return Path(self.numba_cache_dir)


_DEFAULTS = Settings()  # the resource's defaults are the settings' defaults, defined once
# Loggers whose records an asset forwards to the Dagster run log while it embeds.
BACKEND_LOGGERS = ("semsearch.core.embedding", "semsearch.core.openai")


class EmbeddingResource(ConfigurableResource):
    """Embeds text with the local model (default) or an OpenAI-compatible API.

    The `openai_*` fields mirror the settings of the same name (see `Settings`); the key comes
    from `EnvVar("OPENAI_API_KEY")`, so neither the run config nor the UI ever holds it.
    """

    backend: str = _DEFAULTS.embedding_backend
    model: str = _DEFAULTS.embedding_model
    batch_size: int = _DEFAULTS.embedding_batch_size
    openai_api_key: str = ""
    openai_base_url: str = _DEFAULTS.openai_base_url
    openai_api_version: str = _DEFAULTS.openai_api_version
    openai_dimensions: int = _DEFAULTS.openai_dimensions
    openai_expected_dimension: int = _DEFAULTS.openai_expected_dimension
    openai_timeout_seconds: float = _DEFAULTS.openai_timeout_seconds
    openai_concurrency: int = _DEFAULTS.openai_concurrency
    openai_max_attempts: int = _DEFAULTS.openai_max_attempts
    openai_initial_wait_seconds: float = _DEFAULTS.openai_initial_wait_seconds
    openai_max_wait_seconds: float = _DEFAULTS.openai_max_wait_seconds
    openai_max_total_seconds: float = _DEFAULTS.openai_max_total_seconds
    openai_circuit_breaker_failures: int = _DEFAULTS.openai_circuit_breaker_failures
    openai_requests_per_minute: int = _DEFAULTS.openai_requests_per_minute
    openai_tokens_per_minute: int = _DEFAULTS.openai_tokens_per_minute
    openai_max_input_tokens: int = _DEFAULTS.openai_max_input_tokens
    openai_max_inputs_per_request: int = _DEFAULTS.openai_max_inputs_per_request
    openai_price_per_million_tokens: float = _DEFAULTS.openai_price_per_million_tokens

    _backend: EmbeddingBackend | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddingResource:
        common = {
            "backend": settings.embedding_backend,
            "model": settings.embedding_model,
            "batch_size": settings.embedding_batch_size,
        }
        if settings.embedding_backend != "openai":
            return cls(**common)
        api = {n: getattr(settings, n) for n in cls.model_fields if hasattr(settings, n)}
        return cls(**common, **api, openai_api_key=EnvVar(OPENAI_KEY_VARIABLE))

    def get_backend(self) -> EmbeddingBackend:
        if self._backend is None:
            self._backend = self._build_backend()
        return self._backend

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        close = getattr(self._backend, "close", None)
        if close is not None:
            close()  # the HTTP client's pooled connections

    def estimated_cost(self, tokens: int) -> float:
        """USD for `tokens` at the configured price; the local model costs nothing per token."""
        if self.backend != "openai":
            return 0.0
        return round(tokens * self.openai_price_per_million_tokens / 1_000_000, 6)

    @contextmanager
    def logs_to(self, target: logging.Logger) -> Iterator[None]:
        """Forward the backends' warnings (each retry: attempt, wait, reason) to `target`.

        The retry layer logs through `logging` from its worker threads; an asset passes
        `context.log` so the retries show in the Dagster run log, not only on the console.
        """
        handler = _ForwardHandler(target)
        loggers = [logging.getLogger(name) for name in BACKEND_LOGGERS]
        for logger in loggers:
            logger.addHandler(handler)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeHandler(handler)

    def backend_settings(self) -> Settings:
        """The settings a backend is built from (the Spark engine ships them to executors)."""
        api = {n: getattr(self, n) for n in type(self).model_fields if n.startswith("openai_")}
        api.pop("openai_api_key")
        return Settings(
            embedding_backend=self.backend,
            embedding_model=self.model,
            embedding_batch_size=self.batch_size,
            **api,
        )

    def _build_backend(self) -> EmbeddingBackend:
        return build_backend(self.backend_settings(), self.api_key())

    def api_key(self) -> str:
        key = self.openai_api_key
        # Inside a run Dagster has resolved the EnvVar; outside one (the search API, the CLI)
        # the field still holds the EnvVar itself.
        if isinstance(key, EnvVar):
            key = key.get_value() or ""
        return key  # an empty key makes OpenAIBackend raise EmbeddingConfigError


def spark_config(settings: Settings) -> dict[str, str]:
    """Spark conf from settings: master, app name, UTC session time, offline model, extra conf.

    On a `local` master the Python workers run this interpreter (the driver's venv); on a
    cluster, set `spark.pyspark.python` in SEMSEARCH_SPARK_CONF to the executors' Python.
    """
    conf = {
        "spark.master": settings.spark_master,
        "spark.app.name": settings.spark_app_name,
        "spark.sql.session.timeZone": "UTC",
        "spark.executorEnv.HF_HUB_OFFLINE": "1",
        "spark.executorEnv.TRANSFORMERS_OFFLINE": "1",
        "spark.ui.showConsoleProgress": "false",
    }
    return conf | settings.spark_conf_pairs()


class SparkResource(PySparkResource):
    """dagster-pyspark's `PySparkResource`; on a `local` master its Python workers run this
    interpreter (pyspark takes them from PYSPARK_PYTHON, else `python3` on the PATH, which
    need not have semsearch installed)."""

    local_python: str = ""

    def setup_for_execution(self, context: InitResourceContext) -> None:
        if self.local_python:
            os.environ.setdefault("PYSPARK_PYTHON", self.local_python)
        super().setup_for_execution(context)


def spark_resource(settings: Settings) -> SparkResource:
    """The Spark session resource on the configured master (the session starts with a run)."""
    local = settings.spark_master.startswith("local")
    return SparkResource(
        spark_config=spark_config(settings), local_python=sys.executable if local else ""
    )


class _ForwardHandler(logging.Handler):
    def __init__(self, target: logging.Logger) -> None:
        super().__init__(logging.WARNING)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.log(record.levelno, record.getMessage())
