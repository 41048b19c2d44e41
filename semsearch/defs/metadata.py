"""Materialization metadata a person wants to see in the Dagster UI."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import polars as pl
import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema

PREVIEW_ROWS = 5
CELL_CHARS = 80
ROW_COUNT = "dagster/row_count"  # Dagster's standard keys: the UI shows and plots them
COLUMN_SCHEMA = "dagster/column_schema"
BAR_CHARS = 40
# Metadata of a step failure that is the endpoint refusing the configuration (a key, a model):
# every later day would fail alike, so a command-line run stops at the first such failure.
CONFIGURATION_ERROR = "semsearch/configuration_error"


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


def table_rows(rows: int, schema: pa.Schema) -> dict:
    """The standard row count and column schema of what a stage wrote."""
    columns = [TableColumn(field.name, str(field.type)) for field in schema]
    return {ROW_COUNT: MetadataValue.int(rows), COLUMN_SCHEMA: TableSchema(columns=columns)}


def histogram(values: pl.Series, bins: int, label: str) -> MetadataValue:
    """A distribution drawn as text bars: readable in the UI's markdown, no plotting library."""
    counts = values.value_counts().rename({values.name: "value"}) if values.len() else None
    return histogram_of_counts(counts, bins, label)


def histogram_of_counts(counts: pl.DataFrame | None, bins: int, label: str) -> MetadataValue:
    """`histogram` from (value, count) rows, as an engine that never collects the values has."""
    if counts is None or counts.height == 0:
        return MetadataValue.md(f"no {label}")
    counts = counts.rename(dict(zip(counts.columns, ["value", "count"], strict=True)))
    low, high = int(counts["value"].min()), int(counts["value"].max())
    width = max(1, -(-(high - low + 1) // bins))
    binned = (
        counts.group_by(((pl.col("value") - low) // width).alias("bin"))
        .agg(pl.col("count").sum())
        .sort("bin")
    )
    peak = int(binned["count"].max())
    rows = [
        (
            f"{low + int(b) * width}–{low + (int(b) + 1) * width - 1}",
            n,
            "█" * max(1, round(BAR_CHARS * n / peak)),
        )
        for b, n in binned.iter_rows()
    ]
    return markdown_table(rows, [label, "count", ""])


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
