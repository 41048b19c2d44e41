"""Run the pipeline through Dagster from Python: ingest, then each day's partition in order.

Used by `semsearch demo` and `semsearch run`; every run is recorded in the Dagster instance, so
the UI (`dagster dev` with the same DAGSTER_HOME) shows them.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl
from dagster import DagsterEventType, DagsterInstance, Definitions

from semsearch.config import Settings
from semsearch.defs.backfills import days_between
from semsearch.defs.definitions import (
    INGEST_JOB,
    PIPELINE_JOB,
    build_definitions,
    console_run_config,
)
from semsearch.defs.partitions import PIPELINE_POOLS
from semsearch.defs.run_guard import process_tags, release_dead_runs, wait_for_pools
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import BRONZE_TABLE, DOCUMENTS

log = logging.getLogger(__name__)

DAGSTER_YAML = "telemetry:\n  enabled: false\n"


@dataclass
class StageRecord:
    asset: str
    partition: str | None
    metadata: dict


@dataclass
class DayOutcome:
    """How one day's run ended; a failed day says which blocking checks or step stopped it."""

    day: date
    run_id: str
    success: bool
    failed_checks: list[tuple[str, str]] = field(default_factory=list)  # (asset/check, why)
    errors: list[str] = field(default_factory=list)  # failed steps' messages


@dataclass
class PipelineRun:
    records: list[StageRecord] = field(default_factory=list)
    days: list[DayOutcome] = field(default_factory=list)

    def for_asset(self, asset: str) -> list[StageRecord]:
        return [r for r in self.records if r.asset == asset]

    @property
    def failed_days(self) -> list[DayOutcome]:
        return [d for d in self.days if not d.success]


def dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME if set, else a folder under the semsearch home with telemetry off."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.home_path / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        project_config = Path("dagster.yaml")
        if project_config.exists():
            shutil.copyfile(project_config, config)
        else:
            config.write_text(DAGSTER_YAML)
    return home


def open_instance(settings: Settings) -> DagsterInstance:
    os.environ["DAGSTER_HOME"] = str(dagster_home(settings))
    return DagsterInstance.get()


def _metadata_values(metadata: dict) -> dict:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def _records(result) -> list[StageRecord]:
    return [
        StageRecord(
            asset=event.asset_key.to_user_string(),
            partition=event.partition,
            metadata=_metadata_values(event.step_materialization_data.materialization.metadata),
        )
        for event in result.get_asset_materialization_events()
    ]


def days_with_data(settings: Settings) -> list[date]:
    """Every day from the first to the last that the bronze table holds documents for."""
    tables = DeltaTables(settings.tables_path)
    span = (
        tables.scan(BRONZE_TABLE, DOCUMENTS)
        .select(
            pl.col("partition_date").min().alias("first"),
            pl.col("partition_date").max().alias("last"),
        )
        .collect()
    )
    first, last = span["first"][0], span["last"][0]
    return [] if first is None else days_between(first, last)


def _execute(job, **kwargs):
    """Run `job` here; a SIGINT/SIGTERM that Dagster turned into a failed run stops us too."""
    result = job.execute_in_process(raise_on_error=False, **kwargs)
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if error is not None and error.cls_name == "DagsterExecutionInterruptedError":
            raise KeyboardInterrupt
    return result


def _day_outcome(day: date, result) -> DayOutcome:
    outcome = DayOutcome(day, result.run_id, result.success)
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed and evaluation.blocking:
                name = f"{evaluation.asset_key.to_user_string()}/{evaluation.check_name}"
                outcome.failed_checks.append((name, evaluation.description or ""))
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            outcome.errors.append(f"{event.step_key}: {event.event_specific_data.error.message}")
    return outcome


def run_days(
    settings: Settings,
    instance: DagsterInstance,
    defs: Definitions,
    days: list[date],
    log_level: str = "WARNING",
) -> PipelineRun:
    """Materialize each day in order, here. A day that fails or is blocked by a check is
    recorded and the later days still run; killed runs before them are cleaned up first."""
    job, run_config = defs.resolve_job_def(PIPELINE_JOB), console_run_config(log_level)
    run = PipelineRun()
    for day in sorted(days):
        wait_for_pools(instance, PIPELINE_POOLS, settings.pool_wait_seconds)
        log.info("materializing partition %s", day)
        result = _execute(
            job,
            partition_key=day.isoformat(),
            instance=instance,
            run_config=run_config,
            tags=process_tags(),
        )
        run.records += _records(result)
        run.days.append(_day_outcome(day, result))
    return run


def run_pipeline(
    settings: Settings,
    instance: DagsterInstance,
    days: list[date] | None = None,
    defs: Definitions | None = None,
    log_level: str = "WARNING",
) -> PipelineRun:
    """Ingest landing files, then materialize every day's partition (default: days with data)."""
    defs = defs or build_definitions(settings)
    release_dead_runs(instance)
    ingest = _execute(
        defs.resolve_job_def(INGEST_JOB),
        run_config=console_run_config(log_level),
        instance=instance,
        tags=process_tags(),
    )
    if not ingest.success:
        failures = [e.message for e in ingest.all_events if e.is_step_failure]
        raise RuntimeError(f"ingesting the landing folder failed (run {ingest.run_id}): {failures}")
    if days is None:
        days = days_with_data(settings)
    run = run_days(settings, instance, defs, days, log_level)
    run.records = _records(ingest) + run.records
    return run
