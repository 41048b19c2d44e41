"""Optional short human labels for themes, from any OpenAI-compatible chat endpoint.

The labeler is an `OpenAICaller`, so it shares the embedding client's machinery: tenacity retries
with backoff and Retry-After, the rate limit, the circuit breaker, configuration errors (401,
403, 404, quota) raised at once, the key masked in every message. A 200 is validated (one
non-empty line) and a malformed answer is retried, never stored.

Labels are cached by the theme's content (`content_key`: model, prompt version, keywords and
representative texts), so an unchanged theme is never labelled twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import openai

from semsearch.core.embedding import EmbeddingError, EmbeddingStats
from semsearch.core.openai.batching import Exhausted
from semsearch.core.openai.caller import OpenAICaller, _retry_reason
from semsearch.core.openai.errors import MalformedResponseError

log = logging.getLogger(__name__)

PROMPT_VERSION = "1"  # bump when the prompt changes, so cached labels are not reused
MAX_LABEL_CHARS = 60
MAX_TOKENS = 24
EXAMPLE_CHARS = 300
SYSTEM = (
    "You name topics found in a collection of texts. Answer with a short label of two to five "
    "words, in the texts' language, with no quotes and no explanation."
)


class LabelError(EmbeddingError):
    """A label could not be obtained after the retries (the theme keeps its keywords)."""


def content_key(model: str, keywords: Sequence[str], representatives: Sequence[str]) -> str:
    payload = json.dumps([PROMPT_VERSION, model, list(keywords), list(representatives)])
    return hashlib.sha256(payload.encode()).hexdigest()


def prompt(keywords: Sequence[str], representatives: Sequence[str]) -> list[dict[str, str]]:
    examples = "\n".join(f"- {text[:EXAMPLE_CHARS]}" for text in representatives)
    user = f"Keywords: {', '.join(keywords)}\nExamples:\n{examples}\nLabel:"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def clean_label(content: object) -> str:
    """The label in a chat answer: its first line, unquoted, at most MAX_LABEL_CHARS."""
    if not isinstance(content, str) or not content.strip():
        raise MalformedResponseError("the chat answer holds no label")
    line = content.strip().splitlines()[0].strip().strip("\"'`*").strip()
    line = line.removeprefix("Label:").strip()
    if not line:
        raise MalformedResponseError("the chat answer holds no label")
    if len(line) > MAX_LABEL_CHARS:
        line = line[:MAX_LABEL_CHARS].rsplit(" ", 1)[0] + "…"
    return line


class ChatLabeler(OpenAICaller):
    """Labels one theme per request (a few dozen requests per refit at most)."""

    what = "theme label"

    def __init__(self, model: str, api_key: str, **policy: Any) -> None:
        super().__init__(model, api_key, **policy)
        self.stats = EmbeddingStats()

    def label(self, keywords: Sequence[str], representatives: Sequence[str]) -> str:
        abort = threading.Event()
        messages = prompt(keywords, representatives)
        try:
            result = self._retrying(self.stats, abort)(self._attempt, messages, abort)
        except openai.APIStatusError as error:
            self._raise_if_config_error(error)  # key, permission, model, quota: raised
            raise LabelError(f"theme label refused: {self._describe(error)}") from None
        if isinstance(result, Exhausted):
            reason = _retry_reason(result.error) or "error"
            raise LabelError(
                f"no theme label after {result.attempts} attempts ({reason}: "
                f"{self._describe(result.error)})"
            )
        return result

    def _attempt(self, messages: list[dict[str, str]], abort: threading.Event) -> str:
        tokens = sum(len(m["content"]) for m in messages) // 4 + MAX_TOKENS
        response = self._send(
            lambda: self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=0, max_tokens=MAX_TOKENS
            ),
            tokens,
            self.stats,
            abort,
        )
        try:
            usage = getattr(response, "usage", None)
            self.stats.tokens += int(getattr(usage, "total_tokens", 0) or 0)
            return clean_label(response.choices[0].message.content)
        except (AttributeError, IndexError, TypeError) as error:
            raise MalformedResponseError(f"unparseable chat answer: {error}") from None
