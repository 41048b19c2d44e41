"""OpenAI (or any OpenAI-compatible endpoint, incl. Azure OpenAI) as an `EmbeddingBackend`.

Robustness is the point of this module, not the HTTP call:

* the official client runs with `max_retries=0`; tenacity owns retries so every retry is logged,
  counted in `EmbeddingStats` and bounded by attempts, total time and a per-wait cap;
* `Retry-After` / `retry-after-ms` are honoured (and briefly pause the other workers too);
* a 200 is validated (one finite, non-zero vector of the right dimension per input, matched by
  `index`) and a malformed answer is retried, never stored;
* a 400 on a batch is bisected so only the offending inputs fail;
* 401/403/404/insufficient_quota abort the whole call with `EmbeddingConfigError`, since every
  further request would fail the same way;
* inputs that still fail come back as `EmbeddingFailure`s; good results of other batches are
  never thrown away.

Chunks and limits are counted in the model's own tokens (`tokens.tokenizer_for`).
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import numpy as np
import openai

from semsearch.core.embedding import (
    BatchSink,
    EmbeddingError,
    EmbeddingFailure,
    EmbeddingResult,
    EmbeddingStats,
    Tokenizer,
    validate_vectors,
)
from semsearch.core.openai.batching import Batch, BatchOutcome, Exhausted, fail_all, halves
from semsearch.core.openai.caller import OpenAICaller, _retry_reason
from semsearch.core.openai.errors import Aborted, EmbeddingConfigError, MalformedResponseError
from semsearch.core.openai.tokens import tokenizer_for

log = logging.getLogger(__name__)

KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIBackend(OpenAICaller):
    """Embeddings from an OpenAI-compatible endpoint; see the module docstring for guarantees.

    Azure OpenAI: either pass the v1 endpoint as `base_url`
    (`https://<resource>.openai.azure.com/openai/v1/`), or set `azure_api_version` and pass the
    resource endpoint (`https://<resource>.openai.azure.com`) as `base_url`; `model` is then the
    deployment name.

    `max_total_seconds` bounds the retries of each request batch (measured from its first
    attempt), not the whole `embed()` call, which may legitimately run long for a backfill.
    """

    normalized = True
    what = "embedding"

    def __init__(
        self,
        model: str,
        api_key: str,
        *,
        base_url: str | None = None,
        dimensions: int | None = None,
        dimension: int | None = None,
        azure_api_version: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, object] | None = None,
        timeout: float = 60.0,
        max_attempts: int = 6,
        max_total_seconds: float = 300.0,
        max_wait_seconds: float = 60.0,
        initial_wait: float = 1.0,
        concurrency: int = 4,
        requests_per_minute: float = 0,
        tokens_per_minute: float = 0,
        max_input_tokens: int = 8191,
        max_inputs_per_request: int = 2048,
        max_tokens_per_request: int = 300_000,
        tokenizer: Tokenizer | None = None,
        circuit_breaker_failures: int = 10,
    ) -> None:
        if concurrency < 1 or max_inputs_per_request < 1:
            raise ValueError("max_attempts, concurrency and max_inputs_per_request must be >= 1")
        super().__init__(
            model,
            api_key,
            base_url=base_url,
            azure_api_version=azure_api_version,
            default_headers=default_headers,
            default_query=default_query,
            timeout=timeout,
            max_attempts=max_attempts,
            max_total_seconds=max_total_seconds,
            max_wait_seconds=max_wait_seconds,
            initial_wait=initial_wait,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            circuit_breaker_failures=circuit_breaker_failures,
        )
        self.dimensions = dimensions
        self.dimension = _expected_dimension(model, dimensions, dimension)
        self.model_id = f"openai/{model}" + (f"@{dimensions}" if dimensions else "")
        self.max_input_tokens = max_input_tokens
        self.max_inputs_per_request = max_inputs_per_request
        self.max_tokens_per_request = max_tokens_per_request
        self.concurrency = concurrency
        self._tokenizer: Tokenizer = tokenizer or tokenizer_for(model)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(model_id={self.model_id!r}, base_url={self.base_url!r})"

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return list(self._tokenizer.count_tokens(texts))

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self._tokenizer.token_offsets(text))

    def embed(self, texts: Sequence[str], on_batch: BatchSink | None = None) -> EmbeddingResult:
        """Embed `texts`; per-input failures are returned, configuration errors raised.

        `on_batch` gets each request's vectors as it completes, before any later error.
        """
        batches, rejected = self._plan(texts)
        total = BatchOutcome(failures=rejected)
        if batches:
            total.merge(self._run_batches(batches, on_batch))
        return self._result(total)

    def _plan(self, texts: Sequence[str]) -> tuple[list[Batch], list[EmbeddingFailure]]:
        """Pack sendable inputs in order into batches within the per-request limits."""
        batches: list[Batch] = []
        rejected: list[EmbeddingFailure] = []
        counts = self.count_tokens(texts) if texts else []
        for index, (text, tokens) in enumerate(zip(texts, counts, strict=True)):
            problem = self._input_problem(text, tokens)
            if problem:
                rejected.append(EmbeddingFailure(index, problem[0], problem[1], attempts=0))
                continue
            last = batches[-1] if batches else None
            if (
                last is None
                or len(last.indices) >= self.max_inputs_per_request
                or last.tokens + tokens > self.max_tokens_per_request
            ):
                last = Batch([], [], 0)
                batches.append(last)
            last.indices.append(index)
            last.texts.append(text)
            last.tokens += tokens
        return batches, rejected

    def _input_problem(self, text: str, tokens: int) -> tuple[str, str] | None:
        # The API rejects both with a 400; catching them here saves a bisection.
        if not text:
            return "empty_input", "empty string cannot be embedded"
        if tokens > self.max_input_tokens:
            return (
                "input_too_long",
                (
                    f"{tokens} tokens (estimated) > max_input_tokens={self.max_input_tokens}; "
                    "the chunker should have split it"
                ),
            )
        return None

    def _run_batches(self, batches: list[Batch], on_batch: BatchSink | None) -> BatchOutcome:
        abort = threading.Event()
        config_errors: list[EmbeddingConfigError] = []

        def run(batch: Batch) -> BatchOutcome:
            if abort.is_set():
                raise Aborted
            try:
                return self._embed_batch(batch, abort)
            except EmbeddingConfigError as error:
                # Recorded before abort is set, so whoever sees Aborted finds the cause here;
                # set in the worker so it cannot start its next batch first.
                config_errors.append(error)
                abort.set()
                raise

        total = BatchOutcome()
        with ThreadPoolExecutor(min(self.concurrency, len(batches))) as pool:
            futures = [pool.submit(run, batch) for batch in batches]
            try:
                # as_completed: a config error anywhere stops the others without waiting on them.
                for future in as_completed(futures):
                    outcome = future.result()
                    total.merge(outcome)
                    if on_batch is not None and outcome.indices:
                        on_batch(self._result(BatchOutcome(outcome.indices, outcome.vectors)))
            except BaseException as error:
                abort.set()
                for future in futures:
                    future.cancel()
                if isinstance(error, Aborted):
                    raise config_errors[0] from None
                raise
        return total

    def _embed_batch(self, batch: Batch, abort: threading.Event) -> BatchOutcome:
        """One batch with retries; a 400 splits it in halves to isolate the offending inputs."""
        outcome = BatchOutcome()
        try:
            result = self._retrying(outcome.stats, abort)(
                self._attempt, batch, outcome.stats, abort
            )
        except openai.BadRequestError as error:
            return self._bad_request(batch, error, outcome, abort)
        except openai.APIStatusError as error:
            self._raise_if_config_error(error)
            outcome.failures += fail_all(
                batch, f"http_{error.status_code}", self._describe(error), 1
            )
            return outcome
        if isinstance(result, Exhausted):
            reason = _retry_reason(result.error) or "error"
            message = self._describe(result.error)
            log.error(
                "giving up on %d inputs after %d attempts (%s: %s)",
                len(batch.indices),
                result.attempts,
                reason,
                message,
            )
            outcome.failures += fail_all(batch, reason, message, result.attempts)
            return outcome
        outcome.indices += batch.indices
        outcome.vectors += list(result)
        return outcome

    def _bad_request(
        self,
        batch: Batch,
        error: openai.BadRequestError,
        outcome: BatchOutcome,
        abort: threading.Event,
    ) -> BatchOutcome:
        if error.param and not error.param.startswith("input"):
            # A rejected parameter (dimensions, model...) is not an input problem: every
            # request would fail, so bisecting would only multiply the damage.
            raise EmbeddingConfigError(
                f"{self.base_url} rejected parameter {error.param!r} for model {self.model!r} "
                f"(400): {self._describe(error)}"
            ) from None
        if len(batch.indices) == 1:
            outcome.failures += fail_all(batch, "bad_request", self._describe(error), 1)
            return outcome
        log.info("400 on a batch of %d inputs; bisecting", len(batch.indices))
        for half in halves(batch, self.count_tokens(batch.texts)):
            outcome.merge(self._embed_batch(half, abort))
        return outcome

    def _attempt(
        self, batch: Batch, stats: EmbeddingStats, abort: threading.Event
    ) -> list[np.ndarray]:
        response = self._send(
            lambda: self._client.embeddings.create(**self._request(batch.texts)),
            batch.tokens,
            stats,
            abort,
        )
        return self._vectors(response, len(batch.texts), stats)

    def _request(self, texts: list[str]) -> dict[str, Any]:
        # base64 halves the payload; _decode also accepts float lists from servers ignoring it.
        request: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "base64"}
        if self.dimensions:
            request["dimensions"] = self.dimensions
        return request

    def _vectors(self, response: Any, expected: int, stats: EmbeddingStats) -> list[np.ndarray]:
        """Validate a 200: exactly one good vector per input, placed by `index`."""
        try:
            stats.tokens += _usage_tokens(response)
            items = [(item.index, _decode(item.embedding)) for item in response.data]
        except (AttributeError, TypeError, ValueError) as error:
            raise MalformedResponseError(f"unparseable response: {error}") from None
        if len(items) != expected:
            raise MalformedResponseError(f"{len(items)} embeddings for {expected} inputs")
        by_index = dict(items)
        if sorted(by_index) != list(range(expected)):
            raise MalformedResponseError(
                f"indices {sorted(by_index)} do not cover 0..{expected - 1}"
            )
        bad_dims = {len(v) for v in by_index.values()} - {self.dimension}
        if bad_dims:
            raise MalformedResponseError(f"dimension {bad_dims.pop()} != expected {self.dimension}")
        matrix = np.stack([by_index[i] for i in range(expected)]).astype(np.float32)
        try:
            validate_vectors(matrix, expected, self.dimension)
        except EmbeddingError as error:
            raise MalformedResponseError(str(error)) from None
        return list(matrix)

    def _result(self, total: BatchOutcome) -> EmbeddingResult:
        order = np.argsort(total.indices, kind="stable")
        indices = [total.indices[i] for i in order]
        vectors = np.zeros((len(indices), self.dimension), dtype=np.float32)
        if indices:
            vectors = np.stack([total.vectors[i] for i in order]).astype(np.float32)
        failures = sorted(total.failures, key=lambda f: f.index)
        return EmbeddingResult(indices, vectors, failures, total.stats)


def _expected_dimension(model: str, dimensions: int | None, dimension: int | None) -> int:
    if dimensions is not None and dimension is not None and dimensions != dimension:
        raise ValueError(f"dimension={dimension} contradicts dimensions={dimensions}")
    expected = dimensions or dimension or KNOWN_DIMENSIONS.get(model)
    if not expected:
        raise ValueError(f"unknown output dimension for model {model!r}: pass dimension=")
    return expected


def _decode(embedding: object) -> np.ndarray:
    if isinstance(embedding, str):
        raw = np.frombuffer(_b64decode(embedding), dtype="<f4")
        return raw.astype(np.float32)
    return np.asarray(embedding, dtype=np.float32).reshape(-1)


def _b64decode(data: str) -> bytes:
    decoded = base64.b64decode(data, validate=True)
    if len(decoded) % 4:
        raise ValueError(f"base64 embedding of {len(decoded)} bytes is not float32 data")
    return decoded


def _usage_tokens(response: Any) -> int:
    usage = getattr(response, "usage", None)
    if usage is None:
        return 0
    return int(getattr(usage, "total_tokens", None) or getattr(usage, "prompt_tokens", 0) or 0)
