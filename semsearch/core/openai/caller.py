"""What every call to an OpenAI-compatible endpoint shares, embeddings and chat alike.

* the official client runs with `max_retries=0`; tenacity owns retries so every retry is logged,
  counted and bounded by attempts, total time and a per-wait cap;
* `Retry-After` / `retry-after-ms` are honoured (and briefly pause the other workers too);
* a circuit breaker stops sending once the endpoint looks down;
* 401/403/404/insufficient_quota become `EmbeddingConfigError` (fix the configuration), with the
  key masked even when a server echoes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Self

import openai
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from semsearch.core.embedding import EmbeddingStats
from semsearch.core.openai.batching import Exhausted
from semsearch.core.openai.errors import (
    Aborted,
    EmbeddingConfigError,
    EndpointDownError,
    MalformedResponseError,
)
from semsearch.core.openai.ratelimit import RateLimiter, interruptible_sleep
from semsearch.core.openai.retry_after import error_headers, retry_after_seconds

log = logging.getLogger(__name__)

# Failures that say the endpoint itself is unreachable or broken, not this request.
ENDPOINT_DOWN_REASONS = {"connection", "timeout", "server_error"}


def _retry_reason(error: BaseException) -> str | None:
    """Reason label for a retryable error, None when retrying cannot help."""
    if isinstance(error, MalformedResponseError):
        return "malformed_response"
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection"
    if isinstance(error, openai.RateLimitError):
        return None if _is_quota(error) else "rate_limit"
    if isinstance(error, openai.APIStatusError):
        if error.status_code >= 500:
            return "server_error"
        return {408: "timeout", 409: "conflict"}.get(error.status_code)
    return None


def _is_quota(error: openai.APIStatusError) -> bool:
    return "insufficient_quota" in (error.code, error.type)


class CircuitBreaker:
    """Counts endpoint failures in a row across every worker; any success resets the count.

    Retries ride out a blip; a run of failures across batches means the endpoint is down, and
    sending on would only spend every batch's retry budget (minutes) to dead-letter them all.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._failures = 0
        self._lock = threading.Lock()

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0

    def trips(self) -> bool:
        """Count a failure; True once `threshold` have come in a row."""
        with self._lock:
            self._failures += 1
            return self._failures >= self.threshold


