"""The spark engine (local[2]) against the local engine: same tables, ids, vectors, searches;
a failed commit leaves only orphan files; a task Spark retries duplicates nothing; a run
SIGKILLed mid-day and run again ends where a clean run does.

One SparkSession for the session (local[2,2]: two cores, a task may fail once and be retried).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from dagster import materialize

from semsearch.cli import main
from semsearch.config import Settings
from semsearch.defs.definitions import build_resources, daily_partitions
from semsearch.defs.stages import build_pipeline_assets, ingest_landing_files
from semsearch.defs.stages.embeddings import OUTPUT_TABLES
from semsearch.query.searcher import searcher_for
from semsearch.runner import run_pipeline
from semsearch.spark import delta_files
from semsearch.spark.jobs import FAIL_FIRST_ATTEMPT
from semsearch.storage.delta import DeltaTables
from semsearch.storage.embedding_cache import CacheStore
from semsearch.storage.history import table_version
from semsearch.storage.schemas import (
    CACHE_TABLE,
    CHUNKS,
    CHUNKS_TABLE,
    DEAD_LETTER_TABLE,
    DOCUMENTS,
    EMBEDDING_CACHE,
    EMBEDDING_DEAD_LETTER,
    EMBEDDINGS,
    EMBEDDINGS_TABLE,
    RAW_TABLE,
)
from semsearch.storage.vector_index import VectorIndex
from semsearch.testing.snapshot import TABLES as SNAPSHOT_TABLES
from semsearch.testing.snapshot import WRITE_TIMES
from semsearch_tests.conftest import write_jsonl
from semsearch_tests.ops_support import DAYS, cli_env, ops_settings, sample_records, temp_instance

DAY = date(2026, 3, 2)
STAGES = ["raw_documents", "chunks", *OUTPUT_TABLES, "vector_index"]
# Each compared table: schema, sort key, and the columns saying when a row was written.
TABLES = {
    RAW_TABLE: (DOCUMENTS, ["doc_id"], ["ingested_at"]),
    CHUNKS_TABLE: (CHUNKS, ["chunk_id"], []),
    EMBEDDINGS_TABLE: (EMBEDDINGS, ["chunk_id"], []),
    CACHE_TABLE: (EMBEDDING_CACHE, ["cache_key"], ["created_at"]),
    DEAD_LETTER_TABLE: (EMBEDDING_DEAD_LETTER, ["chunk_id"], ["first_seen", "last_seen"]),
}


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    from semsearch.defs.resources import spark_config

    conf = spark_config(Settings(spark_master="local[2,2]", spark_app_name="semsearch-tests"))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.config("spark.sql.shuffle.partitions", "4").getOrCreate()
    yield session
    session.stop()


def records(banking77: list[dict]) -> list[dict]:
    long_text = " ".join(r["text"] for r in banking77[200:260])  # several chunks
    docs = [{"id": f"d{i}", "text": r["text"]} for i, r in enumerate(banking77[:40])]
    docs += [{"id": "dup", "text": banking77[0]["text"]}, {"id": "long", "text": long_text}]
    return [d | {"created_at": f"{DAY}T12:00:00Z"} for d in docs]


def later_records(banking77: list[dict]) -> list[dict]:
    """Landed after `records`: a new version of d1 (it wins) and d2 moved to the next day."""
    return [
        {"id": "d1", "text": banking77[300]["text"], "created_at": f"{DAY}T18:00:00Z"},
        {"id": "d2", "text": banking77[2]["text"], "created_at": f"{DAY + timedelta(1)}T09:00:00Z"},
    ]


def run(settings: Settings, instance, spark=None, raise_on_error=True):
    resources = build_resources(settings)
    materialize([ingest_landing_files], resources=resources, instance=instance)
    daily = build_pipeline_assets(
        daily_partitions(settings), settings.theme_window_days, engine=settings.engine
    )
    return materialize(
        daily,
        selection=STAGES,
        partition_key=DAY.isoformat(),
        resources=resources,
        instance=instance,
        raise_on_error=raise_on_error,
    )


def table(settings: Settings, name: str) -> pl.DataFrame:
    schema, key, write_times = TABLES[name]
    if name == CACHE_TABLE:  # the LanceDB table beside the index
        frame = pl.from_arrow(CacheStore(settings.lance_path).dataset().to_table()).sort(key)
    else:
        frame = DeltaTables(settings.tables_path).scan(name, schema).collect().sort(key)
    return frame.drop(write_times)


def assert_same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns and a.height == b.height
    for column in a.columns:
        if column == "vector":
            np.testing.assert_allclose(
                np.stack(a[column].to_list()), np.stack(b[column].to_list()), atol=1e-5
            )
        else:
            assert a[column].to_list() == b[column].to_list(), column


def homes(tmp_path: Path, banking77, engine: str) -> Settings:
    settings = Settings(home=str(tmp_path / engine), partitions_start="2026-01-01", engine=engine)
    write_jsonl(settings.landing_path / "a.jsonl", records(banking77))
    write_jsonl(settings.landing_path / "b.jsonl", later_records(banking77))
    return settings


def test_spark_engine_writes_what_the_local_engine_writes(tmp_path, spark, banking77, instance):
    local, on_spark = homes(tmp_path, banking77, "local"), homes(tmp_path, banking77, "spark")
    run(local, instance)
    result = run(on_spark, instance)
    for name in TABLES:
        assert_same(table(local, name), table(on_spark, name))
    assert table(on_spark, CHUNKS_TABLE).height > 41  # the long document has several chunks
    documents = table(on_spark, RAW_TABLE)
    assert documents.height == 41 and "d2" not in documents["doc_id"]  # d2 moved a day on
    assert documents.filter(pl.col("doc_id") == "d1")["source_file"].to_list() == ["b.jsonl"]
    events = result.get_asset_materialization_events()
    engines = {
        e.asset_key.to_user_string(): e.materialization.metadata.get("engine") for e in events
    }
    assert {engines[n].value for n in (RAW_TABLE, CHUNKS_TABLE, EMBEDDINGS_TABLE)} == {"spark"}
    for query in ("my card has not arrived", "why was I charged twice"):
        hits = [[h.chunk_id for h in searcher_for(s).search(query, k=5)] for s in (local, on_spark)]
        assert hits[0] == hits[1]


@pytest.fixture(scope="module")
def clean_local(tmp_path_factory, banking77) -> Settings:
    """The same input run once on the local engine: what every spark run must equal."""
    from dagster import DagsterInstance

    settings = homes(tmp_path_factory.mktemp("reference"), banking77, "local")
    with DagsterInstance.ephemeral() as instance:
        run(settings, instance)
    return settings


def data_files(settings: Settings, name: str) -> set[str]:
    folder = DeltaTables(settings.tables_path).uri(name)
    return {str(p.resolve()) for p in Path(folder).rglob("*.parquet") if "_staging" not in str(p)}


def committed_files(settings: Settings, name: str) -> set[str]:
    uris = delta_files.file_uris(DeltaTables(settings.tables_path), name)
    return {str(Path(u.removeprefix("file://")).resolve()) for u in uris}


def test_failed_commit_leaves_orphan_files_only_and_a_rerun_equals_a_clean_run(
    tmp_path, spark, banking77, instance, clean_local, monkeypatch
):
    settings = homes(tmp_path, banking77, "spark")
    real_commit = delta_files.commit

    def crash_before_embeddings(tables, name, *args):
        if name == EMBEDDINGS_TABLE:
            raise RuntimeError("driver died after the executors wrote their files")
        return real_commit(tables, name, *args)

    monkeypatch.setattr("semsearch.spark.jobs.commit", crash_before_embeddings)
    assert not run(settings, instance, raise_on_error=False).success
    written, committed = (
        data_files(settings, EMBEDDINGS_TABLE),
        committed_files(settings, EMBEDDINGS_TABLE),
    )
    assert written and not committed  # the executors' files are there, in no commit
    assert table(settings, EMBEDDINGS_TABLE).height == 0

    monkeypatch.setattr("semsearch.spark.jobs.commit", real_commit)
    assert run(settings, instance).success
    for name in TABLES:
        assert_same(table(clean_local, name), table(settings, name))
    assert written.isdisjoint(committed_files(settings, EMBEDDINGS_TABLE))


def test_tasks_spark_retries_duplicate_nothing(tmp_path, spark, banking77, instance, clean_local):
    settings = homes(tmp_path, banking77, "spark")
    spark.conf.set(FAIL_FIRST_ATTEMPT, "raw,chunks,embed,embeddings")
    try:
        assert run(settings, instance).success
    finally:
        spark.conf.unset(FAIL_FIRST_ATTEMPT)
    for name in TABLES:
        assert_same(table(clean_local, name), table(settings, name))
    # Each failed first attempt wrote a file before failing: it is in the folder, not the table.
    for name in (RAW_TABLE, CHUNKS_TABLE, EMBEDDINGS_TABLE):
        assert data_files(settings, name) - committed_files(settings, name)
    # The failed embed attempt had appended its vectors to the cache: the retry found them
    # there, asked for nothing again, and the cache holds each key once (assert_same above).


def rows_of(settings: Settings) -> dict[str, pl.DataFrame]:
    """Every Delta table of the home (write times left out) and the index's rows, sorted."""
    tables = DeltaTables(settings.tables_path)
    frames = {}
    for name in SNAPSHOT_TABLES:
        if tables.exists(name):
            frame = pl.read_delta(tables.uri(name))
            frames[name] = frame.drop([c for c in frame.columns if c in WRITE_TIMES])
    cache = CacheStore(settings.lance_path)
    if cache.exists():
        frames[CACHE_TABLE] = pl.from_arrow(cache.dataset().to_table()).drop("created_at")
    index = VectorIndex(settings.lance_path, settings.lance_table).table()
    if index is not None:
        frames["vector_index"] = pl.from_arrow(index.to_arrow().drop_columns(["vector"]))
    return {name: frame.sort(exact_columns(frame)) for name, frame in frames.items()}


