"""Assemble the Dagster definitions from settings."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    Definitions,
    define_asset_job,
    in_process_executor,
)

from semsearch.config import Settings
from semsearch.defs.alerts import AlertsResource, build_alert_sensor
from semsearch.defs.checks import QualityResource, build_checks, build_freshness_checks
from semsearch.defs.labels import ThemeLabelResource
from semsearch.defs.maintenance import build_maintenance_job, build_maintenance_schedule
from semsearch.defs.partitions import SPARK_RESOURCE, daily_partitions
from semsearch.defs.resources import (
    EmbeddingResource,
    PipelineResource,
    StorageResource,
    source_table_resource,
    spark_resource,
)
from semsearch.defs.sensors import INGEST_JOB, PIPELINE_JOB, SOURCE_JOB, build_sensors
from semsearch.defs.sources import build_source_asset
from semsearch.defs.stages import build_pipeline_assets, ingest_landing_files

__all__ = [
    "INGEST_JOB",
    "PIPELINE_JOB",
    "SOURCE_JOB",
    "build_definitions",
    "build_resources",
    "console_run_config",
    "daily_partitions",
]


def console_run_config(log_level: str = "WARNING") -> dict:
    """Run config for a run started from the command line: the console log at `log_level`."""
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


def build_resources(settings: Settings) -> dict:
    """Every resource the assets use, from settings; the Spark session only on `spark`."""
    resources = {
        "storage": StorageResource.from_settings(settings),
        "pipeline": PipelineResource.from_settings(settings),
        "embedder": EmbeddingResource.from_settings(settings),
        "quality": QualityResource.from_settings(settings),
        "alerts": AlertsResource.from_settings(settings),
        "theme_labels": ThemeLabelResource.from_settings(settings),
    }
    if settings.engine == "spark":
        resources[SPARK_RESOURCE] = spark_resource(settings)
    if settings.source_table_uri:
        resources["source_table"] = source_table_resource(settings.source_table_uri)
    return resources


def build_definitions(settings: Settings) -> Definitions:
    partitions = daily_partitions(settings)
    sources = [build_source_asset(settings.source_table_uri)] if settings.source_table_uri else []
    daily_assets = build_pipeline_assets(
        partitions, settings.theme_window_days, sources, settings.engine
    )
    # Sensors request these jobs; the daily job carries every daily asset's checks with it.
    jobs = [
        define_asset_job(INGEST_JOB, AssetSelection.assets(ingest_landing_files)),
        define_asset_job(PIPELINE_JOB, AssetSelection.assets(*daily_assets)),
    ]
    if sources:
        jobs.append(define_asset_job(SOURCE_JOB, AssetSelection.assets(*sources)))
    jobs.append(build_maintenance_job(settings.maintenance_retention_hours))
    freshness = build_freshness_checks(settings.freshness_deadline_hour)
    return Definitions(
        assets=[ingest_landing_files, *sources, *daily_assets],
        asset_checks=[
            *build_checks(
                partitions, bool(settings.profiling), labelled=bool(settings.eval_label_field)
            ),
            *freshness,
        ],
        jobs=jobs,
        # One process per run, not per step: the steps of a day form a chain, and a process per
        # step would load the embedding model once for every step (and check) that needs it.
        executor=in_process_executor,
        sensors=[
            *build_sensors(settings, partitions.start.date(), freshness),
            build_alert_sensor(settings.sensor_interval_seconds),
        ],
        schedules=[build_maintenance_schedule(settings.maintenance_cron)],
        resources=build_resources(settings),
    )
