"""Sensors driven with Dagster's test utilities against an instance in a temp DAGSTER_HOME:
landing files and an upstream Delta table in, exactly the affected days out, and freshness."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
import pytest
from dagster import AssetCheckKey, AssetKey, AssetMaterialization, RunRequest
from deltalake import write_deltalake

from semsearch.defs.definitions import INGEST_JOB, PIPELINE_JOB, SOURCE_JOB, build_definitions
from semsearch.defs.resources import (
    PipelineResource,
    source_storage_options,
    source_table_resource,
)
from semsearch.storage import source_table
from semsearch.storage.alerts_store import read_alerts
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import DOCUMENTS, REJECTED_RECORDS
from semsearch_tests.ops_support import (
    DAYS,
    QUIET,
    evaluations,
    ops_settings,
    sample_records,
    temp_instance,
    tick,
    write_jsonl,
)


def execute(defs, instance, request: RunRequest, job_name: str):
    """Run a sensor's request as the daemon would launch it."""
    tags = {**request.tags, "dagster/run_key": request.run_key}
    return defs.resolve_job_def(request.job_name or job_name).execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        tags=tags,
        run_config=QUIET,
        raise_on_error=False,
    )


def requests(result) -> list[RunRequest]:
    return list(result.run_requests or [])


def days_of(result) -> list[str]:
    return sorted(r.partition_key for r in requests(result))


def test_landing_sensor_waits_for_a_complete_file_and_requests_it_once(tmp_path):
    settings = ops_settings(tmp_path)
    defs = build_definitions(settings)
    path = write_jsonl(settings.landing_path / "a.jsonl", sample_records([DAYS[0]], 3))
    with temp_instance(tmp_path) as instance:
        first = tick(defs, instance, "landing_sensor")
        assert not requests(first) and "settle" in first.skip_reason.skip_message
        with path.open("a") as handle:  # still being written
            handle.write(json.dumps(sample_records([DAYS[1]], 1)[0]) + "\n")
        second = tick(defs, instance, "landing_sensor", first.cursor)
        assert not requests(second)
        third = tick(defs, instance, "landing_sensor", second.cursor)  # unchanged since
        [request] = requests(third)
        assert request.run_key.startswith("landing-")
        assert not requests(tick(defs, instance, "landing_sensor", third.cursor))  # asked once
        execute(defs, instance, request, INGEST_JOB)

        # The same content written again (a new mtime) starts nothing; new content does.
        path.write_text(path.read_text())
        cursor = tick(defs, instance, "landing_sensor", third.cursor).cursor
        assert not requests(tick(defs, instance, "landing_sensor", cursor))
        write_jsonl(path, sample_records([DAYS[2]], 2))
        cursor = tick(defs, instance, "landing_sensor", cursor).cursor
        [changed] = requests(tick(defs, instance, "landing_sensor", cursor))
        assert changed.run_key != request.run_key


def test_files_already_older_than_the_settle_time_are_requested_on_the_first_tick(tmp_path):
    settings = ops_settings(tmp_path, landing_settle_seconds=60)
    defs = build_definitions(settings)
    path = write_jsonl(settings.landing_path / "old.jsonl", sample_records([DAYS[0]], 2))
    old = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    os.utime(path, (old, old))
    with temp_instance(tmp_path) as instance:
        assert len(requests(tick(defs, instance, "landing_sensor"))) == 1


def test_bronze_sensor_requests_exactly_the_days_a_file_touched_left_or_took_from(tmp_path):
    settings = ops_settings(tmp_path)
    defs = build_definitions(settings)
    records = sample_records(DAYS[:2], 3)
    path = write_jsonl(settings.landing_path / "a.jsonl", records)
    with temp_instance(tmp_path) as instance:
        ingest = defs.resolve_job_def(INGEST_JOB)
        ingest.execute_in_process(instance=instance, run_config=QUIET)
        first = tick(defs, instance, "bronze_sensor")
        assert days_of(first) == ["2026-11-03", "2026-11-04"]
        assert len({r.run_key for r in requests(first)}) == 2
        assert not requests(tick(defs, instance, "bronze_sensor", first.cursor))
        for request in requests(first):
            execute(defs, instance, request, PIPELINE_JOB)

        # Every record of 2026-11-04 moves to 2026-11-05: both days change. 2026-11-03's rows
        # are rewritten too (the file is re-landed whole) but its documents are the same.
        moved = [
            r | {"created_at": r["created_at"].replace("2026-11-04", "2026-11-05")} for r in records
        ]
        write_jsonl(path, moved)
        ingest.execute_in_process(instance=instance, run_config=QUIET)
        second = tick(defs, instance, "bronze_sensor", first.cursor)
        assert days_of(second) == ["2026-11-04", "2026-11-05"]

        # Another file re-dates one document of 2026-11-03: only 2026-11-05's files change, but
        # the document leaves 2026-11-03, so that day runs again too.
        kept = next(r for r in records if r["created_at"].startswith("2026-11-03"))
        redated = kept | {"created_at": kept["created_at"].replace("2026-11-03", "2026-11-05")}
        write_jsonl(settings.landing_path / "b.jsonl", [redated])
        ingest.execute_in_process(instance=instance, run_config=QUIET)
        third = tick(defs, instance, "bronze_sensor", second.cursor)
        assert days_of(third) == ["2026-11-03", "2026-11-05"]


