"""How long the server asked us to wait: `retry-after-ms`, or `Retry-After` (seconds or a date)."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Server-requested wait from `retry-after-ms`, or `Retry-After` (seconds or HTTP date)."""
    if not headers:
        return None
    value = _parse_float(headers.get("retry-after-ms"))
    if value is not None:
        return max(0.0, value / 1000)
    raw = headers.get("retry-after")
    value = _parse_float(raw)
    if value is None and raw:
        try:
            value = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return None if value is None else max(0.0, value)


def _parse_float(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def error_headers(error: BaseException | None) -> Mapping[str, str] | None:
    response = getattr(error, "response", None)
    return getattr(response, "headers", None)