def is_float(dtype: pl.DataType) -> bool:
    return dtype.is_float() or (isinstance(dtype, pl.List) and dtype.inner.is_float())


def exact_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c, t in frame.schema.items() if not is_float(t) and not isinstance(t, pl.List)]


def assert_same_rows(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    """The same tables with the same rows; floats (vectors, centroids, scores) within 1e-5."""
    assert a.keys() == b.keys()
    for name, frame in a.items():
        other = b[name]
        assert frame.columns == other.columns and frame.height == other.height, name
        for column, dtype in frame.schema.items():
            if is_float(dtype):
                left, right = frame[column].to_list(), other[column].to_list()
                np.testing.assert_allclose(np.array(left), np.array(right), atol=1e-5)
            else:
                assert frame[column].to_list() == other[column].to_list(), (name, column)


def test_run_killed_mid_day_on_spark_then_run_again_equals_a_clean_run(
    tmp_path, spark, monkeypatch
):
    """SIGKILL of `semsearch run` (engine spark, local[2]) once the day's chunks are committed
    and its embeddings are being computed; the same command again ends where a clean run does."""
    day = sample_records([DAYS[0]])
    clean = ops_settings(tmp_path / "clean")
    write_jsonl(clean.landing_path / "tickets.jsonl", day)
    with temp_instance(tmp_path / "clean") as clean_instance:
        assert not run_pipeline(clean, clean_instance).failed_days

    settings = ops_settings(tmp_path / "killed", engine="spark", spark_master="local[2]")
    write_jsonl(settings.landing_path / "tickets.jsonl", day)
    env = cli_env(
        settings,
        tmp_path / "killed" / "dagster",
        SEMSEARCH_ENGINE="spark",
        SEMSEARCH_SPARK_MASTER="local[2]",
        PYSPARK_PYTHON=sys.executable,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "semsearch.cli", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its JVM and Python workers: one group, ended with it
    )
    chunks = str(settings.tables_path / CHUNKS_TABLE)
    try:
        deadline = time.monotonic() + 300
        while (table_version(chunks) or 0) < 1:  # version 0 creates the table, 1 is the day
            assert process.poll() is None, "the run ended before its chunks were committed"
            assert time.monotonic() < deadline, "the run never committed its chunks"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        try:
            os.killpg(process.pid, signal.SIGKILL)  # a JVM or Python worker left behind
        except ProcessLookupError:
            pass
    assert process.returncode == -signal.SIGKILL
    half = rows_of(settings)
    assert half[CHUNKS_TABLE].height > 0
    assert EMBEDDINGS_TABLE not in half or half[EMBEDDINGS_TABLE].height == 0  # killed mid-day

    for name, value in env.items():
        if name.startswith(("SEMSEARCH_", "DAGSTER_", "PYSPARK_")):
            monkeypatch.setenv(name, value)
    assert main(["run"]) == 0  # the same command again (on this process's Spark session)
    assert_same_rows(rows_of(clean), rows_of(settings))
