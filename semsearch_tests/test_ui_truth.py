"""What the Dagster UI shows is true: read back from the instance's records the way the UI reads
them, after runs launched the way the daemon launches them."""

from __future__ import annotations

from datetime import date

import pytest
from dagster import AssetKey
from dagster._core.event_api import PartitionKeyFilter  # how the UI asks for one day's checks

from semsearch.defs.backfills import submit_backfill
from semsearch.defs.definitions import INGEST_JOB, build_definitions
from semsearch.runner import dagster_home
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
        assert run_backfill_as_the_daemon(instance, backfill_id).value == "COMPLETED_SUCCESS"

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


def test_a_backfill_of_days_without_partitions_is_refused_naming_them(tmp_path):
    """Dagster's own error for that is "Multiple initial assets not yet supported"."""
    defs = build_definitions(ops_settings(tmp_path))
    with temp_instance(tmp_path) as instance:
        with pytest.raises(ValueError, match=r"no daily partition for 2026-09-29 and 1 more days"):
            submit_backfill(instance, defs, [date(2026, 9, 29), date(2026, 9, 30)])
        assert instance.get_backfills() == []


def test_the_project_dagster_yaml_is_the_one_dagster_uses(tmp_path, monkeypatch):
    """DAGSTER_HOME's copy follows the project's file (so `dagster dev`'s "will not be used"
    would be false); a DAGSTER_HOME the user chose keeps its own file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    settings = ops_settings(tmp_path)
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    home = dagster_home(settings)
    assert (home / "dagster.yaml").read_text() == (tmp_path / "dagster.yaml").read_text()
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n# changed\n")
    assert (dagster_home(settings) / "dagster.yaml").read_text().endswith("# changed\n")

    chosen = tmp_path / "their_home"
    chosen.mkdir()
    (chosen / "dagster.yaml").write_text("# theirs\n")
    monkeypatch.setenv("DAGSTER_HOME", str(chosen))
    assert (dagster_home(settings) / "dagster.yaml").read_text() == "# theirs\n"
