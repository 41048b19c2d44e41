"""Backfills and resumability: concurrent partitions lose nothing, a SIGKILLed backfill run
again ends with the same tables as a clean run, and `semsearch backfill` submits a backfill."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from semsearch.cli import main
from semsearch.defs.definitions import INGEST_JOB, build_definitions
from semsearch.storage.history import table_version
from semsearch_tests.ops_support import (
    DAYS,
    QUIET,
    ops_settings,
    run_day,
    sample_records,
    snapshot,
    temp_instance,
    write_jsonl,
)

# Theme ids carry over from whichever window ran before, so runs in another order may name
# the same themes differently; their members are compared instead.
ORDER_DEPENDENT = {"themes", "theme_assignments"}
POOLS = {"concurrency": {"pools": {"default_limit": 1, "granularity": "op"}}}


def land_and_ingest(settings, instance, defs) -> None:
    write_jsonl(settings.landing_path / "tickets.jsonl", sample_records())
    defs.resolve_job_def(INGEST_JOB).execute_in_process(instance=instance, run_config=QUIET)


@pytest.fixture
def clean(clean_days):
    """The tables after an uninterrupted run of every day, in order (the session's clean days)."""
    return snapshot(clean_days[0])


def members(state: dict) -> list[tuple]:
    """(partition, chunk) pairs of the theme assignments, ids left out."""
    return sorted((row[0], row[1]) for row in state["theme_assignments"])


# The second writer: another process (Dagster runs are processes; in-process runs in threads
# deadlock in Dagster's logging setup). It loads everything, says so, then waits for the go.
WRITER = """
import sys, time
from datetime import date
from pathlib import Path
from dagster import DagsterInstance
from semsearch.config import Settings
from semsearch.defs.definitions import build_definitions
from semsearch.defs.resources import EmbeddingResource
from semsearch_tests.ops_support import run_day
day, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
settings = Settings.from_env()
defs = build_definitions(settings)
EmbeddingResource.from_settings(settings).get_backend()  # the model, loaded before the start
instance = DagsterInstance.get()
ready.touch()
while not go.exists():
    time.sleep(0.005)
sys.exit(0 if run_day(defs, instance, date.fromisoformat(day)).success else 1)
"""


def test_partitions_materialized_concurrently_lose_and_duplicate_nothing(clean, tmp_path):
    settings = ops_settings(tmp_path)  # no table exists yet: the runs race to create them
    defs = build_definitions(settings)
    with temp_instance(tmp_path, overrides=POOLS) as instance:
        write_jsonl(settings.landing_path / "tickets.jsonl", sample_records())
        defs.resolve_job_def(INGEST_JOB).execute_in_process(instance=instance, run_config=QUIET)
        ready, go = tmp_path / "ready", tmp_path / "go"
        env = _subprocess_env(settings, Path(os.environ["DAGSTER_HOME"]), write_yaml=False)
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, DAYS[0].isoformat(), str(ready), str(go)],
            env=env,
            cwd=Path(__file__).parents[1],
        )
        try:
            _wait_for(ready.exists, writer)
            go.touch()
            here = [run_day(defs, instance, day) for day in DAYS[1:]]
            assert writer.wait(timeout=300) == 0
        finally:
            if writer.poll() is None:
                writer.kill()
    assert all(r.success for r in here)
    state = snapshot(settings)
    for name, rows in clean.items():
        if name not in ORDER_DEPENDENT:
            assert state[name] == rows, name
    assert {p for p, _ in members(state)} == {p for p, _ in members(clean)}


def _subprocess_env(settings, dagster_home: Path, write_yaml: bool = True) -> dict[str, str]:
    if write_yaml:  # the project's instance settings, pools included
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(__file__).parents[1] / "dagster.yaml", dagster_home / "dagster.yaml")
    return {
        **os.environ,
        "SEMSEARCH_HOME": settings.home,
        "SEMSEARCH_PARTITIONS_START": settings.partitions_start,
        "SEMSEARCH_THEME_MIN_CLUSTER_SIZE": str(settings.theme_min_cluster_size),
        "DAGSTER_HOME": str(dagster_home),
        "HF_HUB_OFFLINE": "1",
    }


def _wait_for(condition, process: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the backfill finished before it could be killed"
        assert time.monotonic() < deadline, "the backfill never reached the kill point"
        time.sleep(0.01)


def test_backfill_killed_mid_run_then_rerun_equals_a_clean_run(clean, tmp_path, monkeypatch):
    settings = ops_settings(tmp_path)
    defs = build_definitions(settings)
    with temp_instance(tmp_path / "ingest") as instance:
        land_and_ingest(settings, instance, defs)
    env = _subprocess_env(settings, tmp_path / "dagster")
    args = ["backfill", "--in-process", "--from", str(DAYS[0]), "--to", str(DAYS[-1])]
    process = subprocess.Popen(
        [sys.executable, "-m", "semsearch.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    chunks = str(settings.tables_path / "chunks")
    try:
        # Day two's chunks are committed, its embeddings not yet: kill it there.
        _wait_for(lambda: (table_version(chunks) or 0) >= 1, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    half = snapshot(settings)
    assert half != clean  # it really stopped part way

    for name, value in env.items():
        if name.startswith(("SEMSEARCH_", "DAGSTER_")):
            monkeypatch.setenv(name, value)
    assert main(args) == 0  # the same command again
    assert snapshot(settings) == clean
    # The killed run was marked failed and gave back any pool slot it held.
    instance = DagsterInstance.get()
    statuses = {r.status for r in instance.get_runs()}
    assert DagsterRunStatus.STARTED not in statuses and DagsterRunStatus.FAILURE in statuses


def test_cli_backfill_submits_an_asset_backfill_of_every_daily_asset(tmp_path, monkeypatch, capsys):
    settings = ops_settings(tmp_path)
    monkeypatch.setenv("SEMSEARCH_HOME", settings.home)
    monkeypatch.setenv("SEMSEARCH_PARTITIONS_START", settings.partitions_start)
    with temp_instance(tmp_path) as instance:
        assert main(["backfill", "--from", "2026-11-03", "--to", "2026-11-05"]) == 0
        [backfill] = instance.get_backfills()
    assert "submitted: 3 days" in capsys.readouterr().out
    assert {k.to_user_string() for k in backfill.asset_selection} == {
        "raw_documents",
        "chunks",
        "embeddings",
        "embedding_dead_letter",
        "embedding_cache",
        "vector_index",
        "themes",
        "theme_assignments",
        "theme_trends",
    }
    target = backfill.asset_backfill_data.target_subset
    assert sorted(
        target.get_partitions_subset(backfill.asset_selection[0]).get_partition_keys()
    ) == [
        "2026-11-03",
        "2026-11-04",
        "2026-11-05",
    ]


def test_cli_backfill_refuses_a_reversed_range(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEMSEARCH_HOME", str(tmp_path / "home"))
    assert main(["backfill", "--from", "2026-11-05", "--to", "2026-11-03"]) == 2
    assert "before" in capsys.readouterr().err


def test_cli_backfill_refuses_days_outside_the_partitions_naming_the_range(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SEMSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEMSEARCH_PARTITIONS_START", "2026-10-01")
    assert main(["backfill", "--from", "2026-11-01", "--to", "2099-12-31"]) == 2
    error = capsys.readouterr().err
    assert "partitions run from 2026-10-01" in error and "today, UTC" in error
    assert main(["backfill", "--from", "2026-09-30", "--to", "2026-10-02"]) == 2
