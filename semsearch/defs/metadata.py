"""Materialization metadata a person wants to see in the Dagster UI."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import polars as pl
from dagster import MetadataValue

PREVIEW_ROWS = 5
CELL_CHARS = 80


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def markdown_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return MetadataValue.md("\n".join(lines))


def preview(frame: pl.DataFrame, columns: Sequence[str]) -> MetadataValue:
    head = frame.select(columns).head(PREVIEW_ROWS)
    return markdown_table(head.rows(), columns)


class StageTimer:
    """Seconds per named step of an asset, reported as `seconds_<step>` metadata."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)

    def metadata(self) -> dict[str, float]:
        total = round(time.perf_counter() - self._start, 3)
        return {f"seconds_{k}": v for k, v in self.seconds.items()} | {"seconds_total": total}
