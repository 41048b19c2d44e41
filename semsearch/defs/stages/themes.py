"""Stage 5: themes over a trailing window of days, with ids carried over day to day."""

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MaterializeResult,
    TimeWindowPartitionMapping,
)

from semsearch.core.themes import OUTLIERS, ThemeWindow, find_themes
from semsearch.defs.metadata import StageTimer, histogram, markdown_table, table_rows
from semsearch.defs.partitions import THEMES_POOL, daily_asset, partition_day, table_metadata
from semsearch.defs.resources import PipelineResource, StorageResource
from semsearch.storage import themes_store
from semsearch.storage.embedding_store import vectors_from_column
from semsearch.storage.schemas import CHUNKS_TABLE, EMBEDDINGS_TABLE, THEMES, THEMES_TABLE

PREVIOUS_DAY = TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)

# Bump when the stage writes something else for the same input, so the UI marks it stale.
CODE_VERSION = "1"


def build_themes(partitions: DailyPartitionsDefinition, theme_window_days: int) -> AssetsDefinition:
    theme_window = ThemeWindow(theme_window_days, partitions.start.date())
    window = TimeWindowPartitionMapping(start_offset=-theme_window.days_before())

    @daily_asset(
        name=THEMES_TABLE,
        code_version=CODE_VERSION,
        partitions_def=partitions,
        deps=[
            AssetDep(EMBEDDINGS_TABLE, partition_mapping=window),
            AssetDep(CHUNKS_TABLE, partition_mapping=window),
            # Theme ids carry over from the previous day's window, so a day's themes depend on
            # the day before's: a backfill then runs them in day order, one at a time.
            AssetDep(THEMES_TABLE, partition_mapping=PREVIOUS_DAY),
        ],
        pool=THEMES_POOL,
        kinds={"deltalake", "scikitlearn"},
        description=f"Themes over the {theme_window_days or 'all'}-day window ending at the "
        "partition: UMAP + HDBSCAN over the embeddings, c-TF-IDF keywords, representative texts "
        "and an outlier bucket; ids carry over from the previous window. Assignments per chunk "
        "go to `theme_assignments`.",
    )
    def themes(
        context: AssetExecutionContext, storage: StorageResource, pipeline: PipelineResource
    ) -> MaterializeResult:
        day, tables, timer = partition_day(context), storage.tables(), StageTimer()
        first = theme_window.first_day(day)
        with timer.step("read"):
            members = themes_store.window_members(tables, first, day)
            previous = themes_store.previous_theme_members(tables, day)
        with timer.step("cluster"):
            result = find_themes(
                members["chunk_id"].to_list(),
                vectors_from_column(members["vector"], 0),
                members["text"].to_list(),
                pipeline.theme_params(),
                previous,
            )
        with timer.step("write"):
            themes_store.write_themes(tables, day, first, result, members)
        table = [
            (
                t.theme_id,
                t.size,
                ", ".join(t.keywords),
                t.representatives[0] if t.representatives else "",
            )
            for t in result.themes
        ]
        return MaterializeResult(
            metadata={
                "window": f"{first} .. {day}",
                "chunks_clustered": len(result.chunk_ids),
                "themes": sum(t.theme_id != OUTLIERS for t in result.themes),
                **table_rows(len(result.themes), THEMES),
                "theme_sizes": histogram(
                    pl.Series("size", [t.size for t in result.themes if t.theme_id != OUTLIERS]),
                    10,
                    "chunks per theme",
                ),
                "noise_share": round(result.noise_share, 3),
                "theme_table": markdown_table(table, ["theme", "size", "keywords", "example"]),
                **table_metadata(storage, themes_store.THEMES_TABLE),
                **timer.metadata(),
            }
        )

    return themes
