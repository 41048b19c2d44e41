"""What the Dagster UI shows is true: read back from the instance's records the way the UI reads
them, after runs launched the way the daemon launches them."""

from __future__ import annotations

from dagster import AssetKey
from dagster._core.event_api import PartitionKeyFilter  # how the UI asks for one day's checks

from semsearch.defs.backfills import submit_backfill
from semsearch.defs.definitions import INGEST_JOB, build_definitions
from semsearch_tests.daemon_support import run_backfill_as_the_daemon
from semsearch_tests.ops_support import (
    DAYS,
    QUIET,
    ops_settings,
    partition_statuses,
    sample_records,
    temp_instance,
    write_jsonl,
)

BACKFILLED = ["raw_documents", "chunks", "embeddings", "vector_index"]
# Runs launched right away (no queue daemon here), one process per run as under the daemon.
LAUNCH_NOW = {
    "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
}


def test_daemon_backfill_records_every_check_against_its_day(tmp_path, monkeypatch):
    days = DAYS[:2]
    settings = ops_settings(tmp_path)
    for name, value in {
        "SEMSEARCH_HOME": settings.home,
        "SEMSEARCH_PARTITIONS_START": settings.partitions_start,
        "SEMSEARCH_THEME_MIN_CLUSTER_SIZE": str(settings.theme_min_cluster_size),
    }.items():
        monkeypatch.setenv(name, value)
    write_jsonl(settings.landing_path / "tickets.jsonl", sample_records(days))
    defs = build_definitions(settings)
    with temp_instance(tmp_path, overrides=LAUNCH_NOW) as instance:
        defs.resolve_job_def(INGEST_JOB).execute_in_process(instance=instance, run_config=QUIET)
        backfill_id = submit_backfill(instance, defs, days, [AssetKey(a) for a in BACKFILLED])
        run_backfill_as_the_daemon(instance, backfill_id)

        checks = [
            key
            for key in defs.resolve_asset_graph().asset_check_keys
            if key.asset_key.to_user_string() in BACKFILLED
            and defs.resolve_asset_graph().get(key).partitions_def is not None
        ]
        assert len(checks) >= 15
        expected = {d.isoformat() for d in days}
        for key in checks:
            statuses = partition_statuses(instance, defs, key)
            assert statuses == {"SUCCEEDED": expected}, (key, statuses)
            for day in expected:  # one check's history for one day, as its page shows it
                latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
                    [key], partition_filter=PartitionKeyFilter(key=day)
                )[key]
                evaluation = latest.event.asset_check_evaluation
                assert (latest.partition, evaluation.partition) == (day, day), key
                assert evaluation.passed, (key, evaluation.description)
