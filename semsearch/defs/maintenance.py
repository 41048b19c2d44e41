"""The maintain_storage job and its schedule: compaction and vacuum of every table."""

# No `from __future__ import annotations`: Dagster reads the op's `context` annotation as a type.

from dagster import (
    DagsterInvalidDefinitionError,
    DefaultScheduleStatus,
    Failure,
    JobDefinition,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    job,
    op,
)

from semsearch.defs.metadata import markdown_table
from semsearch.defs.partitions import LANCEDB_POOL
from semsearch.defs.resources import StorageResource
from semsearch.storage.maintenance import StorageMaintenance, maintain_storage
from semsearch.storage.schemas import ALL_TABLES

MAINTENANCE_JOB = "maintain_storage"


def maintenance_metadata(report: StorageMaintenance) -> dict[str, object]:
    rows = [
        [t.table, t.files_before, t.files_after, t.files_compacted, t.files_vacuumed, t.problem]
        for t in report.delta
    ]
    header = ["table", "live files before", "after", "compacted", "vacuumed", "problem"]
    return {
        "tables": markdown_table(rows, header),
        "files_vacuumed": sum(t.files_vacuumed for t in report.delta),
        "files_compacted": sum(t.files_compacted for t in report.delta),
        "tables_failed": len(report.failures),
        "compactions_skipped": sum(bool(t.problem) and not t.failed for t in report.delta),
        "index_versions_before": report.index_versions_before,
        "index_versions_after": report.index_versions_after,
        "index_segments_merged": report.index_segments_merged,
        **_cache_metadata(report),
    }


def _cache_metadata(report: StorageMaintenance) -> dict[str, object]:
    cache = report.cache
    if cache is None:
        return {}
    return {
        "cache_rows": cache.rows,
        "cache_fragments_before": cache.fragments_before,
        "cache_fragments_after": cache.fragments_after,
        "cache_unindexed_rows_before": cache.unindexed_rows_before,
        "cache_unindexed_rows_after": cache.unindexed_rows_after,
        "cache_versions_before": cache.versions_before,
        "cache_versions_after": cache.versions_after,
        "cache_problem": cache.problem,
    }


def build_maintenance_job(retention_hours: int) -> JobDefinition:
    # In the LanceDB pool: the index's single writer, so cleanup never races a day's write.
    @op(
        pool=LANCEDB_POOL,
        description=f"Compacts every Delta table, the LanceDB index and the embedding cache "
        f"(folding its new rows into the key index), then deletes files that no version of "
        f"the last {retention_hours} hours needs.",
    )
    def compact_and_vacuum(context: OpExecutionContext, storage: StorageResource):
        report = maintain_storage(
            storage.tables(),
            list(ALL_TABLES),
            storage.index(),
            retention_hours,
            cache=storage.cache(),
        )
        metadata = maintenance_metadata(report)
        context.log.info(
            "maintenance: %s files compacted, %s vacuumed, index versions %s -> %s",
            metadata["files_compacted"],
            metadata["files_vacuumed"],
            report.index_versions_before,
            report.index_versions_after,
        )
        if report.failures:
            failed = ", ".join(f"{t.table} ({t.problem})" for t in report.failures)
            raise Failure(description=f"maintenance failed for {failed}", metadata=metadata)
        return Output(None, metadata=metadata)

    @job(name=MAINTENANCE_JOB, description="Storage maintenance: compaction and vacuum.")
    def maintain_storage_job():
        compact_and_vacuum()

    return maintain_storage_job


def build_maintenance_schedule(cron: str) -> ScheduleDefinition:
    try:
        return ScheduleDefinition(
            name="maintenance_schedule",
            cron_schedule=cron,
            job_name=MAINTENANCE_JOB,
            execution_timezone="UTC",
            default_status=DefaultScheduleStatus.RUNNING,
            description="Runs maintain_storage (SEMSEARCH_MAINTENANCE_CRON, UTC).",
        )
    except DagsterInvalidDefinitionError:
        raise ValueError(
            f"SEMSEARCH_MAINTENANCE_CRON={cron!r} is not a cron expression of 5 fields "
            "(e.g. '0 3 * * *')"
        ) from None
