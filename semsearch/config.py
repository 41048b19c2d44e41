"""Every setting semsearch reads, with its default, in one place.

`Settings.from_env` is the only code that reads the process environment; everything else
receives a `Settings` (or a Dagster resource built from one). `.env.example` mirrors this file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ENV_PREFIX = "SEMSEARCH_"


@dataclass(frozen=True)
class Settings:
    # Where everything lives by default: landing folder, Delta tables, LanceDB.
    home: str = ".semsearch"
    landing_dir: str = ""  # default: <home>/landing
    tables_dir: str = ""  # default: <home>/tables
    lance_uri: str = ""  # default: <home>/lancedb
    partitions_start: str = "2026-01-01"

    # Source column mapping; any other column is kept as metadata.
    id_column: str = "id"
    text_column: str = "text"
    title_column: str = "title"
    created_at_column: str = "created_at"
    # "reject" (default), "file_mtime", or a fixed ISO date such as 2026-01-01.
    missing_date_policy: str = "reject"

    # Chunking, in tokens of the embedding model's own tokenizer.
    chunk_size_tokens: int = 200
    chunk_overlap_tokens: int = 32

    # Embeddings.
    embedding_backend: str = "local"  # "local" or "openai"
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_batch_size: int = 64
    openai_base_url: str = ""  # empty: the official endpoint
    openai_dimensions: int = 0  # 0: the model's native dimension

    # Vector index.
    lance_table: str = "chunks"
    ann_min_rows: int = 100_000  # exact search below this many rows

    # Themes.
    theme_window_days: int = 30  # 0: all history up to the partition
    theme_min_cluster_size: int = 10

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def landing_path(self) -> Path:
        return Path(self.landing_dir) if self.landing_dir else self.home_path / "landing"

    @property
    def tables_path(self) -> Path:
        return Path(self.tables_dir) if self.tables_dir else self.home_path / "tables"

    @property
    def lance_path(self) -> str:
        return self.lance_uri or str(self.home_path / "lancedb")

    @property
    def start_date(self) -> date:
        return date.fromisoformat(self.partitions_start)

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from SEMSEARCH_* variables; unknown or malformed values fail loudly."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            if field.type == "int":
                try:
                    values[field.name] = int(raw)
                except ValueError:
                    raise ValueError(
                        f"{ENV_PREFIX}{field.name.upper()}={raw!r} is not a whole number"
                    ) from None
            else:
                values[field.name] = raw
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        try:
            date.fromisoformat(self.partitions_start)
        except ValueError:
            raise ValueError(
                f"SEMSEARCH_PARTITIONS_START={self.partitions_start!r} is not an ISO date "
                "(YYYY-MM-DD)"
            ) from None
        if self.chunk_overlap_tokens >= self.chunk_size_tokens:
            raise ValueError("SEMSEARCH_CHUNK_OVERLAP_TOKENS must be smaller than the chunk size")
        if self.embedding_backend not in ("local", "openai"):
            raise ValueError(
                f"SEMSEARCH_EMBEDDING_BACKEND={self.embedding_backend!r}: use 'local' or 'openai'"
            )
        if self.missing_date_policy not in ("reject", "file_mtime"):
            try:
                date.fromisoformat(self.missing_date_policy)
            except ValueError:
                raise ValueError(
                    f"SEMSEARCH_MISSING_DATE_POLICY={self.missing_date_policy!r}: use 'reject', "
                    "'file_mtime' or an ISO date"
                ) from None
