"""Storage maintenance through the real Dagster job: fewer files, the same rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from dagster import DagsterInstance

from semsearch.cli import main
from semsearch.config import Settings
from semsearch.defs.definitions import build_definitions
from semsearch.defs.maintenance import MAINTENANCE_JOB
from semsearch.storage.delta import DeltaTables
from semsearch.storage.embedding_cache import CacheStore, LanceVectorCache
from semsearch.storage.maintenance import maintain_storage
from semsearch.storage.schemas import ALL_TABLES, CHUNKS, CHUNKS_TABLE, index_schema
from semsearch.storage.vector_index import VectorIndex
from semsearch_tests.ops_support import QUIET, snapshot

# Retention 0 (below the 24 h floor of the settings read from the environment) is what LanceDB
# warns about: a concurrent reader could fail. There is none here.
pytestmark = pytest.mark.filterwarnings("ignore:optimize\\(cleanup_older_than=0\\)")

DAYS = [date(2026, 11, 3), date(2026, 11, 4)]
DIMENSION = 8


def chunk_rows(day: date, version: int) -> pa.Table:
    ids = [f"{day}-{i}" for i in range(5)]
    return pa.Table.from_pylist(
        [
            {
                "chunk_id": chunk_id,
                "doc_id": chunk_id,
                "partition_date": day,
                "position": 0,
                "text": f"text {chunk_id} v{version}",
                "token_count": 3,
            }
            for chunk_id in ids
        ],
        schema=CHUNKS,
    )


def index_rows(day: date, version: int) -> pa.Table:
    rng = np.random.default_rng(version)
    return pa.Table.from_pylist(
        [
            {
                "chunk_id": f"{day}-{i}",
                "doc_id": f"{day}-{i}",
                "partition_date": day,
                "title": None,
                "text": f"v{version}",
                "metadata": "{}",
                "metadata_tags": [],
                "model_id": "local/test",
                "vector": rng.standard_normal(DIMENSION).tolist(),
            }
            for i in range(5)
        ],
        schema=index_schema(DIMENSION),
    )


def parquet_files(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.parquet"))


def run_maintenance(settings: Settings):
    defs = build_definitions(settings)
    with DagsterInstance.ephemeral() as instance:
        return defs.resolve_job_def(MAINTENANCE_JOB).execute_in_process(
            instance=instance, run_config=QUIET, raise_on_error=False
        )


def step_metadata(result) -> dict:
    (event,) = [e for e in result.all_node_events if e.is_successful_output or e.is_failure]
    if event.is_failure:
        return event.step_failure_data.user_failure_data.metadata
    return event.step_output_data.metadata


@pytest.fixture
def rewritten_home(tmp_path) -> Settings:
    """Tables whose days were each rewritten three times, and a cache appended to per run."""
    settings = Settings(home=str(tmp_path / "home"), maintenance_retention_hours=0)
    tables, index = DeltaTables(settings.tables_path), VectorIndex(settings.lance_path)
    cache = LanceVectorCache(CacheStore.open(settings.lance_path), "local/test", DIMENSION)
    for version in range(3):
        for day in DAYS:
            tables.replace_partition(CHUNKS_TABLE, day, chunk_rows(day, version), CHUNKS)
            index.replace_partition(day, index_rows(day, version), "local/test")
            keys = [f"{day}-{version}-{i}" for i in range(4)]
            cache.store(keys, np.ones((4, DIMENSION), np.float32))
    return settings


def test_maintenance_job_compacts_and_vacuums_without_changing_a_row(rewritten_home):
    settings = rewritten_home
    before = snapshot(settings)
    files_before = parquet_files(settings.tables_path)
    result = run_maintenance(settings)
    assert result.success
    assert snapshot(settings) == before
    # Every chunks day had three versions: only the live files remain.
    assert parquet_files(settings.tables_path / CHUNKS_TABLE) == len(DAYS)
    metadata = step_metadata(result)
    vacuumed = files_before - parquet_files(settings.tables_path)
    assert metadata["files_vacuumed"].value == vacuumed == 4  # chunks' old days
    assert metadata["index_versions_after"].value == 1 < metadata["index_versions_before"].value
    assert metadata["index_segments_merged"].value == 0  # no ANN index at this size
    # The cache's six per-run appends: compacted, every row folded into the key index.
    assert metadata["cache_rows"].value == 24
    assert metadata["cache_fragments_before"].value == 6 > metadata["cache_fragments_after"].value
    assert metadata["cache_unindexed_rows_before"].value == 24
    assert metadata["cache_unindexed_rows_after"].value == 0
    assert metadata["cache_versions_after"].value == 1
    cache = LanceVectorCache(CacheStore(settings.lance_path), "local/test", DIMENSION)
    assert len(cache.lookup([f"{DAYS[0]}-0-{i}" for i in range(4)])) == 4


def test_files_younger_than_the_retention_are_kept_and_stay_listed(rewritten_home):
    settings = rewritten_home.replace(maintenance_retention_hours=168)
    files_before = parquet_files(settings.tables_path / CHUNKS_TABLE)
    assert run_maintenance(settings).success
    assert parquet_files(settings.tables_path / CHUNKS_TABLE) == files_before
    # A checkpoint forgets removed files older than this; vacuum only deletes listed ones.
    table = DeltaTables(settings.tables_path).table(CHUNKS_TABLE)
    configuration = table.metadata().configuration
    assert configuration["delta.deletedFileRetentionDuration"] == "interval 216 hours"
    assert configuration["delta.logRetentionDuration"] == "interval 720 hours"
    table.create_checkpoint()
    listed = (
        DeltaTables(settings.tables_path)
        .table(CHUNKS_TABLE)
        .vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False)
    )
    assert len(listed) == files_before - len(DAYS)


def test_one_broken_table_fails_the_run_but_not_the_others(rewritten_home):
    settings = rewritten_home
    log = settings.tables_path / CHUNKS_TABLE / "_delta_log"
    max(log.glob("*.json")).write_text("{not json")
    result = run_maintenance(settings)
    assert not result.success
    metadata = step_metadata(result)
    assert metadata["tables_failed"].value == 1
    assert "| chunks | 0 | 0 | 0 | 0 |" in metadata["tables"].value
    assert metadata["cache_unindexed_rows_after"].value == 0  # the cache still maintained


def test_the_schedule_runs_the_job_at_the_configured_hour(tmp_path):
    settings = Settings(home=str(tmp_path), maintenance_cron="30 4 * * *")
    schedule = build_definitions(settings).resolve_schedule_def("maintenance_schedule")
    assert schedule.job_name == MAINTENANCE_JOB
    assert schedule.cron_schedule == "30 4 * * *"
    assert schedule.execution_timezone == "UTC"


def test_bad_maintenance_settings_name_the_variable(tmp_path):
    with pytest.raises(ValueError, match="SEMSEARCH_MAINTENANCE_CRON='daily'"):
        build_definitions(Settings(home=str(tmp_path), maintenance_cron="daily"))
    with pytest.raises(ValueError, match="SEMSEARCH_MAINTENANCE_RETENTION_HOURS=23 must be >= 24"):
        Settings.from_env({"SEMSEARCH_MAINTENANCE_RETENTION_HOURS": "23"})


def test_tables_not_created_yet_are_left_alone(tmp_path):
    settings = Settings(home=str(tmp_path / "empty"), maintenance_retention_hours=0)
    tables, index = DeltaTables(settings.tables_path), VectorIndex(settings.lance_path)
    report = maintain_storage(tables, list(ALL_TABLES), index, retention_hours=0)
    assert report.delta == [] and report.index_versions_after == 0
    assert not any(tables.exists(name) for name in ALL_TABLES)


def test_cli_maintain_runs_the_job_and_prints_what_it_did(
    rewritten_home, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SEMSEARCH_HOME", rewritten_home.home)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert main(["maintain"]) == 0
    out = capsys.readouterr().out
    assert "| chunks | 2 | 2 | 0 | 0 |" in out  # live files before, after
    assert "embedding cache: 24 rows; fragments 6 -> " in out
    assert "rows outside the key index 24 -> 0" in out
    assert "vacuumed: 0 (older than 168 h)" in out  # the default retention keeps them
