"""`semsearch ui` as a person runs it: a quiet start that says where the UI is, honest warnings
only, and Ctrl-C with a run in flight ending in one line, with nothing left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from semsearch.ui import free_port
from semsearch_tests.ops_support import DAYS, ops_settings, sample_records, write_jsonl

PROJECT = Path(__file__).parents[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait(condition, process: subprocess.Popen, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"semsearch ui ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {seconds:.0f} s"
        time.sleep(0.3)


def _processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment names `marker` (our DAGSTER_HOME)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_ui_starts_quietly_and_ctrl_c_stops_a_run_in_flight_in_one_line(tmp_path):
    settings = ops_settings(tmp_path)
    write_jsonl(settings.landing_path / "tickets.jsonl", sample_records(DAYS[:1], per_day=6))
    dagster_home = tmp_path / "dagster"
    port = free_port("127.0.0.1", 3100)
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT),
        "HF_HUB_OFFLINE": "1",
        "DAGSTER_HOME": str(dagster_home),
        "SEMSEARCH_HOME": settings.home,
        "SEMSEARCH_PARTITIONS_START": settings.partitions_start,
        "SEMSEARCH_LANDING_SETTLE_SECONDS": "0",  # the landing sensor ingests at once
    }
    ui = subprocess.Popen(
        [sys.executable, "-m", "semsearch.cli", "ui", "--", "-p", str(port)],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _answers(url), ui, 180, "answer from the UI")
        with DagsterInstance.from_config(str(dagster_home)) as instance:
            # The sensors ingest the file, then start the run of its day: stop in the middle.
            day_run = RunsFilter(job_name="daily_pipeline", statuses=[DagsterRunStatus.STARTED])
            _wait(lambda: instance.get_runs(filters=day_run), ui, 240, "run of the day")
            ui.send_signal(signal.SIGINT)  # Ctrl-C
            output, _ = ui.communicate(timeout=120)
            unfinished = instance.get_runs(
                filters=RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED])
            )
    finally:
        if ui.poll() is None:
            ui.kill()
    lines = output.strip().splitlines()
    assert ui.returncode == 0, output
    assert lines[0].startswith(f"Dagster UI on {url} (DAGSTER_HOME={dagster_home})"), output
    assert lines[-1].startswith("semsearch ui: stopped. Interrupted 1 run(s) in flight"), output
    assert "Traceback" not in output and " - DEBUG - " not in output, output
    assert "superseded" not in output and "will not be used" not in output, output
    assert len(lines) <= 6, output  # the banner, the stop line, at most a few warnings
    assert not unfinished  # the interrupted run is recorded as ended
    assert not _answers(url)
    assert _processes_with(str(dagster_home)) == []  # dagster dev and all it ran are gone
