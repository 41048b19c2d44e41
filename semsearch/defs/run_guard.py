"""Runs started here (`semsearch run`, `demo`, `backfill --in-process`) clean up after killed ones.

No run launcher watches a run executed in this process, so a run killed with SIGKILL stays
"started" (or "not started") forever and keeps its pool slots and queued pool steps: every later
run would wait for it without end. Each run started here is tagged with its pid and host; before
starting more, the runs whose process is gone are marked failed and their slots freed. A pool
held by a live run is waited for, up to a bound, naming the run that holds it.
Runs launched by the daemon are covered by Dagster's run monitoring (dagster.yaml).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from semsearch.errors import PoolBusyError

log = logging.getLogger(__name__)

PID_TAG, HOST_TAG = "semsearch/pid", "semsearch/host"
UNFINISHED = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
POLL_SECONDS = 2.0


def process_tags() -> dict[str, str]:
    """Tags naming this process, so a later run can tell a killed run from a live one."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def release_dead_runs(instance: DagsterInstance) -> list[str]:
    """Fail this host's unfinished runs whose process is gone, and free their pool slots."""
    released = []
    filters = RunsFilter(statuses=UNFINISHED, tags={HOST_TAG: socket.gethostname()})
    for run in instance.get_runs(filters=filters):
        pid = int(run.tags.get(PID_TAG, "0"))
        if pid and pid != os.getpid() and not _alive(pid):
            instance.report_run_failed(run, f"process {pid} is gone (killed); marked failed")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            log.warning("run %s was killed: marked failed, its pool slots freed", run.run_id)
            released.append(run.run_id)
    return released


def pool_holders(instance: DagsterInstance, pools: Iterable[str]) -> dict[str, set[str]]:
    """Per pool, the runs that hold a slot of it or wait in its queue."""
    holders = {}
    for pool in pools:
        info = instance.event_log_storage.get_concurrency_info(pool)
        runs = {slot.run_id for slot in info.claimed_slots}
        runs |= {step.run_id for step in info.pending_steps}
        if runs:
            holders[pool] = runs
    return holders


def _describe(instance: DagsterInstance, run_id: str) -> str:
    run = instance.get_run_by_id(run_id)
    if run is None:
        return f"run {run_id} (no longer recorded)"
    where = f", pid {run.tags[PID_TAG]} on {run.tags[HOST_TAG]}" if PID_TAG in run.tags else ""
    return f"run {run_id} ({run.job_name}, {run.status.value}{where})"


def wait_for_pools(instance: DagsterInstance, pools: Iterable[str], timeout_seconds: float) -> None:
    """Return once no other run holds `pools`, releasing killed runs; else PoolBusyError."""
    pools = list(pools)
    deadline = time.monotonic() + timeout_seconds
    said = set()
    while True:
        release_dead_runs(instance)
        holders = pool_holders(instance, pools)
        if not holders:
            return
        held = "; ".join(
            f"pool {pool} by {', '.join(_describe(instance, r) for r in sorted(runs))}"
            for pool, runs in sorted(holders.items())
        )
        if time.monotonic() >= deadline:
            raise PoolBusyError(
                f"waited {timeout_seconds:.0f} s (SEMSEARCH_POOL_WAIT_SECONDS) and still held: "
                f"{held}. Let that run finish, or if it is stuck, terminate it in the Dagster UI "
                "(Runs → Terminate) and run again"
            )
        if held not in said:
            log.warning("waiting for %s", held)
            said.add(held)
        time.sleep(POLL_SECONDS)
