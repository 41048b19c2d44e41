"""Run a submitted backfill the way `dagster-daemon` does, within a test.

The backfill daemon's own iteration (`execute_backfill_iteration`) is called against the
project's workspace.yaml, so the runs it requests are launched by the instance's run launcher
into run-worker processes, from a code server, exactly as under `semsearch ui`. Dagster has no
public API for this; these imports are Dagster's test and daemon internals, used only here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.backfill import execute_backfill_iteration

PROJECT = Path(__file__).parents[1]
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
DONE = {
    BulkActionStatus.COMPLETED,
    BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED,
    BulkActionStatus.CANCELED,
}
log = logging.getLogger("semsearch_tests.daemon")


def run_backfill_as_the_daemon(
    instance: DagsterInstance, backfill_id: str, timeout: float = 420
) -> BulkActionStatus:
    """Iterate the backfill daemon until the backfill is done, waiting for its runs each time."""
    target = WorkspaceFileTarget(paths=[str(PROJECT / "workspace.yaml")])
    deadline = time.monotonic() + timeout
    with create_test_daemon_workspace_context(target, instance) as context:
        while True:
            list(execute_backfill_iteration(context, log))
            _wait_for_backfill_runs(instance, backfill_id, deadline)
            status = instance.get_backfill(backfill_id).status
            if status in DONE:
                return status
            assert time.monotonic() < deadline, f"backfill {backfill_id} still {status}"


def _wait_for_backfill_runs(instance: DagsterInstance, backfill_id: str, deadline: float) -> None:
    runs = RunsFilter(tags={"dagster/backfill": backfill_id})
    while any(r.status not in FINISHED for r in instance.get_runs(filters=runs)):
        assert time.monotonic() < deadline, "the backfill's runs did not finish in time"
        time.sleep(0.5)