def _tickets(rows: list[dict]) -> pa.Table:
    return pa.table(
        {
            "id": [r["id"] for r in rows],
            "text": [r["text"] for r in rows],
            "created_at": [
                datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")) for r in rows
            ],
            "category": [r["category"] for r in rows],
        }
    )


def test_source_table_sensor_keys_on_the_version_and_lands_only_changed_days(tmp_path):
    source = str(tmp_path / "upstream" / "tickets")
    write_deltalake(source, _tickets(sample_records(DAYS[:2], 3)))
    settings = ops_settings(tmp_path, source_table_uri=source)
    defs = build_definitions(settings)
    with temp_instance(tmp_path) as instance:
        first = tick(defs, instance, "source_table_sensor")
        [request] = requests(first)
        assert request.run_key == "delta:tickets@v0"
        assert request.tags["semsearch/days"] == "2026-11-03,2026-11-04"
        assert execute(defs, instance, request, SOURCE_JOB).success
        bronze = tick(defs, instance, "bronze_sensor")
        assert days_of(bronze) == ["2026-11-03", "2026-11-04"]
        assert not requests(tick(defs, instance, "source_table_sensor", first.cursor))

        write_deltalake(source, _tickets(sample_records([DAYS[2]], 2)), mode="append")
        second = tick(defs, instance, "source_table_sensor", first.cursor)
        [request] = requests(second)
        assert (request.run_key, request.tags["semsearch/days"]) == (
            "delta:tickets@v1",
            "2026-11-05",
        )
        execute(defs, instance, request, SOURCE_JOB)
        assert days_of(tick(defs, instance, "bronze_sensor", bronze.cursor)) == ["2026-11-05"]
        stored = DeltaTables(settings.tables_path).scan("bronze_documents", DOCUMENTS).collect()
        assert stored.group_by("partition_date").len().sort("partition_date")["len"].to_list() == [
            3,
            3,
            2,
        ]
        assert set(stored["source_file"]) == {"delta:tickets"}


def test_a_source_version_is_parsed_in_batches_with_rejections_across_them(tmp_path, monkeypatch):
    """Rows stream in batches, yet a duplicate id in a later batch is still caught and only the
    changed days are kept."""
    monkeypatch.setattr(source_table, "BATCH_ROWS", 2)
    source = str(tmp_path / "upstream" / "tickets")
    rows = sample_records(DAYS[:2], 3)
    write_deltalake(source, _tickets(rows + [rows[0] | {"text": "the same id again"}]))
    tables = DeltaTables(str(tmp_path / "tables"))
    parser = PipelineResource.from_settings(ops_settings(tmp_path)).record_parser()
    report = source_table.ingest_source_table(source, tables, parser)
    assert (report.rows_loaded, report.rows_rejected) == (6, 1)
    rejected = tables.scan("rejected_records", REJECTED_RECORDS).collect()
    assert rejected["reason"].to_list() == [f"duplicate id {rows[0]['id']!r}"]


@pytest.mark.parametrize(
    ("uri", "provider"),
    [("/data/tickets", "local"), ("file:///data/tickets", "local"), ("s3://bucket/tickets", "s3"),
     ("gs://bucket/tickets", "gcs")],
)  # fmt: skip
def test_the_source_table_resource_follows_the_uri_scheme(uri, provider):
    resource = source_table_resource(uri)
    assert (resource.url, resource.storage_options.provider) == (uri, provider)
    assert "provider" not in source_storage_options(resource)


def test_a_source_uri_of_an_unknown_scheme_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="SEMSEARCH_SOURCE_TABLE_URI 'ftp://x/t'.*'ftp'"):
        source_table_resource("ftp://x/t")


