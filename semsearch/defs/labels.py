"""The optional chat labels of themes, as a Dagster resource (off unless a model is set)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from dagster import ConfigurableResource, EnvVar

from semsearch.config import OPENAI_KEY_VARIABLE, Settings
from semsearch.core.theme_labels import ChatLabeler, LabelError, content_key
from semsearch.core.themes import OUTLIERS, Theme
from semsearch.storage import themes_store
from semsearch.storage.delta import DeltaTables


class ThemeLabelResource(ConfigurableResource):
    """A chat model naming each theme in a few words, through the embedding API's retry policy.

    `model` empty: off (themes are labelled by their keywords). The key is OPENAI_API_KEY,
    through `EnvVar`, so neither the run config nor the UI ever holds it.
    """

    model: str
    base_url: str
    api_key: str = ""
    timeout_seconds: float
    max_attempts: int
    initial_wait_seconds: float
    max_wait_seconds: float
    max_total_seconds: float
    circuit_breaker_failures: int
    requests_per_minute: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ThemeLabelResource:
        return cls(
            model=settings.theme_label_model,
            base_url=settings.theme_label_base_url or settings.openai_base_url,
            api_key=EnvVar(OPENAI_KEY_VARIABLE) if settings.theme_label_model else "",
            timeout_seconds=settings.openai_timeout_seconds,
            max_attempts=settings.openai_max_attempts,
            initial_wait_seconds=settings.openai_initial_wait_seconds,
            max_wait_seconds=settings.openai_max_wait_seconds,
            max_total_seconds=settings.openai_max_total_seconds,
            circuit_breaker_failures=settings.openai_circuit_breaker_failures,
            requests_per_minute=settings.openai_requests_per_minute,
        )

    def labeler(self) -> ChatLabeler:
        key = self.api_key.get_value() if isinstance(self.api_key, EnvVar) else self.api_key
        return ChatLabeler(
            self.model,
            key or "",
            base_url=self.base_url or None,
            timeout=self.timeout_seconds,
            max_attempts=self.max_attempts,
            initial_wait=self.initial_wait_seconds,
            max_wait_seconds=self.max_wait_seconds,
            max_total_seconds=self.max_total_seconds,
            circuit_breaker_failures=self.circuit_breaker_failures,
            requests_per_minute=self.requests_per_minute,
        )

    def label(self, themes: Sequence[Theme], tables: DeltaTables, log: logging.Logger) -> int:
        """Give each theme its chat label (cached by content); returns the requests made."""
        if not self.model:
            return 0
        wanted = {
            content_key(self.model, t.keywords, t.representatives): t
            for t in themes
            if t.theme_id != OUTLIERS and t.keywords
        }
        known = themes_store.cached_labels(tables, list(wanted))
        made: dict[str, str] = {}
        missing = [k for k in wanted if k not in known]
        if missing:
            with self.labeler() as labeler:
                for key in missing:
                    theme = wanted[key]
                    try:
                        made[key] = labeler.label(theme.keywords, theme.representatives)
                    except LabelError as error:  # this theme keeps its keywords; next fit retries
                        log.warning("theme %s not labelled: %s", theme.theme_id, error)
            themes_store.store_labels(tables, self.model, made)
        for key, theme in wanted.items():
            theme.label = known.get(key) or made.get(key, "")
        return len(missing)
