"""What every daily stage shares: the partitions, the backfill policy, groups and pools."""

from collections.abc import Callable
from datetime import UTC, date, datetime

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MetadataValue,
    asset,
    multi_asset,
)

from semsearch.config import Settings
from semsearch.defs.resources import StorageResource
from semsearch.storage.delta import DeltaTables
from semsearch.storage.history import partition_days
from semsearch.storage.schemas import BRONZE_TABLE

INGEST, PIPELINE = "ingest", "semsearch"
SPARK_RESOURCE = "spark"  # dagster-pyspark's PySparkResource, present on the spark engine

# No backfill policy: a backfill (from the UI, `semsearch backfill` or `dagster job backfill`)
# then launches one run per day *keyed by that day*, as a sensor or `semsearch run` does. Under
# any BackfillPolicy, even multi_run(max_partitions_per_run=1), Dagster 1.13 launches runs over
# a partition *range*, and records their check results with no partition: the UI then shows
# every day's check as skipped. Throughput comes from concurrent runs, bounded by pools.
# (Kept as a name so that every daily asset, multi-assets included, states the same policy.)
DAILY_BACKFILL = None
# Instance pools (limits in dagster.yaml / `dagster instance concurrency set`): embedding calls
# share a bounded pool; the LanceDB index has a single writer; UMAP runs one window at a time.
EMBEDDING_POOL = "semsearch_embedding"
LANCEDB_POOL = "semsearch_lancedb"
THEMES_POOL = "semsearch_themes"
PIPELINE_POOLS = (EMBEDDING_POOL, LANCEDB_POOL, THEMES_POOL)


def today() -> date:
    """The last daily partition (UTC)."""
    return datetime.now(UTC).date()


def first_partition_day(settings: Settings) -> date:
    """SEMSEARCH_PARTITIONS_START, or by default the first day the landed data holds (today
    before any data), so the UI's partition coverage counts the days there are, not a year of
    empty ones. Read when definitions load: data older than that needs a reload of the code
    location (the bronze sensor says so)."""
    if settings.partitions_start:
        return date.fromisoformat(settings.partitions_start)
    days = partition_days(DeltaTables(settings.tables_path), BRONZE_TABLE)
    return min(days[0], today()) if days else today()


def daily_partitions(settings: Settings) -> DailyPartitionsDefinition:
    # end_offset=1: today's partition exists, so data landing today can be processed (and
    # re-processed once the day is complete).
    start = first_partition_day(settings)
    return DailyPartitionsDefinition(start_date=start.isoformat(), end_offset=1)


def daily_asset(**kwargs: object) -> Callable[..., AssetsDefinition]:
    """`@asset` for a daily asset of the pipeline group: one day per backfill run.

    No step retry policy: commit races are retried where they happen (`DeltaTables`), and
    retrying a whole step would only repeat a deterministic error three times.
    """
    return asset(backfill_policy=DAILY_BACKFILL, group_name=PIPELINE, **kwargs)


def daily_multi_asset(**kwargs: object) -> Callable[..., AssetsDefinition]:
    """`@multi_asset` for a stage of the pipeline group that writes several daily tables, each
    an asset with its own metadata (as `daily_asset`: one day per backfill run)."""
    return multi_asset(backfill_policy=DAILY_BACKFILL, group_name=PIPELINE, **kwargs)


def engine_kinds(engine: str, kinds: set[str]) -> set[str]:
    """The stage's kinds in the UI: `spark` or `polars` beside its storage."""
    return kinds | {"spark" if engine == "spark" else "polars"}


def partition_day(context: AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def table_metadata(storage: StorageResource, name: str) -> dict:
    return {"table": MetadataValue.path(storage.tables().uri(name))}
