"""Sensors: new source data in, exactly the affected days out, and a watch on missing days.

The flow has two hops so that parsing happens once, inside a run, with all of ingestion's
rejection handling:

1. `landing_sensor` waits until new or changed landing files are complete (size and mtime
   unchanged across two ticks, or older than SEMSEARCH_LANDING_SETTLE_SECONDS) and requests an
   `ingest_landing` run, keyed by the files' content hashes: the same file twice starts nothing.
   `source_table_sensor` does the same for an upstream Delta table, keyed on its version.
2. `bronze_sensor` keys on the bronze Delta table's version. The files the new commits added and
   removed name the day-partitions that changed (a changed file's old days included), and it
   requests one `daily_pipeline` run per day, keyed by version and day.

`freshness_checks_sensor` is Dagster's sensor for its freshness check
(`checks.build_freshness_checks`): it evaluates the check once a deadline passes, so a day that
never arrives is seen.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from dagster import (
    AssetChecksDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SupersessionWarning,
    build_sensor_for_freshness_checks,
    sensor,
)
from dagster_deltalake import DeltaTableResource

from semsearch.config import Settings
from semsearch.defs.resources import StorageResource, source_storage_options
from semsearch.storage.bronze import (
    days_sharing_documents,
    landing_files,
    landing_fingerprint,
    read_day,
)
from semsearch.storage.delta import DeltaTables
from semsearch.storage.history import file_changes, table_version
from semsearch.storage.schemas import BRONZE_TABLE, DOCUMENTS, LANDED_FILES, LANDED_TABLE, RAW_TABLE
from semsearch.storage.source_table import changed_days, landed_version, source_name

INGEST_JOB = "ingest_landing"
PIPELINE_JOB = "daily_pipeline"
SOURCE_JOB = "ingest_source_table"
# Daily runs requested by sensors run one at a time, in day order (dagster.yaml limits this
# tag to 1): a day's themes cluster a window that includes the days before it, so they must not
# overtake them. Backfills go through the backfill daemon, which orders by dependencies instead.
DAILY_QUEUE_TAG = {"semsearch/queue": "daily"}


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# Landing files.


@dataclass
class LandingCursor:
    seen: dict[str, list[int]] = field(default_factory=dict)  # path -> [size, mtime_ns]
    requested: dict[str, str] = field(default_factory=dict)  # path -> sha256 asked to ingest

    @classmethod
    def parse(cls, raw: str | None) -> LandingCursor:
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class LandingScan:
    ready: dict[str, str] = field(default_factory=dict)  # path -> sha256, new or changed
    settling: list[str] = field(default_factory=list)


def _manifest(tables: DeltaTables) -> dict[str, tuple[int, int, str]]:
    landed = tables.scan(LANDED_TABLE, LANDED_FILES).select(
        "path", "size_bytes", "mtime_ns", "sha256"
    )
    return {p: (s, m, h) for p, s, m, h in landed.collect().iter_rows()}


def scan_landing(
    landing_dir: Path, tables: DeltaTables, cursor: LandingCursor, settle_seconds: float
) -> LandingScan:
    """Sort the landing files into new-or-changed-and-complete, still settling, or known."""
    manifest, scan, now = _manifest(tables), LandingScan(), time.time()
    seen: dict[str, list[int]] = {}
    for path in landing_files(landing_dir):
        relative = path.relative_to(landing_dir).as_posix()
        stat = path.stat()
        size_mtime = [stat.st_size, stat.st_mtime_ns]
        seen[relative] = size_mtime
        known = manifest.get(relative)
        if known and list(known[:2]) == size_mtime:
            continue  # exactly as landed: not even hashed
        complete = cursor.seen.get(relative) == size_mtime or now - stat.st_mtime >= settle_seconds
        if not complete:
            scan.settling.append(relative)
            continue
        sha = landing_fingerprint(path, landing_dir)
        if sha != (known[2] if known else None) and sha != cursor.requested.get(relative):
            scan.ready[relative] = sha
    cursor.seen = seen
    return scan


def build_landing_sensor(interval: int, settle_seconds: int) -> SensorDefinition:
    @sensor(
        name="landing_sensor",
        job_name=INGEST_JOB,
        minimum_interval_seconds=interval,
        default_status=DefaultSensorStatus.RUNNING,
        description="Requests an ingest_landing run once new or changed landing files are "
        "complete; keyed by content hash, so the same file twice starts nothing.",
    )
    def landing_sensor(context: SensorEvaluationContext, storage: StorageResource) -> SensorResult:
        cursor = LandingCursor.parse(context.cursor)
        scan = scan_landing(Path(storage.landing_dir), storage.tables(), cursor, settle_seconds)
        # The ingest run takes every new file, so wait until none is still being written.
        if scan.settling or not scan.ready:
            reason = f"waiting for {len(scan.settling)} files to settle" if scan.settling else None
            return SensorResult(cursor=cursor.dump(), skip_reason=reason or "no new landing files")
        cursor.requested.update(scan.ready)
        files = sorted(scan.ready.items())
        request = RunRequest(
            run_key=f"landing-{_digest([f'{p}:{h}' for p, h in files])}",
            tags={"semsearch/landing_files": str(len(files))},
        )
        context.log.info("requesting ingestion of %s", ", ".join(p for p, _ in files))
        return SensorResult(run_requests=[request], cursor=cursor.dump())

    return landing_sensor


# Bronze: the days that changed.


CONTENT = ["doc_id", "title", "text", "created_at", "metadata"]


def day_is_current(tables: DeltaTables, day: date) -> bool:
    """raw_documents of `day` already holds what bronze would give it now (content only).

    A re-landed file rewrites all its rows, so its other days show up as changed files with
    unchanged content; comparing content keeps those days from running again.
    """
    expected = read_day(tables, day).select(CONTENT).sort("doc_id")
    current = tables.read_partition(RAW_TABLE, day, DOCUMENTS).select(CONTENT).sort("doc_id")
    return expected.equals(current)


def changed_bronze_days(tables: DeltaTables, since: int | None, until: int) -> list[date]:
    """Days whose bronze files changed between the versions, or that share a document with
    such a day (it may have moved between them), and whose documents differ."""
    days = file_changes(tables.uri(BRONZE_TABLE), since, until).days
    days |= days_sharing_documents(tables, days, since)
    return [d for d in sorted(days) if not day_is_current(tables, d)]


def build_bronze_sensor(interval: int, first_day: date) -> SensorDefinition:
    @sensor(
        name="bronze_sensor",
        job_name=PIPELINE_JOB,
        minimum_interval_seconds=interval,
        default_status=DefaultSensorStatus.RUNNING,
        description="Keys on the bronze table's version and requests a daily_pipeline run for "
        "each day whose bronze rows changed (one run key per version and day).",
    )
    def bronze_sensor(context: SensorEvaluationContext, storage: StorageResource) -> SensorResult:
        uri = storage.tables().uri(BRONZE_TABLE)
        since = int(context.cursor) if context.cursor else None
        until = table_version(uri)
        if until is None or until == since:
            return SensorResult(skip_reason="bronze unchanged")
        days = changed_bronze_days(storage.tables(), since, until)
        early = [d for d in days if d < first_day]
        if early:
            # Their partitions do not exist in the definitions loaded: keep the cursor, so the
            # days are requested once a reload extends the partitions (run keys stop repeats).
            context.log.warning(
                "bronze holds %d days before the first partition %s (first %s): reload the "
                "code location (Deployment → Reload) to extend the partitions to them",
                len(early),
                first_day,
                early[0],
            )
        requests = [
            RunRequest(
                run_key=f"bronze-v{until}-{d.isoformat()}",
                partition_key=d.isoformat(),
                tags=DAILY_QUEUE_TAG,
            )
            for d in days  # in day order: the queue starts them in this order
            if d >= first_day
        ]
        return SensorResult(run_requests=requests, cursor=context.cursor if early else str(until))

    return bronze_sensor


# An upstream Delta table.


def build_source_table_sensor(interval: int, uri: str, created_at: str) -> SensorDefinition:
    name = source_name(uri)

    @sensor(
        name="source_table_sensor",
        job_name=SOURCE_JOB,
        minimum_interval_seconds=interval,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Keys on the version of the upstream Delta table {name} and requests "
        "its ingestion for the days its new commits touched.",
    )
    def source_table_sensor(
        context: SensorEvaluationContext, storage: StorageResource, source_table: DeltaTableResource
    ) -> SensorResult:
        if context.cursor:
            since = int(context.cursor)
        else:  # first tick: start from what bronze already holds
            since = landed_version(storage.tables(), name)
        options = source_storage_options(source_table)
        until = table_version(source_table.url, options)
        if until is None or until == since:
            return SensorResult(skip_reason=f"{name} unchanged")
        days = sorted(changed_days(source_table.url, since, until, created_at, options))
        listed = ",".join(d.isoformat() for d in days)
        request = RunRequest(
            run_key=f"{name}@v{until}",
            tags={"semsearch/source_version": str(until), "semsearch/days": listed[:4000]},
        )
        return SensorResult(run_requests=[request], cursor=str(until))

    return source_table_sensor


# Freshness.


def build_freshness_sensor(
    freshness_checks: list[AssetChecksDefinition], interval: int
) -> SensorDefinition:
    """Dagster's sensor for its freshness checks: it runs a check again once the previous pass
    may have expired (a failed check waits for the run that materializes the asset)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupersessionWarning)  # see checks.build_freshness_checks
        return build_sensor_for_freshness_checks(
            freshness_checks=freshness_checks,
            minimum_interval_seconds=interval,
            # Not the name of the sensor it replaces, whose cursor Dagster keeps and this one
            # could not read.
            name="freshness_checks_sensor",
            default_status=DefaultSensorStatus.RUNNING,
        )


def build_sensors(
    settings: Settings, first_day: date, freshness_checks: list[AssetChecksDefinition]
) -> list[SensorDefinition]:
    """The sensors; `first_day` is the first daily partition of the definitions."""
    interval = settings.sensor_interval_seconds
    sensors = [
        build_landing_sensor(interval, settings.landing_settle_seconds),
        build_bronze_sensor(interval, first_day),
    ]
    if freshness_checks:
        sensors.append(build_freshness_sensor(freshness_checks, max(interval, 60)))
    if settings.source_table_uri:
        sensors.append(
            build_source_table_sensor(
                interval, settings.source_table_uri, settings.created_at_column
            )
        )
    return sensors