class OpenAICaller:
    """The client, retry policy, rate limit and circuit breaker of one endpoint and model.

    Subclasses send their requests through `_send` inside `_retrying(...)`, and validate a 200
    by raising `MalformedResponseError`, which is retried like a transient failure.
    """

    what = "API"  # names the requests in log lines

    def __init__(
        self,
        model: str,
        api_key: str,
        *,
        base_url: str | None = None,
        azure_api_version: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, object] | None = None,
        timeout: float = 60.0,
        max_attempts: int = 6,
        max_total_seconds: float = 300.0,
        max_wait_seconds: float = 60.0,
        initial_wait: float = 1.0,
        requests_per_minute: float = 0,
        tokens_per_minute: float = 0,
        circuit_breaker_failures: int = 10,
    ) -> None:
        if not api_key:
            raise EmbeddingConfigError("no API key given: set OPENAI_API_KEY")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.model = model
        self.max_attempts = max_attempts
        self.max_total_seconds = max_total_seconds
        self.max_wait_seconds = max_wait_seconds
        self._breaker = CircuitBreaker(circuit_breaker_failures)
        self._api_key = api_key
        self._limiter = RateLimiter(requests_per_minute, tokens_per_minute)
        self._backoff = wait_exponential_jitter(
            multiplier=initial_wait, max=max_wait_seconds, jitter=initial_wait
        )
        self._client = _make_client(
            api_key, base_url, azure_api_version, default_headers, default_query, timeout
        )
        self.base_url = str(self._client.base_url)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self, request: Callable[[], Any], tokens: int, stats: EmbeddingStats, abort: threading.Event
    ) -> Any:
        """One attempt: wait for the rate limit, send, and count the outcome for the breaker."""
        self._limiter.acquire(tokens, abort)
        if abort.is_set():
            raise Aborted
        stats.requests += 1
        try:
            response = request()
        except (openai.APIResponseValidationError, ValueError) as error:
            # ValueError: a 200 whose body is not JSON (e.g. a proxy's HTML error page).
            raise MalformedResponseError(f"unparseable response: {error}") from None
        except openai.RateLimitError as error:
            self._pause_for_rate_limit(error)
            raise
        except openai.APIError as error:
            if _retry_reason(error) in ENDPOINT_DOWN_REASONS and self._breaker.trips():
                raise self._endpoint_down(self._breaker.threshold, error) from error
            raise
        self._breaker.succeeded()
        return response

    def _retrying(self, stats: EmbeddingStats, abort: threading.Event) -> Retrying:
        return Retrying(
            retry=retry_if_exception(lambda e: _retry_reason(e) is not None),
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.max_total_seconds),
            wait=self._wait,
            sleep=lambda seconds: interruptible_sleep(seconds, abort),
            before_sleep=lambda state: self._on_retry(state, stats),
            retry_error_callback=lambda s: Exhausted(s.outcome.exception(), s.attempt_number),
        )

    def _endpoint_down(self, failures: int, error: BaseException) -> EmbeddingConfigError:
        return EndpointDownError(
            f"{self.base_url} looks down: {failures} requests in a row failed "
            f"({_retry_reason(error)}: {self._describe(error)}); stopped sending. Vectors "
            "embedded before are kept in the cache; run the day again once the endpoint is back "
            "(SEMSEARCH_OPENAI_CIRCUIT_BREAKER_FAILURES sets how many failures in a row stop it)"
        )

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, but never less than the server asked for."""
        wait = self._backoff(state)
        hinted = retry_after_seconds(error_headers(state.outcome.exception()))
        if hinted is not None:
            wait = max(wait, hinted)
        return min(wait, self.max_wait_seconds)

    def _pause_for_rate_limit(self, error: openai.RateLimitError) -> None:
        hinted = retry_after_seconds(error_headers(error))
        if hinted and not _is_quota(error):
            self._limiter.pause_until(time.monotonic() + min(hinted, self.max_wait_seconds))

    def _on_retry(self, state: RetryCallState, stats: EmbeddingStats) -> None:
        error = state.outcome.exception()
        reason = _retry_reason(error) or "error"
        stats.retries += 1
        stats.retry_reasons[reason] += 1
        log.warning(
            "%s request attempt %d/%d failed (%s: %s); retrying in %.2fs",
            self.what,
            state.attempt_number,
            self.max_attempts,
            reason,
            self._describe(error),
            state.upcoming_sleep,
        )

    def _raise_if_config_error(self, error: openai.APIStatusError) -> None:
        where = self.base_url
        detail = self._describe(error)
        if error.status_code == 401:
            message = f"OPENAI_API_KEY rejected by {where} (401): check the key"
        elif error.status_code == 403:
            message = (
                f"permission denied by {where} (403) for model {self.model!r}: check the key's "
                "project/organisation access or the endpoint's network rules"
            )
        elif error.status_code == 404:
            message = (
                f"model {self.model!r} not found at {where} (404): check the model (or Azure "
                "deployment) name and base_url"
            )
        elif isinstance(error, openai.RateLimitError) and _is_quota(error):
            message = f"quota exhausted at {where}: add credit or raise the limit"
        else:
            return
        raise EmbeddingConfigError(f"{message}. Server said: {detail}") from None

    def _describe(self, error: BaseException) -> str:
        """Error text safe to log and store: the API key is masked even if a server echoes it."""
        text = getattr(error, "message", None) or str(error) or type(error).__name__
        return text.replace(self._api_key, "***")


def _make_client(
    api_key: str,
    base_url: str | None,
    azure_api_version: str | None,
    default_headers: Mapping[str, str] | None,
    default_query: Mapping[str, object] | None,
    timeout: float,
) -> openai.OpenAI:
    # max_retries=0: tenacity owns retries so each one is logged, counted and bounded.
    common: dict[str, Any] = {
        "api_key": api_key,
        "timeout": timeout,
        "max_retries": 0,
        "default_headers": default_headers,
        "default_query": default_query,
    }
    if azure_api_version:
        if not base_url:
            raise ValueError("azure_api_version needs base_url=https://<resource>.openai.azure.com")
        return openai.AzureOpenAI(api_version=azure_api_version, azure_endpoint=base_url, **common)
    return openai.OpenAI(base_url=base_url, **common)
