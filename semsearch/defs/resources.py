"""Dagster resources: where the tables live, how text is embedded, and the pipeline's knobs.

Each resource is built from `Settings` (the one place defaults live) by `from_settings`; the
OpenAI key is the only secret and comes through `EnvVar`.
"""

from __future__ import annotations

from dagster import ConfigurableResource, EnvVar
from pydantic import PrivateAttr

from semsearch.config import Settings
from semsearch.core.chunking import ChunkSpec
from semsearch.core.embedding import EmbeddingBackend, LocalBackend
from semsearch.core.ingest import ColumnMapping, DatePolicy
from semsearch.core.themes import ThemeParams
from semsearch.storage.delta import DeltaTables
from semsearch.storage.vector_index import AnnParams, VectorIndex


class StorageResource(ConfigurableResource):
    """The landing folder, the Delta tables folder and the LanceDB index."""

    landing_dir: str
    tables_dir: str
    lance_uri: str
    lance_table: str = "chunks"

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


class PipelineResource(ConfigurableResource):
    """Tunables of the stages: source mapping, chunking, index and theme parameters."""

    partitions_start: str
    id_column: str = "id"
    text_column: str = "text"
    title_column: str = "title"
    created_at_column: str = "created_at"
    missing_date_policy: str = "reject"
    chunk_size_tokens: int = 200
    chunk_overlap_tokens: int = 32
    ann_min_rows: int = 100_000
    theme_min_cluster_size: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineResource:
        return cls(**{name: getattr(settings, name) for name in cls.model_fields})

    def column_mapping(self) -> ColumnMapping:
        return ColumnMapping(
            id=self.id_column,
            text=self.text_column,
            title=self.title_column,
            created_at=self.created_at_column,
        )

    def date_policy(self) -> DatePolicy:
        return DatePolicy.parse(self.missing_date_policy)

    def chunk_spec(self) -> ChunkSpec:
        return ChunkSpec(size=self.chunk_size_tokens, overlap=self.chunk_overlap_tokens)

    def ann_params(self) -> AnnParams:
        return AnnParams(min_rows=self.ann_min_rows)

    def theme_params(self) -> ThemeParams:
        return ThemeParams(min_cluster_size=self.theme_min_cluster_size)


class EmbeddingResource(ConfigurableResource):
    """Embeds text with the local model (default) or an OpenAI-compatible API."""

    backend: str = "local"
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = 64
    openai_base_url: str = ""
    openai_api_key: str = ""
    openai_dimensions: int = 0

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
        return cls(
            **common,
            openai_base_url=settings.openai_base_url,
            openai_api_key=EnvVar("OPENAI_API_KEY"),
            openai_dimensions=settings.openai_dimensions,
        )

    def get_backend(self) -> EmbeddingBackend:
        if self._backend is None:
            self._backend = self._build_backend()
        return self._backend

    def _build_backend(self) -> EmbeddingBackend:
        if self.backend == "local":
            return LocalBackend(batch_size=self.batch_size)
        if self.backend == "openai":
            from semsearch.core.openai_backend import OpenAIBackend

            if not self.openai_api_key:
                raise ValueError("OPENAI_API_KEY is not set; the openai backend needs it")
            return OpenAIBackend(
                model=self.model,
                api_key=self.openai_api_key,
                base_url=self.openai_base_url or None,
                dimensions=self.openai_dimensions or None,
            )
        raise ValueError(f"unknown embedding backend {self.backend!r}: use 'local' or 'openai'")
