"""Build the configured embedding backend from settings, with or without Dagster around it."""

from __future__ import annotations

from semsearch.config import Settings
from semsearch.core.embedding import EmbeddingBackend, LocalBackend
from semsearch.core.query_encoder import (
    QueryEmbedder,
    backend_query_embedder,
    local_query_embedder,
)


def build_backend(settings: Settings, api_key: str = "") -> EmbeddingBackend:
    """The backend `settings.embedding_backend` names; `api_key` is used by `openai` only."""
    if settings.embedding_backend == "local":
        return LocalBackend(settings.embedding_model, settings.embedding_batch_size)
    if settings.embedding_backend == "openai":
        from semsearch.core.openai import OpenAIBackend

        return OpenAIBackend(
            model=settings.embedding_model,
            api_key=api_key,  # empty: OpenAIBackend raises EmbeddingConfigError
            base_url=settings.openai_base_url or None,
            azure_api_version=settings.openai_api_version or None,
            dimensions=settings.openai_dimensions or None,
            dimension=settings.openai_expected_dimension or None,
            timeout=settings.openai_timeout_seconds,
            concurrency=settings.openai_concurrency,
            max_attempts=settings.openai_max_attempts,
            initial_wait=settings.openai_initial_wait_seconds,
            max_wait_seconds=settings.openai_max_wait_seconds,
            max_total_seconds=settings.openai_max_total_seconds,
            requests_per_minute=settings.openai_requests_per_minute,
            tokens_per_minute=settings.openai_tokens_per_minute,
            max_input_tokens=settings.openai_max_input_tokens,
            max_inputs_per_request=settings.openai_max_inputs_per_request,
            circuit_breaker_failures=settings.openai_circuit_breaker_failures,
        )
    raise ValueError(
        f"unknown embedding backend {settings.embedding_backend!r}: use 'local' or 'openai'"
    )


def build_query_embedder(settings: Settings, backend: EmbeddingBackend) -> QueryEmbedder:
    """How one search query becomes a vector: the local model on ONNX Runtime (same vectors,
    ~3x faster for one short text), or the backend itself."""
    if isinstance(backend, LocalBackend):
        return local_query_embedder(backend, settings.onnx_cache_path)
    return backend_query_embedder(backend)
