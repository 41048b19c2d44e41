"""OpenAI (or any OpenAI-compatible endpoint, incl. Azure OpenAI) as an `EmbeddingBackend`.

One module per concern: `client` (the backend: batches, retries, validation), `ratelimit`,
`retry_after`, `batching` (what a request carries, bisection of a bad batch), `tokens` (the
model's own tokenizer, offline) and `errors`.
"""

from semsearch.core.openai.client import KNOWN_DIMENSIONS, OpenAIBackend
from semsearch.core.openai.errors import EmbeddingConfigError, MalformedResponseError
from semsearch.core.openai.ratelimit import RateLimiter
from semsearch.core.openai.retry_after import retry_after_seconds
from semsearch.core.openai.tokens import TiktokenTokenizer, Utf8ByteTokenizer, tokenizer_for

__all__ = [
    "KNOWN_DIMENSIONS",
    "EmbeddingConfigError",
    "MalformedResponseError",
    "OpenAIBackend",
    "RateLimiter",
    "TiktokenTokenizer",
    "Utf8ByteTokenizer",
    "retry_after_seconds",
    "tokenizer_for",
]
