"""Errors of the embedding API that callers act on."""

from semsearch.core.embedding import EmbeddingError


class EmbeddingConfigError(EmbeddingError):
    """The endpoint refuses every request (key, permission, model, quota): fix the configuration."""


class EndpointDownError(EmbeddingConfigError):
    """The endpoint failed so many requests in a row that it is taken to be down."""


class MalformedResponseError(EmbeddingError):
    """A 200 whose body cannot be trusted as data."""


class Aborted(Exception):
    """Another batch hit a configuration error; stop retrying."""
