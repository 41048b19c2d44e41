"""Every command the README documents works as written: each is taken from the README itself and
run by a shell in a fresh project folder, on a few of the demo's messages dated as the demo
dates them; the state they leave is what the UI then shows (all partitions and checks green)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from semsearch.config import Settings
from semsearch.data import dated_to_end_at
from semsearch.defs.backfills import daily_asset_keys, days_between
from semsearch.defs.definitions import build_definitions
from semsearch_tests.conftest import read_jsonl
from semsearch_tests.ops_support import DAYS, partition_statuses, sample_records, write_jsonl

PROJECT = Path(__file__).parents[1]
README = (PROJECT / "README.md").read_text()
# Documented, but not run here, each for a reason.
NOT_RUN = {
    # Creates a virtualenv, installs, and runs the 4-minute demo: run by hand as a new user.
    "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/semsearch demo",
    ".venv/bin/python -m pytest",  # this suite
    ".venv/bin/semsearch ui",  # runs until Ctrl-C: tested as such in test_ui_command.py
    # Run until Ctrl-C: the server is tested over HTTP in test_serve_api.py, its refusal to bind
    # beyond loopback without a token through the CLI there too.
    ".venv/bin/semsearch serve",
    "SEMSEARCH_API_TOKEN=change-me .venv/bin/semsearch serve --host 0.0.0.0 --port 8765",
    # Installs system packages; the browser test itself runs with the suite.
    "sudo apt-get install -y chromium chromium-driver",
    ".venv/bin/python -m pytest -q semsearch_tests/test_serve_browser.py",
    # Ingest the 5,183 SciFact documents (half an hour on 2 busy cores); the same command on a
    # 120-document subset, then again on the home it kept, is test_eval_commands.py.
    ".venv/bin/semsearch eval retrieval --corpus ../shared/datasets/scifact/corpus.jsonl "
    "--queries ../shared/datasets/scifact/queries.jsonl --qrels "
    "../shared/datasets/scifact/qrels/test.tsv --home /tmp/scifact-home --report scifact.json",
    ".venv/bin/semsearch eval retrieval --queries ../shared/datasets/scifact/queries.jsonl "
    "--qrels ../shared/datasets/scifact/qrels/test.tsv --home /tmp/scifact-home --mode vector "
    "--report scifact-again.json",
}


def readme_commands() -> list[str]:
    """The lines of the README's bash blocks (comments cut) and its inline shell commands."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    inline = re.findall(r"`(DAGSTER_HOME=[^`]+)`", README)
    return [line for line in lines + inline if line]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder as a new user has it: the checkout's config files and a .venv, with a
    few of the sample's messages landed, dated to end now as `semsearch demo` dates them."""
    root = tmp_path_factory.mktemp("project")
    for name in ("workspace.yaml", "dagster.yaml"):
        (root / name).write_text((PROJECT / name).read_text())
    (root / ".venv").symlink_to(sys.prefix)
    records = dated_to_end_at(sample_records(DAYS[:1], per_day=6), datetime.now(UTC))
    write_jsonl(root / ".semsearch" / "landing" / "sample.jsonl", records)
    return root


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT),  # this checkout's code, whatever .venv has installed
        "HF_HUB_OFFLINE": "1",
        "SEMSEARCH_THEME_MIN_CLUSTER_SIZE": "3",  # six messages make no theme of 15
    }
    env = {k: v for k, v in env.items() if not k.startswith(("SEMSEARCH_HOME", "DAGSTER_HOME"))}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_every_readme_command_is_run_here_or_says_why_not():
    documented = set(readme_commands())
    assert NOT_RUN <= documented, NOT_RUN - documented
    assert documented - NOT_RUN == set(RUN_IN_ORDER), documented - NOT_RUN ^ set(RUN_IN_ORDER)


RUN_IN_ORDER = [c for c in readme_commands() if c not in NOT_RUN]


def test_the_readme_commands_work_as_written_and_leave_everything_green(project):
    # Backfills last: the runs they queue are (rightly) shown as in progress.
    commands = sorted(RUN_IN_ORDER, key=lambda c: "backfill" in c)
    for i, command in enumerate(commands):
        if "backfill" in command and "backfill" not in commands[i - 1]:
            assert_green(project)
        done = run(command, project)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr, command
    with DagsterInstance.from_config(str(project / ".semsearch" / "dagster")) as instance:
        assert len(instance.get_backfills()) == 2  # semsearch backfill, dagster job backfill


def assert_green(project: Path) -> None:
    """Every partition from the first day of the data to today materialized, every blocking
    check passed on every day, freshness passed: read as the UI reads them, from the instance
    in the project's DAGSTER_HOME."""
    settings = Settings(home=str(project / ".semsearch"))
    landed = read_jsonl(project / ".semsearch" / "landing" / "sample.jsonl")
    first = date.fromisoformat(min(r["created_at"] for r in landed)[:10])
    with DagsterInstance.from_config(str(project / ".semsearch" / "dagster")) as instance:
        defs = build_definitions(settings)
        graph = defs.resolve_asset_graph()
        days = [d.isoformat() for d in days_between(first, datetime.now(UTC).date())]
        assert graph.get(AssetKey("vector_index")).partitions_def.get_partition_keys() == days
        for key in daily_asset_keys(defs):  # the UI's coverage
            assert instance.get_materialized_partitions(key) == set(days), key
        for key in graph.asset_check_keys:
            statuses = partition_statuses(instance, defs, key)
            if graph.get(key).blocking:
                assert statuses == {"SUCCEEDED": set(days)}, (key, statuses)
        freshness = AssetCheckKey(AssetKey("vector_index"), "freshness_check")
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([freshness])
        assert latest[freshness].status.value == "SUCCEEDED"
