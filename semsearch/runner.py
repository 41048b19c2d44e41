"""Run the pipeline through Dagster from Python: ingest, then each day's partition in order.

Used by `semsearch demo`, `run` and `backfill --in-process`; every run is recorded in the
Dagster instance, so the UI (`semsearch ui` on the same DAGSTER_HOME) shows them.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    EventLogEntry,
    RunsFilter,
)

from semsearch.config import Settings
from semsearch.core.themes import ThemeWindow
from semsearch.defs.backfills import daily_asset_keys, days_between
from semsearch.defs.definitions import (
    INGEST_JOB,
    PIPELINE_JOB,
    build_definitions,
    console_run_config,
)
from semsearch.defs.metadata import CONFIGURATION_ERROR
from semsearch.defs.partitions import PIPELINE_POOLS
from semsearch.defs.run_guard import process_tags, release_dead_runs, wait_for_pools
from semsearch.defs.sensors import changed_bronze_days
from semsearch.errors import ConfigurationError
from semsearch.storage.delta import DeltaTables
from semsearch.storage.history import partition_days, table_version
from semsearch.storage.schemas import BRONZE_TABLE, THEMES_TABLE

log = logging.getLogger(__name__)

DAGSTER_YAML = "telemetry:\n  enabled: false\n"
PARTITION_TAG = "dagster/partition"
# What a command-line run prints of Dagster's own log: nothing below this (progress, the
# summary and the failed days are reported by the command itself; the UI has every event).
QUIET_LEVEL = "CRITICAL"


@dataclass
class StageRecord:
    asset: str
    partition: str | None
    metadata: dict


@dataclass
class FailedCheck:
    name: str  # asset/check
    description: str
    metadata: dict
    blocking: bool
    partitioned: bool  # False: about the asset as a whole (freshness), not the run's day


@dataclass
class DayOutcome:
    """How one day's run ended; a failed day says which blocking checks or step stopped it.
    (`day` is None for the ingest run.)"""

    day: date | None
    run_id: str
    success: bool
    failed_checks: list[FailedCheck] = field(default_factory=list)  # blocking and warnings
    errors: list[str] = field(default_factory=list)  # failed steps' messages
    evaluated: set[str] = field(default_factory=set)  # every check the run evaluated

    @property
    def blocked_by(self) -> list[FailedCheck]:
        return [c for c in self.failed_checks if c.blocking]

    @property
    def warnings(self) -> list[FailedCheck]:
        return [c for c in self.failed_checks if not c.blocking]


@dataclass
class DayPlan:
    """Which days a run materializes, and why; `themes_only` days re-cluster only."""

    days: list[date] = field(default_factory=list)
    themes_only: list[date] = field(default_factory=list)
    up_to_date: list[date] = field(default_factory=list)
    reasons: dict[date, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.days and not self.themes_only


@dataclass
class PipelineRun:
    records: list[StageRecord] = field(default_factory=list)
    days: list[DayOutcome] = field(default_factory=list)
    plan: DayPlan = field(default_factory=DayPlan)
    ingest: DayOutcome | None = None

    def for_asset(self, asset: str) -> list[StageRecord]:
        return [r for r in self.records if r.asset == asset]

    @property
    def failed_days(self) -> list[DayOutcome]:
        return [d for d in self.days if not d.success]


class Progress:
    """What a command shows while it runs; this one shows nothing (see `semsearch.progress`)."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def planned(self, plan: DayPlan) -> None:
        """Which days are about to run, and why."""

    def plan(self, runs: list[tuple[str, int]]) -> None:
        """The runs to come, as (label, steps) in order."""

    def step(self, label: str, step: str, status: str) -> None:
        """`status`: started, succeeded, failed or skipped."""

    def finished(self, label: str, success: bool) -> None:
        """A run ended."""


def dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME if set, else a folder under the semsearch home.

    Dagster reads its instance settings from DAGSTER_HOME/dagster.yaml. Under the default home
    that file is the project's dagster.yaml, copied again whenever the project's changes, so
    the project's file is the one that configures Dagster. A DAGSTER_HOME set by the user keeps
    its own file (one is written only where none exists).
    """
    chosen = os.environ.get("DAGSTER_HOME")
    home = Path(chosen or settings.home_path / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config, project = home / "dagster.yaml", Path("dagster.yaml")
    wanted = project.read_text() if project.exists() else DAGSTER_YAML
    if not config.exists() or (not chosen and config.read_text() != wanted):
        config.write_text(wanted)
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
    days = partition_days(DeltaTables(settings.tables_path), BRONZE_TABLE)
    return days_between(days[0], days[-1]) if days else []


def _steps(job, asset_selection: Iterable[AssetKey] | None = None) -> int:
    selected = job.get_subset(asset_selection=set(asset_selection)) if asset_selection else job
    return len(selected.get_job_snapshot().dep_structure_snapshot.node_invocation_snaps)


def _execute(job, instance: DagsterInstance, label: str, progress: Progress, **kwargs):
    """Run `job` here, reporting each step; a SIGINT/SIGTERM that Dagster turned into a failed
    run stops us too, and a refused configuration raises ConfigurationError."""
    run_id = str(uuid.uuid4())
    instance.add_event_listener(run_id, _listener(label, progress))
    result = job.execute_in_process(
        raise_on_error=False, instance=instance, run_id=run_id, **kwargs
    )
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if error is not None and error.cls_name == "DagsterExecutionInterruptedError":
            raise KeyboardInterrupt
        failure = getattr(event.event_specific_data, "user_failure_data", None)
        if failure is not None and CONFIGURATION_ERROR in (failure.metadata or {}):
            raise ConfigurationError(failure.description or "the configuration was refused")
    progress.finished(label, result.success)
    return result


_STEP_STATUS = {
    DagsterEventType.STEP_START: "started",
    DagsterEventType.STEP_SUCCESS: "succeeded",
    DagsterEventType.STEP_FAILURE: "failed",
    DagsterEventType.STEP_SKIPPED: "skipped",
}


def _listener(label: str, progress: Progress) -> Callable[[EventLogEntry], None]:
    def on_event(entry: EventLogEntry) -> None:
        event = entry.dagster_event
        if event is not None and event.event_type in _STEP_STATUS and event.step_key:
            progress.step(label, event.step_key, _STEP_STATUS[event.event_type])

    return on_event


def _day_outcome(day: date | None, result) -> DayOutcome:
    outcome = DayOutcome(day, result.run_id, result.success)
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            name = f"{evaluation.asset_key.to_user_string()}/{evaluation.check_name}"
            outcome.evaluated.add(name)
            if not evaluation.passed:
                outcome.failed_checks.append(
                    FailedCheck(
                        name,
                        evaluation.description or "",
                        _metadata_values(dict(evaluation.metadata)),
                        evaluation.blocking,
                        evaluation.partition is not None,
                    )
                )
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            outcome.errors.append(f"{event.step_key}: {event.event_specific_data.error.message}")
    return outcome


def plan_days(
    settings: Settings,
    instance: DagsterInstance,
    defs: Definitions,
    bronze_since: int | None,
    every_day: bool = False,
) -> DayPlan:
    """The days whose inputs changed since bronze version `bronze_since` (or that never
    completed), and the later days whose theme window holds one of them (themes only)."""
    span = days_with_data(settings)
    if every_day:
        return DayPlan(days=span, reasons=dict.fromkeys(span, "--all"))
    tables = DeltaTables(settings.tables_path)
    until = table_version(tables.uri(BRONZE_TABLE))
    reasons: dict[date, str] = {}
    if until is not None and until != bronze_since:
        reasons |= dict.fromkeys(changed_bronze_days(tables, bronze_since, until), "new data")
    for day in _unfinished_days(instance, defs, span):
        reasons.setdefault(day, "not completed before")
    window = ThemeWindow(settings.theme_window_days, _first_partition(defs))
    changed = sorted(d for d in reasons if d in span)
    themes_only = [
        d for d in span if d not in reasons and any(window.first_day(d) <= c < d for c in changed)
    ]
    up_to_date = [d for d in span if d not in reasons and d not in themes_only]
    return DayPlan(changed, themes_only, up_to_date, reasons)


def _first_partition(defs: Definitions) -> date:
    graph = defs.resolve_asset_graph()
    return graph.get(daily_asset_keys(defs)[0]).partitions_def.start.date()


def _unfinished_days(instance: DagsterInstance, defs: Definitions, span: list[date]) -> set[date]:
    """Days of `span` some daily asset was never materialized for, or whose last run failed."""
    if not span:
        return set()
    wanted = {d.isoformat() for d in span}
    missing = set()
    for key in daily_asset_keys(defs):
        missing |= wanted - set(instance.get_materialized_partitions(key))
    runs = instance.get_runs(filters=RunsFilter(tags={PARTITION_TAG: sorted(wanted)}))
    latest: dict[str, DagsterRunStatus] = {}
    for run in runs:  # newest first
        latest.setdefault(run.tags[PARTITION_TAG], run.status)
    ended_badly = (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
    failed = {d for d, status in latest.items() if status in ended_badly}
    return {date.fromisoformat(d) for d in missing | failed}


def run_days(
    settings: Settings,
    instance: DagsterInstance,
    defs: Definitions,
    days: list[date],
    log_level: str = QUIET_LEVEL,
    progress: Progress | None = None,
    themes_only: list[date] = (),
) -> PipelineRun:
    """Materialize each day in order, here (`themes_only` days: their themes alone). A day that
    fails or is blocked by a check is recorded and the later days still run; killed runs
    before them are cleaned up first."""
    progress = progress or Progress()
    job, run_config = defs.resolve_job_def(PIPELINE_JOB), console_run_config(log_level)
    themes = [AssetKey(THEMES_TABLE)]
    whole = set(days)
    ordered = sorted(whole | set(themes_only))
    progress.plan([(d.isoformat(), _steps(job, None if d in whole else themes)) for d in ordered])
    run = PipelineRun()
    for day in ordered:
        wait_for_pools(instance, PIPELINE_POOLS, settings.pool_wait_seconds)
        log.info("materializing partition %s", day)
        result = _execute(
            job,
            instance,
            day.isoformat(),
            progress,
            partition_key=day.isoformat(),
            run_config=run_config,
            tags=process_tags(),
            asset_selection=None if day in whole else themes,
        )
        run.records += _records(result)
        run.days.append(_day_outcome(day, result))
    return run


def run_pipeline(
    settings: Settings,
    instance: DagsterInstance,
    days: list[date] | None = None,
    defs: Definitions | None = None,
    log_level: str = QUIET_LEVEL,
    every_day: bool = False,
    progress: Progress | None = None,
) -> PipelineRun:
    """Ingest landing files, then materialize `days`, by default the days whose inputs changed
    (`every_day`: every day with data)."""
    progress = progress or Progress()
    release_dead_runs(instance)
    bronze_before = table_version(DeltaTables(settings.tables_path).uri(BRONZE_TABLE))
    ingest_defs = defs or build_definitions(settings)
    ingest_job = ingest_defs.resolve_job_def(INGEST_JOB)
    progress.plan([("ingest", _steps(ingest_job))])
    ingest = _execute(
        ingest_job,
        instance,
        "ingest",
        progress,
        run_config=console_run_config(log_level),
        tags=process_tags(),
    )
    if not ingest.success:
        failures = [e.message for e in ingest.all_events if e.is_step_failure]
        raise RuntimeError(f"ingesting the landing folder failed (run {ingest.run_id}): {failures}")
    # Built again after ingesting: by default the partitions begin at the first day of the data.
    defs = defs or build_definitions(settings)
    if days is None:
        plan = plan_days(settings, instance, defs, bronze_before, every_day)
    else:
        plan = DayPlan(days=sorted(days), reasons=dict.fromkeys(days, "asked for"))
    progress.planned(plan)
    run = run_days(
        settings, instance, defs, plan.days, log_level, progress, themes_only=plan.themes_only
    )
    run.records = _records(ingest) + run.records
    run.plan, run.ingest = plan, _day_outcome(None, ingest)
    return run
