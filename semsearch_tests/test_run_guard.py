"""A killed run never hangs the next one, and a run reports every day it could not finish."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from semsearch.defs.partitions import PIPELINE_POOLS
from semsearch.defs.run_guard import (
    HOST_TAG,
    PID_TAG,
    pool_holders,
    process_tags,
    release_dead_runs,
)
from semsearch.storage.vector_index import VectorIndex
from semsearch.testing.fake_openai_server import FakeOpenAIServer, Fault
from semsearch_tests.ops_support import (
    DAYS,
    PROJECT,
    cli_env,
    ops_settings,
    sample_records,
    write_jsonl,
)


def semsearch(*args: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "semsearch.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_a_run_killed_inside_a_pooled_step_does_not_hang_the_next_run(tmp_path):
    settings = ops_settings(tmp_path)
    write_jsonl(settings.landing_path / "tickets.jsonl", sample_records())
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copyfile(PROJECT / "dagster.yaml", dagster_home / "dagster.yaml")  # the pools
    env = cli_env(settings, dagster_home)

    first = semsearch("run", env=env)
    with DagsterInstance.from_config(str(dagster_home)) as inst:
        # Kill it the moment a step holds (or waits for) a pool slot.
        deadline = time.monotonic() + 240
        while not pool_holders(inst, PIPELINE_POOLS) and first.poll() is None:
            assert time.monotonic() < deadline, "no pooled step started"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert first.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        killed = [r for r in inst.get_runs() if r.status == DagsterRunStatus.STARTED]
        assert killed and pool_holders(inst, PIPELINE_POOLS)

        second = semsearch("run", env=env)
        try:
            output, _ = second.communicate(timeout=300)  # before the fix: waited forever
        finally:
            second.kill()
        assert second.returncode == 0, output
        assert inst.get_run_by_id(killed[0].run_id).status == DagsterRunStatus.FAILURE
        assert pool_holders(inst, PIPELINE_POOLS) == {}
    index = VectorIndex(settings.lance_path)
    for day in DAYS:
        assert index.count_rows(f"partition_date = date '{day}'") > 0


def test_a_blocked_day_is_reported_and_the_later_days_still_run(tmp_path):
    settings = ops_settings(tmp_path)
    blocked = DAYS[0]
    empty = [
        {"id": f"empty-{i}", "text": " ", "created_at": f"{blocked}T08:00:00Z"} for i in range(10)
    ]
    # The rejected share is measured per source file: the bad file feeds only its own day.
    write_jsonl(settings.landing_path / "bad.jsonl", sample_records([blocked]) + empty)
    write_jsonl(settings.landing_path / "good.jsonl", sample_records(DAYS[1:]))
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    process = semsearch("run", env=cli_env(settings, dagster_home))
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 1, output
    assert f"{blocked} (run " in output
    assert "blocked by raw_documents/rejected_share" in output
    assert "Traceback" not in output
    # Where the rejected records are, and how to let the day through.
    assert "bad.jsonl (10 rejected)" in output
    assert str(settings.tables_path / "rejected_records") in output
    assert "or change SEMSEARCH_CHECK_MAX_REJECTED_SHARE (now 0.1)" in output
    assert f"semsearch backfill --from {blocked} --to {blocked} --in-process" in output
    index = VectorIndex(settings.lance_path)
    assert index.count_rows(f"partition_date = date '{blocked}'") == 0
    for day in DAYS[1:]:
        assert index.count_rows(f"partition_date = date '{day}'") > 0


def test_search_in_an_empty_home_says_nothing_is_indexed_yet(tmp_path):
    settings = ops_settings(tmp_path)
    process = semsearch("search", "card not arrived", env=cli_env(settings, tmp_path / "dagster"))
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert output.strip() == (
        f"semsearch: nothing is indexed yet in {settings.home}: run `semsearch demo` or "
        "`semsearch run`"
    )


def test_a_run_whose_process_died_before_its_first_step_is_marked_failed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        orphan = DagsterRun(
            job_name="daily_pipeline",
            status=DagsterRunStatus.NOT_STARTED,
            tags={**process_tags(), PID_TAG: str(dead.pid)},
        )
        alive = DagsterRun(
            job_name="daily_pipeline", status=DagsterRunStatus.NOT_STARTED, tags=process_tags()
        )
        elsewhere = DagsterRun(
            job_name="daily_pipeline",
            status=DagsterRunStatus.STARTED,
            tags={PID_TAG: str(dead.pid), HOST_TAG: "another-host"},
        )
        for run in (orphan, alive, elsewhere):
            instance.add_run(run)
        assert release_dead_runs(instance) == [orphan.run_id]
        statuses = {r.run_id: r.status for r in instance.get_runs()}
    assert statuses[orphan.run_id] == DagsterRunStatus.FAILURE
    assert statuses[alive.run_id] == DagsterRunStatus.NOT_STARTED  # this process: alive
    assert statuses[elsewhere.run_id] == DagsterRunStatus.STARTED  # not ours to judge


def test_kill_9_mid_embeddings_then_a_rerun_requests_no_input_twice(tmp_path):
    settings = ops_settings(tmp_path)
    write_jsonl(settings.landing_path / "tickets.jsonl", sample_records())
    with FakeOpenAIServer(dimension=8) as server:
        env = cli_env(settings, tmp_path / "dagster") | {
            "OPENAI_API_KEY": "sk-test-kill-9",
            "SEMSEARCH_EMBEDDING_BACKEND": "openai",
            "SEMSEARCH_EMBEDDING_MODEL": "text-embedding-test",
            "SEMSEARCH_OPENAI_BASE_URL": server.base_url,
            "SEMSEARCH_OPENAI_EXPECTED_DIMENSION": "8",
            "SEMSEARCH_OPENAI_MAX_INPUTS_PER_REQUEST": "8",
            "SEMSEARCH_OPENAI_CONCURRENCY": "1",
            "SEMSEARCH_OPENAI_TIMEOUT_SECONDS": "60",
        }
        server.script("ok", "ok", "ok", Fault("slow", sleep=30))  # the 4th hangs: kill there
        first = semsearch("run", env=env)
        deadline = time.monotonic() + 240
        while len(server.requests) < 4:
            assert first.poll() is None and time.monotonic() < deadline, "never reached batch 4"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        paid = {text for r in server.requests if r.behaviour == "ok" for text in r.inputs}
        assert len(paid) == 8 + 6 + 8  # day 1 in two requests, day 2 one (checks ask nothing)

        server.reset()
        second = semsearch("run", env=env)
        output, _ = second.communicate(timeout=300)
        assert second.returncode == 0, output
        again = [text for r in server.requests if r.behaviour == "ok" for text in r.inputs]
    assert not paid & set(again)  # no input requested twice
    assert len(again) == len(set(again))
    index = VectorIndex(settings.lance_path)
    for day in DAYS:
        assert index.count_rows(f"partition_date = date '{day}'") > 0


def test_sigterm_stops_a_run_in_flight_and_the_next_run_completes(tmp_path):
    settings = ops_settings(tmp_path)
    write_jsonl(settings.landing_path / "tickets.jsonl", sample_records())
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copyfile(PROJECT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = cli_env(settings, dagster_home)
    with DagsterInstance.from_config(str(dagster_home)) as instance:  # storage made before
        first = semsearch("run", env=env)
        deadline = time.monotonic() + 240
        while not instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED])):
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    output, _ = first.communicate(timeout=60)
    assert first.returncode == 130 and "semsearch: interrupted" in output, output
    second = semsearch("run", env=env)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
