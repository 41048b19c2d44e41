"""Shared helpers for the operations tests (checks, alerts, sensors, backfills).

Small real data: a few dozen Banking77 messages from the bundled sample, over a few days, run
through the real Dagster definitions with the real local model, against a Dagster instance in a
temporary DAGSTER_HOME.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from importlib import resources
from pathlib import Path

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    build_sensor_context,
    instance_for_test,
)

from semsearch.config import Settings
from semsearch.defs.definitions import PIPELINE_JOB, console_run_config
from semsearch.testing.snapshot import snapshot  # noqa: F401 (re-exported for the tests)

PROJECT = Path(__file__).parents[1]
DAYS = [date(2026, 11, 3), date(2026, 11, 4), date(2026, 11, 5)]
PER_DAY = 14


def sample_records(days: Iterable[date] = DAYS, per_day: int = PER_DAY) -> list[dict]:
    """The first `per_day` bundled Banking77 messages dated on each of `days`."""
    sample = resources.files("semsearch.data") / "banking77_sample.jsonl"
    wanted = {d.isoformat(): per_day for d in days}
    records = []
    for line in sample.read_text().splitlines():
        record = json.loads(line)
        day = record["created_at"][:10]
        if wanted.get(day, 0) > 0:
            wanted[day] -= 1
            records.append(record)
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def ops_settings(root: Path, **changes: object) -> Settings:
    settings = Settings(
        home=str(root / "home"),
        partitions_start="2026-10-01",
        theme_min_cluster_size=3,
        landing_settle_seconds=3600,
    )
    return settings.replace(**changes)


@contextmanager
def temp_instance(root: Path, **kwargs: object) -> Iterator[DagsterInstance]:
    """A persistent Dagster instance (SQLite) in a temporary DAGSTER_HOME."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    with instance_for_test(temp_dir=str(home), **kwargs) as instance:
        yield instance


QUIET = console_run_config()


def cli_env(settings: Settings, dagster_home: Path, **extra: str) -> dict[str, str]:
    """The environment of a `python -m semsearch.cli` subprocess on `settings`, with this
    checkout's code."""
    return {
        **os.environ,
        "PYTHONPATH": str(PROJECT),
        "HF_HUB_OFFLINE": "1",
        "DAGSTER_HOME": str(dagster_home),
        "SEMSEARCH_HOME": settings.home,
        "SEMSEARCH_PARTITIONS_START": settings.partitions_start,
        "SEMSEARCH_THEME_MIN_CLUSTER_SIZE": str(settings.theme_min_cluster_size),
        **extra,
    }


def run_day(defs: Definitions, instance: DagsterInstance, day: date, **kwargs):
    job = defs.resolve_job_def(PIPELINE_JOB)
    return job.execute_in_process(
        partition_key=day.isoformat(),
        instance=instance,
        raise_on_error=False,
        run_config=QUIET,
        **kwargs,
    )


def run_checks_only(
    defs: Definitions, instance: DagsterInstance, day: date, asset: str, downstream=()
):
    """Evaluate one asset's checks on a day (plus `downstream` assets, which they may block)."""
    job = defs.resolve_job_def(PIPELINE_JOB)
    checks = {
        k for k in job.asset_layer.asset_graph.asset_check_keys if k.asset_key.path == [asset]
    }
    graph = job.asset_layer.asset_graph
    selected = AssetSelection.assets(*downstream).required_multi_asset_neighbors().resolve(graph)
    subset = job.get_subset(asset_selection=selected, asset_check_selection=checks)
    return subset.execute_in_process(
        partition_key=day.isoformat(), instance=instance, raise_on_error=False, run_config=QUIET
    )


def tick(defs: Definitions, instance: DagsterInstance, name: str, cursor: str | None = None):
    """Evaluate a sensor once, as the daemon would, with the definitions' resources."""
    sensor = defs.resolve_sensor_def(name)
    with build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    ) as context:
        return sensor(context)


def evaluations(result) -> dict[str, object]:
    """`asset/check` -> the evaluation, for the checks a run evaluated."""
    return {
        f"{e.asset_key.to_user_string()}/{e.check_name}": e
        for e in result.get_asset_check_evaluations()
    }


def check_key(name: str) -> AssetCheckKey:
    asset, check = name.split("/")
    return AssetCheckKey(AssetKey(asset), check)


def partition_statuses(instance, defs, key: AssetCheckKey) -> dict[str, set[str]]:
    """Per status (SUCCEEDED, FAILED, SKIPPED...), the partitions the UI shows for a check:
    what its partition status cache holds."""
    partitions = defs.resolve_asset_graph().get(key).partitions_def
    state = instance.event_log_storage.get_asset_check_state([(key, partitions)])[key]
    found = {}
    for status, subset in state.subsets.items():
        days = set() if isinstance(subset.value, bool) else set(subset.value.get_partition_keys())
        if days:
            found[status.value] = days
    return found


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def copy_home(settings: Settings, root: Path) -> Settings:
    """A copy of a materialized semsearch home (Delta tables, LanceDB), to corrupt freely."""
    shutil.copytree(settings.home_path, root / "home")
    return settings.replace(home=str(root / "home"))
