"""The whole graph materialized through Dagster on real data, with the real local model."""

from __future__ import annotations

from datetime import date

import pytest
from dagster import AssetKey, DagsterInstance

from semsearch.config import Settings
from semsearch.defs.definitions import build_definitions
from semsearch.query import search, theme_assignments, themes
from semsearch.runner import run_pipeline
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import CHUNKS, DOCUMENTS, EMBEDDINGS, THEME_ASSIGNMENTS
from semsearch.storage.vector_index import VectorIndex
from semsearch_tests.conftest import write_jsonl

DAYS = [date(2022, 7, 5), date(2022, 7, 6), date(2022, 7, 7)]
DELTA_TABLES = {
    "raw_documents": ("doc_id", DOCUMENTS),
    "chunks": ("chunk_id", CHUNKS),
    "embeddings": ("chunk_id", EMBEDDINGS),
    "theme_assignments": ("chunk_id", THEME_ASSIGNMENTS),
}


def snapshot(settings: Settings) -> dict[str, list[tuple]]:
    """Every table's (partition, id) pairs, sorted: what a re-run must leave unchanged."""
    tables = DeltaTables(settings.tables_path)
    state = {}
    for name, (id_column, schema) in DELTA_TABLES.items():
        frame = tables.scan(name, schema).select("partition_date", id_column).collect()
        state[name] = sorted(frame.rows())
    index = VectorIndex(settings.lance_path).table().to_arrow()
    state["vector_index"] = sorted(
        zip(index["partition_date"].to_pylist(), index["chunk_id"].to_pylist(), strict=True)
    )
    return state


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, hf_issues):
    """Three days of real, dated GitHub issues, landed and materialized through Dagster."""
    root = tmp_path_factory.mktemp("pipeline")
    settings = Settings(
        home=str(root / "home"),
        partitions_start="2022-07-01",
        created_at_column="date",
        theme_min_cluster_size=3,
    )
    records = [r for r in hf_issues if r["date"][:10] in {d.isoformat() for d in DAYS}]
    write_jsonl(settings.landing_path / "issues.jsonl", records)
    with DagsterInstance.ephemeral(tempdir=str(root / "dagster")) as instance:
        run = run_pipeline(settings, instance, DAYS)
        yield settings, instance, run, records


def test_every_stage_materializes_every_partition(pipeline):
    settings, _, run, records = pipeline
    for asset in ["raw_documents", "chunks", "embeddings", "vector_index", "themes"]:
        assert sorted(r.partition for r in run.for_asset(asset)) == [d.isoformat() for d in DAYS]
    raw_rows = sum(r.metadata["dagster/row_count"] for r in run.for_asset("raw_documents"))
    assert raw_rows == len(records) == 20
    chunk_rows = sum(r.metadata["dagster/row_count"] for r in run.for_asset("chunks"))
    assert chunk_rows == sum(r.metadata["dagster/row_count"] for r in run.for_asset("embeddings"))
    assert chunk_rows == VectorIndex(settings.lance_path).count_rows()


def test_materialization_metadata_shows_counts_timings_and_preview(pipeline):
    _, _, run, _ = pipeline
    side_tables = {"rejected_records", "landed_files", "embedding_dead_letter", "embedding_cache"}
    for record in run.records:
        assert "seconds_total" in record.metadata or record.asset in side_tables, record.asset
    embeddings = run.for_asset("embeddings")[0].metadata
    assert embeddings["model_id"] == "local/all-MiniLM-L6-v2"
    assert embeddings["dimension"] == 384
    assert "| doc_id |" in run.for_asset("raw_documents")[0].metadata["preview"]
    assert "| theme |" in run.for_asset("themes")[-1].metadata["theme_table"]
    histogram = run.for_asset("chunks")[0].metadata["token_count_distribution"]
    assert "| tokens | count |" in histogram and "█" in histogram


def test_every_asset_reports_standard_row_count_and_schema_and_has_a_code_version(pipeline):
    settings, _, run, _ = pipeline
    defs = build_definitions(settings)
    keys = ["raw_documents", "chunks", "embeddings", "vector_index", "themes", "theme_assignments"]
    for key in [*keys, "theme_trends"]:
        assert defs.resolve_assets_def(key).code_versions_by_key[AssetKey(key)]
        last = run.for_asset(key)[-1].metadata
        assert last["dagster/row_count"] >= 1
        columns = {c.name for c in last["dagster/column_schema"].columns}
        assert {"partition_date"} <= columns
    # theme_assignments is an asset of its own (one output of the themes multi-asset): a row
    # per chunk of the window, beside the themes' row per theme.
    assigned = run.for_asset("theme_assignments")[-1].metadata["dagster/row_count"]
    assert assigned == VectorIndex(settings.lance_path).count_rows()
    assert run.for_asset("themes")[-1].metadata["dagster/row_count"] < assigned
    chunks_schema = run.for_asset("chunks")[0].metadata["dagster/column_schema"]
    assert {c.name for c in chunks_schema.columns} == set(CHUNKS.names)


def test_partition_dates_follow_created_at_in_utc(pipeline):
    settings, _, _, records = pipeline
    raw = DeltaTables(settings.tables_path).scan("raw_documents", DOCUMENTS).collect()
    expected = {r["id"]: date.fromisoformat(r["date"][:10]) for r in records}
    assert dict(raw.select("doc_id", "partition_date").rows()) == expected


def test_rerun_of_partition_keeps_every_table_unchanged(pipeline):
    settings, instance, _, _ = pipeline
    before = snapshot(settings)
    run_pipeline(settings, instance, [DAYS[1]])
    assert snapshot(settings) == before


def test_materializing_day_two_does_not_touch_day_one(pipeline):
    settings, instance, _, _ = pipeline
    tables = DeltaTables(settings.tables_path)
    day_one = tables.read_partition("embeddings", DAYS[0], EMBEDDINGS).sort("chunk_id")
    day_one_index = VectorIndex(settings.lance_path).count_rows(
        f"partition_date = date '{DAYS[0].isoformat()}'"
    )
    run_pipeline(settings, instance, [DAYS[1]])
    assert tables.read_partition("embeddings", DAYS[0], EMBEDDINGS).sort("chunk_id").equals(day_one)
    assert (
        VectorIndex(settings.lance_path).count_rows(
            f"partition_date = date '{DAYS[0].isoformat()}'"
        )
        == day_one_index
    )


def test_search_filters_by_date_and_finds_titles(pipeline):
    settings, _, _, records = pipeline
    record = records[0]
    hits = search(record["title"], k=3, settings=settings)
    assert record["id"] in [h.doc_id for h in hits]
    only_day = search(record["title"], k=50, since=DAYS[2], until=DAYS[2], settings=settings)
    assert only_day and {h.partition_date for h in only_day} == {DAYS[2]}


def test_theme_assignments_cover_every_chunk_of_the_window(pipeline):
    settings, _, _, records = pipeline
    last = themes(settings=settings)
    assert last and last[0].window == (date(2022, 7, 1), DAYS[-1])  # clipped at the start
    chunks = DeltaTables(settings.tables_path).scan("chunks", CHUNKS).collect()
    # A theme counts documents, each once, and its chunks beside.
    assert sum(t.size for t in last) == chunks["doc_id"].n_unique()
    assert sum(t.chunks for t in last) == chunks.height
    per_doc = theme_assignments(doc_id=records[0]["id"], settings=settings)
    assert per_doc.height >= 1 and set(per_doc["doc_id"]) == {records[0]["id"]}
