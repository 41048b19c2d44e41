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
from dagster import DagsterInstance, Definitions

from semsearch.config import Settings
from semsearch.defs.backfills import days_between
from semsearch.defs.definitions import (
    INGEST_JOB,
    PIPELINE_JOB,
    build_definitions,
    console_run_config,
)
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
class PipelineRun:
    records: list[StageRecord] = field(default_factory=list)

    def for_asset(self, asset: str) -> list[StageRecord]:
        return [r for r in self.records if r.asset == asset]


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


def run_pipeline(
    settings: Settings,
    instance: DagsterInstance,
    days: list[date] | None = None,
    defs: Definitions | None = None,
    log_level: str = "WARNING",
) -> PipelineRun:
    """Ingest landing files, then materialize every day's partition (default: days with data)."""
    defs = defs or build_definitions(settings)
    run_config = console_run_config(log_level)
    run = PipelineRun()
    ingest = defs.resolve_job_def(INGEST_JOB).execute_in_process(
        run_config=run_config, instance=instance
    )
    run.records += _records(ingest)
    if days is None:
        days = days_with_data(settings)
    job = defs.resolve_job_def(PIPELINE_JOB)
    for day in sorted(days):
        log.info("materializing partition %s", day)
        result = job.execute_in_process(
            run_config=run_config, partition_key=day.isoformat(), instance=instance
        )
        run.records += _records(result)
    return run
