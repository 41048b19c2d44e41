"""Backfills of many days: submitted to Dagster's backfill daemon, or run here day by day.

A submitted backfill is the same object the UI's "Materialize → backfill" creates: the daemon
(`dagster dev`, `semsearch ui` or `dagster-daemon run`) launches its runs under each asset's
backfill policy and the instance's pools, and runs `themes` in day order (it depends on the day
before). `run_in_process` needs no daemon: it materializes the days one after another here, after
releasing the runs of an earlier in-process backfill that was killed.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from datetime import date, timedelta

from dagster import AssetKey, DagsterInstance, DagsterRunStatus, Definitions, RunsFilter

from semsearch.defs.dagster_internals import (
    PartitionBackfill,
    get_current_timestamp,
    make_new_backfill_id,
)
from semsearch.defs.definitions import console_run_config
from semsearch.defs.sensors import PIPELINE_JOB

log = logging.getLogger(__name__)

# Which process runs an in-process backfill run, so a rerun can tell a killed one from a live one.
PID_TAG, HOST_TAG = "semsearch/pid", "semsearch/host"


def days_between(first: date, last: date) -> list[date]:
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def daily_asset_keys(defs: Definitions) -> list[AssetKey]:
    """Every asset of the daily pipeline job (the partitioned ones)."""
    graph = defs.resolve_asset_graph()
    return sorted(k for k in graph.materializable_asset_keys if graph.get(k).is_partitioned)


def submit_backfill(
    instance: DagsterInstance,
    defs: Definitions,
    days: Sequence[date],
    assets: Sequence[AssetKey] | None = None,
) -> str:
    """Record an asset backfill of `days` for the daemon to run; returns its id."""
    keys = list(assets or daily_asset_keys(defs))
    partitions = [d.isoformat() for d in days]
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.resolve_asset_graph(),
        partition_names=partitions,
        asset_selection=keys,
        backfill_timestamp=get_current_timestamp(),
        tags={"semsearch/backfill": f"{partitions[0]}..{partitions[-1]}"},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"semsearch {partitions[0]}..{partitions[-1]}",
        description=f"{len(partitions)} days of {len(keys)} assets, from `semsearch backfill`",
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def release_dead_runs(instance: DagsterInstance) -> list[str]:
    """Fail the in-process runs whose process is gone (killed), and free their pool slots.

    Nothing else would: no run launcher watches an in-process run, so after a SIGKILL it stays
    "started" forever and keeps the pool slot it held, and the next run would wait for it.
    """
    released = []
    statuses = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING]
    filters = RunsFilter(statuses=statuses, tags={HOST_TAG: socket.gethostname()})
    for run in instance.get_runs(filters=filters):
        pid = int(run.tags.get(PID_TAG, "0"))
        if pid and pid != os.getpid() and not _alive(pid):
            instance.report_run_failed(run, f"process {pid} is gone; marked failed to resume")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            released.append(run.run_id)
    return released


def run_in_process(
    instance: DagsterInstance, defs: Definitions, days: Sequence[date], log_level: str = "WARNING"
) -> list[tuple[date, bool]]:
    """Materialize each day in order, here; a failed day is reported and the rest still run."""
    for run_id in release_dead_runs(instance):
        log.warning("run %s was killed mid-way; marked failed, its pool slots freed", run_id)
    job = defs.resolve_job_def(PIPELINE_JOB)
    run_config = console_run_config(log_level)
    tags = {"semsearch/backfill": "in-process", PID_TAG: str(os.getpid())}
    outcomes = []
    for day in days:
        result = job.execute_in_process(
            partition_key=day.isoformat(),
            instance=instance,
            run_config=run_config,
            tags={**tags, HOST_TAG: socket.gethostname()},
            raise_on_error=False,
        )
        log.info("%s: %s", day, "ok" if result.success else "failed")
        outcomes.append((day, result.success))
    return outcomes
