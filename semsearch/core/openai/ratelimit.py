"""A requests- and tokens-per-minute budget shared by every worker of one backend.

Hand-written rather than a PyPI limiter: it must weigh a request by its tokens, let one oversized
request run into debt, and let a 429's Retry-After pause every worker at once; the limiters we
looked at (pyrate-limiter, limits) count requests only.
"""

from __future__ import annotations

import threading
import time

from semsearch.core.openai.errors import Aborted


class _Bucket:
    """Token bucket refilled continuously; may go into debt so one oversized request still runs."""

    def __init__(self, per_minute: float, burst_seconds: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self.updated = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def shortfall(self, cost: float) -> float:
        """Seconds until `cost` (at most a full bucket) is available."""
        needed = min(cost, self.capacity) - self.level
        return max(0.0, needed / self.rate)


class RateLimiter:
    """Thread-safe requests/tokens-per-minute budget shared by all workers (0 = unlimited).

    Buckets hold about one second of budget, so a backfill is spread out instead of firing a
    minute's worth of requests at once. `pause_until` lets a 429's Retry-After hold back every
    worker, not just the one that got it.
    """

    def __init__(
        self, requests_per_minute: float = 0, tokens_per_minute: float = 0, burst_seconds: float = 1
    ) -> None:
        self._buckets: list[tuple[_Bucket, bool]] = []  # (bucket, counts tokens?)
        if requests_per_minute > 0:
            self._buckets.append((_Bucket(requests_per_minute, burst_seconds), False))
        if tokens_per_minute > 0:
            self._buckets.append((_Bucket(tokens_per_minute, burst_seconds), True))
        self._lock = threading.Lock()
        self._paused_until = 0.0

    def acquire(self, tokens: int, abort: threading.Event | None = None) -> None:
        while True:
            with self._lock:
                delay = self._delay(tokens, time.monotonic())
                if delay <= 0:
                    for bucket, counts_tokens in self._buckets:
                        bucket.level -= tokens if counts_tokens else 1
                    return
            interruptible_sleep(delay, abort)

    def pause_until(self, deadline: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, deadline)

    def _delay(self, tokens: int, now: float) -> float:
        delay = self._paused_until - now
        for bucket, counts_tokens in self._buckets:
            bucket.refill(now)
            delay = max(delay, bucket.shortfall(tokens if counts_tokens else 1))
        return delay


def interruptible_sleep(seconds: float, abort: threading.Event | None) -> None:
    if abort is None:
        time.sleep(seconds)
    elif abort.wait(seconds):
        raise Aborted
