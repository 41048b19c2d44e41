"""Themes over time: per theme and day, documents and share of the day, and the trend flags.

The rule, for a theme on day d (documents are counted, each once, on the day they are dated):

* recent = the `recent_days` days ending at d; baseline = the window's days before them;
* share = the theme's documents / all documents, over recent and over baseline;
* **emerging**: at least `min_documents` recent documents and a recent share at least `ratio`
  times the baseline share (a theme absent from the baseline qualifies on its recent count);
* **fading**: at least `min_documents` baseline documents and a recent share at most the
  baseline share divided by `ratio` (gone quiet counts: its recent share is 0).

No flag is raised without both periods holding documents, nor for the outliers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from semsearch.core.themes import OUTLIERS


@dataclass(frozen=True)
class TrendRule:
    recent_days: int = 3
    ratio: float = 2.0
    min_documents: int = 5


def theme_trends(documents: pl.DataFrame, first: date, last: date, rule: TrendRule) -> pl.DataFrame:
    """`documents` (doc_id, theme_id, document_date) -> one row per theme and day with data.

    Columns: theme_id, day, documents, share, first_day, last_day, emerging, fading.
    """
    per_day = (
        documents.unique("doc_id")
        .group_by("theme_id", pl.col("document_date").alias("day"))
        .len("documents")
    )
    days = pl.DataFrame(
        {"day": [first + timedelta(days=i) for i in range((last - first).days + 1)]},
        schema={"day": pl.Date},
    )
    themes = per_day.select("theme_id").unique().sort("theme_id")
    grid = (
        themes.join(days, how="cross")
        .join(per_day, on=["theme_id", "day"], how="left")
        .with_columns(pl.col("documents").fill_null(0).cast(pl.Int64))
        .sort("theme_id", "day")
    )
    totals = grid.group_by("day").agg(pl.col("documents").sum().alias("total"))
    grid = grid.join(totals, on="day").sort("theme_id", "day")
    r = rule.recent_days

    def trailing(column: str) -> tuple[pl.Expr, pl.Expr]:
        cumulative = pl.col(column).cum_sum().over("theme_id")
        before = cumulative.shift(r).over("theme_id").fill_null(0)
        return cumulative, before

    theme_cum, theme_before = trailing("documents")
    total_cum, total_before = trailing("total")
    grid = grid.with_columns(
        (theme_cum - theme_before).alias("recent"),
        theme_before.alias("baseline"),
        (total_cum - total_before).alias("recent_total"),
        total_before.alias("baseline_total"),
    )
    recent_share = pl.col("recent") / pl.col("recent_total")
    baseline_share = pl.col("baseline") / pl.col("baseline_total")
    both = (pl.col("recent_total") > 0) & (pl.col("baseline_total") > 0)
    not_outliers = pl.col("theme_id") != OUTLIERS
    spans = (
        per_day.filter(pl.col("documents") > 0)
        .group_by("theme_id")
        .agg(pl.col("day").min().alias("first_day"), pl.col("day").max().alias("last_day"))
    )
    return (
        grid.with_columns(
            (
                both
                & not_outliers
                & (pl.col("recent") >= rule.min_documents)
                & (recent_share >= rule.ratio * baseline_share)
            ).alias("emerging"),
            (
                both
                & not_outliers
                & (pl.col("baseline") >= rule.min_documents)
                & (recent_share <= baseline_share / rule.ratio)
            ).alias("fading"),
            pl.when(pl.col("total") > 0)
            .then(pl.col("documents") / pl.col("total"))
            .otherwise(0.0)
            .alias("share"),
        )
        .filter(pl.col("total") > 0)
        .join(spans, on="theme_id", how="left")
        .select(
            "theme_id", "day", "documents", "share", "first_day", "last_day", "emerging", "fading"
        )
        .sort("theme_id", "day")
    )


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    """Documents per day as a row of block characters (the UI shows markdown, not plots)."""
    peak = max(values, default=0)
    if peak == 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, round((len(SPARK) - 1) * v / peak))] for v in values)
