"""Backfills of many days, submitted to Dagster's backfill daemon.

A submitted backfill is the same object the UI's "Materialize → backfill" creates: the daemon
(`dagster dev`, `semsearch ui` or `dagster-daemon run`) launches its runs under each asset's
backfill policy and the instance's pools, and runs `themes` in day order (it depends on the day
before). Without a daemon, `semsearch backfill --in-process` runs the days here instead
(`semsearch.runner.run_days`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, timedelta

from dagster import AssetKey, AssetSelection, DagsterInstance, Definitions

from semsearch.defs.dagster_internals import (
    PartitionBackfill,
    PartitionRangeSelector,
    PartitionsByAssetSelector,
    PartitionsSelector,
    get_current_timestamp,
    make_new_backfill_id,
)

log = logging.getLogger(__name__)


def days_between(first: date, last: date) -> list[date]:
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def daily_asset_keys(defs: Definitions) -> list[AssetKey]:
    """Every asset of the daily pipeline job (the partitioned ones)."""
    graph = defs.resolve_asset_graph()
    return sorted(k for k in graph.materializable_asset_keys if graph.get(k).is_partitioned)


def _runs(days: Sequence[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) ranges."""
    runs: list[tuple[date, date]] = []
    for day in sorted(days):
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def submit_backfill(
    instance: DagsterInstance,
    defs: Definitions,
    days: Sequence[date],
    assets: Sequence[AssetKey] | None = None,
) -> str:
    """Record an asset backfill of `days` for the daemon to run; returns its id.

    The target is exactly `days` of every asset. Dagster's default (`from_asset_partitions`)
    would add every partition downstream of them: through the themes' trailing window and their
    dependency on the day before, a 2-day backfill became themes for every day up to today.
    """
    graph = defs.resolve_asset_graph()
    # A step writing several tables runs whole: asking for one of them brings the others.
    keys = sorted(
        AssetSelection.assets(*(assets or daily_asset_keys(defs)))
        .required_multi_asset_neighbors()
        .resolve(graph)
    )
    partitions = [d.isoformat() for d in days]
    daily = graph.get(keys[0]).partitions_def
    outside = [p for p in partitions if not daily.has_partition_key(p)]
    if outside:  # Dagster itself would fail on them with an internal error
        first, last = daily.get_first_partition_key(), daily.get_last_partition_key()
        raise ValueError(
            f"no daily partition for {outside[0]}"
            + (f" and {len(outside) - 1} more days" if len(outside) > 1 else "")
            + f": the partitions run from {first} to {last}"
        )
    ranges = PartitionsSelector(
        ranges=[
            PartitionRangeSelector(start=a.isoformat(), end=b.isoformat()) for a, b in _runs(days)
        ]
    )
    backfill = PartitionBackfill.from_partitions_by_assets(
        backfill_id=make_new_backfill_id(),
        asset_graph=graph,
        backfill_timestamp=get_current_timestamp(),
        tags={"semsearch/backfill": f"{partitions[0]}..{partitions[-1]}"},
        dynamic_partitions_store=instance,
        partitions_by_assets=[
            PartitionsByAssetSelector(asset_key=key, partitions=ranges) for key in keys
        ],
        title=f"semsearch {partitions[0]}..{partitions[-1]}",
        description=f"{len(partitions)} days of {len(keys)} assets, from `semsearch backfill`",
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id
