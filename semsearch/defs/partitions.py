"""What every daily stage shares: the partitions, the backfill policy, groups and pools."""

from collections.abc import Callable
from datetime import date

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MetadataValue,
    asset,
)

from semsearch.config import Settings
from semsearch.defs.resources import StorageResource

INGEST, PIPELINE = "ingest", "semsearch"

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


def daily_partitions(settings: Settings) -> DailyPartitionsDefinition:
    # end_offset=1: today's partition exists, so data landing today can be processed (and
    # re-processed once the day is complete).
    return DailyPartitionsDefinition(start_date=settings.partitions_start, end_offset=1)


def daily_asset(**kwargs: object) -> Callable[..., AssetsDefinition]:
    """`@asset` for a daily asset of the pipeline group: one day per backfill run.

    No step retry policy: commit races are retried where they happen (`DeltaTables`), and
    retrying a whole step would only repeat a deterministic error three times.
    """
    return asset(backfill_policy=DAILY_BACKFILL, group_name=PIPELINE, **kwargs)


def partition_day(context: AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def table_metadata(storage: StorageResource, name: str) -> dict:
    return {"table": MetadataValue.path(storage.tables().uri(name))}
