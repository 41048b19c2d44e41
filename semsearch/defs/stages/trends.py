"""Stage 6: theme trends, per theme and day of the window, with emerging and fading flags."""

from datetime import date

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MaterializeResult,
)

from semsearch.core.theme_trends import sparkline, theme_trends
from semsearch.core.themes import OUTLIERS
from semsearch.defs.metadata import StageTimer, markdown_table, table_rows
from semsearch.defs.partitions import daily_asset, partition_day, table_metadata
from semsearch.defs.resources import PipelineResource, StorageResource
from semsearch.storage import themes_store
from semsearch.storage.schemas import (
    ASSIGNMENTS_TABLE,
    PARTITION_COLUMN,
    THEME_TRENDS,
    THEMES,
    THEMES_TABLE,
    TRENDS_TABLE,
)

CODE_VERSION = "1"
CHART_THEMES = 15  # themes drawn in the chart: the largest, then every flagged one


def build_theme_trends(partitions: DailyPartitionsDefinition) -> AssetsDefinition:
    @daily_asset(
        name=TRENDS_TABLE,
        code_version=CODE_VERSION,
        partitions_def=partitions,
        deps=[THEMES_TABLE, ASSIGNMENTS_TABLE],
        kinds={"deltalake", "polars"},
        description="Per theme and day of the window: documents, share of the day, first and "
        "last day, and emerging / fading flags (the rule is in semsearch.core.theme_trends).",
    )
    def theme_trends_asset(
        context: AssetExecutionContext, storage: StorageResource, pipeline: PipelineResource
    ) -> MaterializeResult:
        day, tables, timer = partition_day(context), storage.tables(), StageTimer()
        with timer.step("read"):
            assignments = themes_store.window_assignments(tables, day)
            themes = tables.read_partition(THEMES_TABLE, day, THEMES)
        if assignments.height == 0:
            themes_store.write_trends(tables, day, pl.from_arrow(THEME_TRENDS.empty_table()))
            return MaterializeResult(
                metadata={"window": f"no theme window ends on {day}", **table_rows(0, THEME_TRENDS)}
            )
        first = themes["window_start"].min()
        with timer.step("trends"):
            trends = theme_trends(
                assignments.select("doc_id", "theme_id", "document_date"),
                first,
                day,
                pipeline.trend_rule(),
            )
            labels = themes.select("theme_id", "label")
            trends = trends.join(labels, on="theme_id", how="left").with_columns(
                pl.lit(day).alias(PARTITION_COLUMN)
            )
        with timer.step("write"):
            themes_store.write_trends(tables, day, trends.select(THEME_TRENDS.names))
        latest = trends.filter(pl.col("day") == trends["day"].max())
        return MaterializeResult(
            metadata={
                "window": f"{first} .. {day}",
                "emerging": latest.filter("emerging")["theme_id"].to_list(),
                "fading": latest.filter("fading")["theme_id"].to_list(),
                "emerging_themes": latest.filter("emerging").height,
                "fading_themes": latest.filter("fading").height,
                "trend_chart": _chart(trends, day),
                **table_rows(trends.height, THEME_TRENDS),
                **table_metadata(storage, TRENDS_TABLE),
                **timer.metadata(),
            }
        )

    return theme_trends_asset


def _chart(trends: pl.DataFrame, day: date):
    """Documents per day of each theme as a sparkline, flagged themes first, then the largest."""
    latest = trends.filter(pl.col("day") == day)
    if latest.height == 0:
        latest = trends.filter(pl.col("day") == trends["day"].max())
    days = trends["day"].unique().sort().to_list()
    per_theme = (
        trends.filter(pl.col("theme_id") != OUTLIERS)
        .group_by("theme_id")
        .agg(
            pl.col("label").first(),
            pl.col("documents").sum().alias("total"),
            pl.col("documents").sort_by("day").alias("series"),
            pl.col("day").sort().alias("days"),
        )
        .join(latest.select("theme_id", "share", "emerging", "fading"), on="theme_id", how="left")
        .with_columns((pl.col("emerging") | pl.col("fading")).fill_null(False).alias("flagged"))
        .sort(["flagged", "total", "theme_id"], descending=[True, True, False])
        .head(CHART_THEMES)
    )
    rows = []
    for r in per_theme.iter_rows(named=True):
        counts = dict(zip(r["days"], r["series"], strict=True))
        flag = "▲ emerging" if r["emerging"] else "▼ fading" if r["fading"] else ""
        rows.append(
            (
                r["label"] or r["theme_id"],
                r["total"],
                sparkline([counts.get(d, 0) for d in days]),
                f"{(r['share'] or 0):.1%}",
                flag,
            )
        )
    header = ["theme", "documents", f"per day {days[0]} .. {days[-1]}", "share today", "trend"]
    return markdown_table(rows, header)
