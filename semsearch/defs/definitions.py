"""Assemble the Dagster definitions from settings."""

from __future__ import annotations

from dagster import AssetSelection, DailyPartitionsDefinition, Definitions, define_asset_job

from semsearch.config import Settings
from semsearch.defs.assets import bronze_documents, build_pipeline_assets
from semsearch.defs.resources import EmbeddingResource, PipelineResource, StorageResource

INGEST_JOB = "ingest_landing"
PIPELINE_JOB = "daily_pipeline"


def daily_partitions(settings: Settings) -> DailyPartitionsDefinition:
    # end_offset=1: today's partition exists, so data landing today can be processed (and
    # re-processed once the day is complete).
    return DailyPartitionsDefinition(start_date=settings.partitions_start, end_offset=1)


def build_definitions(settings: Settings) -> Definitions:
    partitions = daily_partitions(settings)
    daily_assets = build_pipeline_assets(partitions, settings.theme_window_days)
    return Definitions(
        assets=[bronze_documents, *daily_assets],
        jobs=[
            define_asset_job(INGEST_JOB, AssetSelection.assets(bronze_documents)),
            define_asset_job(
                PIPELINE_JOB, AssetSelection.assets(*daily_assets), partitions_def=partitions
            ),
        ],
        resources={
            "storage": StorageResource.from_settings(settings),
            "pipeline": PipelineResource.from_settings(settings),
            "embedder": EmbeddingResource.from_settings(settings),
        },
    )