def test_freshness_fails_until_the_latest_day_is_indexed_and_alerts_once(tmp_path):
    """Dagster's freshness check, run as its sensor asks: failing while the latest day (today,
    or yesterday before the deadline hour) has no index partition, passing once it has one."""
    settings = ops_settings(tmp_path)
    defs = build_definitions(settings)
    key = AssetCheckKey(AssetKey("vector_index"), "freshness_check")
    checks_only = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_check_selection={key}
    )
    with temp_instance(tmp_path) as instance:
        request = tick(defs, instance, "freshness_checks_sensor")  # never evaluated yet: run it
        assert request.asset_check_keys == [key]
        instance.report_runless_asset_event(
            AssetMaterialization("vector_index", partition="2026-11-03")  # an old day only
        )
        first = checks_only.execute_in_process(instance=instance, run_config=QUIET)
        [failing] = first.get_asset_check_evaluations()
        assert not failing.passed and failing.severity.value == "WARN" and not failing.blocking
        assert "overdue" in failing.description
        alerts = tick(defs, instance, "alert_sensor").cursor

        today = datetime.now(UTC).date()
        for day in (today - timedelta(days=1), today):
            instance.report_runless_asset_event(
                AssetMaterialization("vector_index", partition=day.isoformat())
            )
        [passing] = checks_only.execute_in_process(
            instance=instance, run_config=QUIET
        ).get_asset_check_evaluations()
        assert passing.passed, passing.description
        tick(defs, instance, "alert_sensor", alerts)
    sent = read_alerts(DeltaTables(settings.tables_path))
    assert sent.select("key", "status").rows() == [
        ("check:vector_index/freshness_check:-", "firing"),
        ("check:vector_index/freshness_check:-", "resolved"),
    ]


def test_dropped_files_flow_through_sensors_to_checked_tables_and_alerts(tmp_path):
    """End to end: landing folder → landing sensor → ingest → bronze sensor → daily runs."""
    settings = ops_settings(tmp_path)
    defs = build_definitions(settings)
    write_jsonl(settings.landing_path / "good.jsonl", sample_records(DAYS[:2]))
    good = sample_records([DAYS[2]], per_day=8)
    empty = [
        {"id": f"empty-{i}", "text": " ", "created_at": "2026-11-05T08:00:00Z"} for i in range(4)
    ]
    write_jsonl(settings.landing_path / "partly_bad.jsonl", good + empty)
    with temp_instance(tmp_path) as instance:
        cursor = tick(defs, instance, "landing_sensor").cursor
        [ingest] = requests(tick(defs, instance, "landing_sensor", cursor))
        assert execute(defs, instance, ingest, INGEST_JOB).success
        daily = requests(tick(defs, instance, "bronze_sensor"))
        assert sorted(r.partition_key for r in daily) == [d.isoformat() for d in DAYS]
        results = {r.partition_key: execute(defs, instance, r, PIPELINE_JOB) for r in daily}
        alerts = tick(defs, instance, "alert_sensor")

    tables = DeltaTables(settings.tables_path)
    indexed = tables.scan("embeddings", pl.from_arrow(pa.schema([])).schema).collect()
    for day in DAYS[:2]:
        result = results[day.isoformat()]
        assert result.success
        assert all(e.passed for e in evaluations(result).values() if e.blocking)
        assert indexed.filter(pl.col("partition_date") == day).height > 0
    bad_day = results["2026-11-05"]
    assert not bad_day.success
    assert not evaluations(bad_day)["raw_documents/rejected_share"].passed
    assert indexed.filter(pl.col("partition_date") == DAYS[2]).height == 0  # stopped in time
    sent = read_alerts(tables)
    assert "check:raw_documents/rejected_share:2026-11-05" in sent["key"].to_list()
    assert "run:daily_pipeline:2026-11-05" in sent["key"].to_list()
    assert alerts.cursor


def test_days_older_than_the_loaded_partitions_wait_for_a_reload_then_run(tmp_path):
    """Partitions start at the first day of data when definitions load; data older than that
    is not dropped: the bronze sensor keeps its cursor, says to reload, and asks for the days
    once the reloaded definitions reach them."""
    settings = ops_settings(tmp_path, partitions_start="")
    before_data = build_definitions(settings)  # no data yet: the partitions start today
    write_jsonl(settings.landing_path / "a.jsonl", sample_records(DAYS[:2], 3))
    with temp_instance(tmp_path) as instance:
        ingest = before_data.resolve_job_def(INGEST_JOB)
        ingest.execute_in_process(instance=instance, run_config=QUIET)
        waiting = tick(before_data, instance, "bronze_sensor")
        assert requests(waiting) == [] and waiting.cursor is None
        reloaded = build_definitions(settings)
        assert days_of(tick(reloaded, instance, "bronze_sensor")) == ["2026-11-03", "2026-11-04"]
