"""Per-partition asset checks: built from the rule list, passing on clean days, and catching
deliberately bad data at every stage, with ERROR rules blocking what is downstream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from dagster import AssetKey, FloatMetadataValue
from dagster._core.event_api import PartitionKeyFilter  # how the UI asks for one day's checks

from semsearch.core import quality as q
from semsearch.defs.checks import RECALL_PROBE_EVERY_DAYS, RULES
from semsearch.defs.definitions import INGEST_JOB, build_definitions
from semsearch.query import themes
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import (
    CHUNKS,
    DEAD_LETTER_TABLE,
    DOCUMENTS,
    EMBEDDING_DEAD_LETTER,
    EMBEDDINGS,
    THEME_ASSIGNMENTS,
)
from semsearch.storage.vector_index import VectorIndex
from semsearch_tests.ops_support import (
    DAYS,
    QUIET,
    check_key,
    copy_home,
    evaluations,
    materialized,
    ops_settings,
    partition_statuses,
    run_checks_only,
    run_day,
    sample_records,
    temp_instance,
    write_jsonl,
)

DAY = DAYS[1]
THEME_ASSETS = ("themes", "theme_assignments")  # one multi-asset: selected together


@pytest.fixture
def clean(clean_days):
    return clean_days


@pytest.fixture
def corrupted(clean, tmp_path):
    """A private copy of the clean tables, its definitions and a fresh instance."""
    settings = copy_home(clean[0], tmp_path)
    with temp_instance(tmp_path) as instance:
        yield settings, build_definitions(settings), instance


# Fails in every run here: these days are in November, and the latest partition is today's.
# Its behaviour is tested with the sensors (test_sensors.py).
FRESHNESS = "vector_index/freshness_check"


def failed(result) -> dict[str, str]:
    """The failed checks of a run but freshness, which depends on the clock, not the data."""
    found = evaluations(result).items()
    return {name: e.description for name, e in found if not e.passed and name != FRESHNESS}


# Which checks stop the assets below them: a day with broken ids, text, dates, vectors or index
# rows must never reach search; statistics and probes of quality only warn.
BLOCKING = {
    "raw_documents/rejected_share", "raw_documents/doc_ids_unique",
    "raw_documents/text_present", "raw_documents/dates_in_partition",
    "chunks/every_document_chunked", "chunks/token_counts_in_bounds", "chunks/chunk_ids_unique",
    "embeddings/one_vector_per_chunk", "embeddings/finite_vectors",
    "embeddings/expected_dimension", "embeddings/single_model", "embeddings/dead_letter_share",
    "vector_index/rows_match_embeddings", "vector_index/known_item_probe",
    "theme_assignments/assignments_unique",
}  # fmt: skip
WARNING_ONLY = {
    "raw_documents/partition_not_empty", "embeddings/no_dead_letters",
    "embeddings/normalised_vectors", "vector_index/ann_recall", FRESHNESS,
    "themes/noise_share", "themes/theme_count", "themes/stability",
    "theme_assignments/every_chunk_assigned",
    "landed_files/files_read",
}  # fmt: skip
# Checks of a table as a whole, not of a day: freshness (the latest day) and the ingest's.
UNPARTITIONED = {FRESHNESS, "landed_files/files_read"}


def check_nodes(settings) -> dict[str, object]:
    """Every check the UI lists (stand-alone and in-asset), by asset/name."""
    graph = build_definitions(settings).resolve_asset_graph()
    return {
        f"{k.asset_key.to_user_string()}/{k.name}": graph.get(k) for k in graph.asset_check_keys
    }


def test_every_day_check_is_partitioned_and_exactly_the_integrity_checks_block(clean):
    nodes = check_nodes(clean[0])
    unpartitioned = {n for n, node in nodes.items() if node.partitions_def is None}
    assert unpartitioned == UNPARTITIONED
    assert {n for n, node in nodes.items() if node.blocking} == BLOCKING
    assert {n for n, node in nodes.items() if not node.blocking} == WARNING_ONLY


def test_a_check_blocks_exactly_when_its_severity_is_error(clean):
    """One truth: the severity a check reports, its description and its blocking agree."""
    _, results = clean
    nodes = check_nodes(clean[0])
    for name, evaluation in evaluations(next(iter(results.values()))).items():
        error = evaluation.severity.value == "ERROR"
        assert evaluation.blocking == error == nodes[name].blocking, name
    for name, node in nodes.items():
        if name != FRESHNESS:  # Dagster's own description
            expected = "[ERROR, blocking]" if node.blocking else "[WARN]"
            assert node.description.startswith(expected), name


def test_clean_days_pass_every_blocking_check_for_their_own_partition(clean):
    _, results = clean
    for day, result in results.items():
        assert result.success
        evaluated = evaluations(result)
        assert len(evaluated) == len(RULES) + 1  # + freshness, which has no partition
        evaluated.pop(FRESHNESS)
        assert {e.partition for e in evaluated.values()} == {day.isoformat()}
        blocking = [e for e in evaluated.values() if e.blocking]
        assert blocking and all(e.passed for e in blocking), failed(result)


def test_rejected_share_over_threshold_blocks_the_day(tmp_path):
    settings = ops_settings(tmp_path)
    good = sample_records([DAY], per_day=6)
    bad = [{"id": f"bad-{i}", "text": "", "created_at": f"{DAY}T10:00:00Z"} for i in range(4)]
    write_jsonl(settings.landing_path / "half_bad.jsonl", good + bad)
    defs = build_definitions(settings)
    with temp_instance(tmp_path) as instance:
        defs.resolve_job_def(INGEST_JOB).execute_in_process(instance=instance, run_config=QUIET)
        result = run_day(defs, instance, DAY)
    assert not result.success
    assert set(failed(result)) == {"raw_documents/rejected_share"}
    assert materialized(result) == {"raw_documents"}  # chunks and below never ran


def _rewrite(settings, name: str, schema: pa.Schema, change) -> None:
    tables = DeltaTables(settings.tables_path)
    frame = tables.read_partition(name, DAY, schema)
    tables.replace_partition(name, DAY, change(frame).to_arrow(), schema)


def test_raw_document_checks_catch_duplicates_blank_text_and_foreign_dates(corrupted):
    settings, defs, instance = corrupted

    def corrupt(docs: pl.DataFrame) -> pl.DataFrame:
        other_day = datetime(2026, 11, 9, 8, tzinfo=UTC)
        blank = docs.head(1).with_columns(
            pl.lit("doc-blank").alias("doc_id"), pl.lit(" ").alias("text")
        )
        foreign = docs.slice(1, 1).with_columns(
            pl.lit("doc-foreign").alias("doc_id"), pl.lit(other_day).alias("created_at")
        )
        return pl.concat([docs, docs.head(1), blank, foreign])

    _rewrite(settings, "raw_documents", DOCUMENTS, corrupt)
    result = run_checks_only(defs, instance, DAY, "raw_documents", downstream=["chunks"])
    assert set(failed(result)) == {
        "raw_documents/doc_ids_unique",
        "raw_documents/text_present",
        "raw_documents/dates_in_partition",
    }
    assert materialized(result) == set()  # blocked: chunks did not run


def test_chunk_checks_catch_unchunked_documents_bad_token_counts_and_duplicate_ids(corrupted):
    settings, defs, instance = corrupted

    def corrupt(chunks: pl.DataFrame) -> pl.DataFrame:
        first_doc = chunks["doc_id"].sort()[0]
        kept = chunks.filter(pl.col("doc_id") != first_doc)
        oversized = kept.head(1).with_columns(pl.lit(999, pl.Int32).alias("token_count"))
        return pl.concat([kept, kept.head(1), oversized])

    _rewrite(settings, "chunks", CHUNKS, corrupt)
    result = run_checks_only(defs, instance, DAY, "chunks", downstream=["embeddings"])
    assert set(failed(result)) == {
        "chunks/every_document_chunked",
        "chunks/token_counts_in_bounds",
        "chunks/chunk_ids_unique",
    }
    assert materialized(result) == set()


def test_token_bound_is_the_size_the_chunker_used_not_the_setting(corrupted):
    """A chunk size above the model's input limit is clamped; so is the check's bound."""
    settings, _, instance = corrupted
    settings = settings.replace(chunk_size_tokens=1000)  # MiniLM takes 254 tokens
    over_model_limit = pl.lit(300, pl.Int32).alias("token_count")
    _rewrite(settings, "chunks", CHUNKS, lambda c: c.with_columns(over_model_limit))
    defs = build_definitions(settings)
    result = run_checks_only(defs, instance, DAY, "chunks", downstream=["embeddings"])
    assert set(failed(result)) == {"chunks/token_counts_in_bounds"}


def test_embedding_checks_catch_bad_vectors_other_models_and_dead_letters(corrupted):
    settings, defs, instance = corrupted
    tables = DeltaTables(settings.tables_path)
    rows = tables.read_partition("embeddings", DAY, EMBEDDINGS).sort("chunk_id")
    vectors = np.stack(rows["vector"].to_list())
    vectors[0, 0] = np.nan
    vectors[1] *= 2.0  # not unit length
    short = rows.slice(2, 1).with_columns(pl.lit(8, pl.Int32).alias("dimension"))
    short = short.with_columns(pl.Series("vector", [[0.5] * 8], pl.List(pl.Float32)))
    other = rows.slice(3, 1).with_columns(pl.lit("other/model").alias("model_id"))
    body = rows.slice(4).with_columns(
        pl.Series("vector", vectors[4:].tolist(), pl.List(pl.Float32))
    )
    head = rows.head(2).with_columns(pl.Series("vector", vectors[:2].tolist(), pl.List(pl.Float32)))
    dropped = body.head(1)["chunk_id"][0]
    corrupt = pl.concat([head, short, other, body.slice(1)])
    tables.replace_partition("embeddings", DAY, corrupt.to_arrow(), EMBEDDINGS)
    dead = {
        "chunk_id": ["never-embedded"], "partition_date": [DAY], "model_id": ["m"],
        "error_class": ["RateLimitError"], "message": ["429"], "attempts": [6],
        "first_seen": [datetime.now(UTC)], "last_seen": [datetime.now(UTC)],
    }  # fmt: skip
    tables.replace_partition(
        DEAD_LETTER_TABLE, DAY, pa.table(dead, schema=EMBEDDING_DEAD_LETTER), EMBEDDING_DEAD_LETTER
    )
    result = run_checks_only(
        defs, instance, DAY, "embeddings", downstream=["vector_index", *THEME_ASSETS]
    )
    found = failed(result)
    assert set(found) == {
        "embeddings/one_vector_per_chunk",
        "embeddings/expected_dimension",
        "embeddings/finite_vectors",
        "embeddings/normalised_vectors",
        "embeddings/single_model",
        "embeddings/no_dead_letters",
        "embeddings/dead_letter_share",
    }
    assert "1 missing" in found["embeddings/one_vector_per_chunk"], dropped
    assert materialized(result) == set()


def test_index_checks_catch_missing_rows_and_a_probe_that_finds_another_chunk(corrupted):
    settings, defs, instance = corrupted
    index = VectorIndex(settings.lance_path)
    table = index.table()
    day_rows = table.search().where(f"partition_date = date '{DAY}'").limit(1000).to_arrow()
    ids = sorted(day_rows["chunk_id"].to_pylist())
    table.delete(f"chunk_id = '{ids[-1]}'")  # a lost row
    # The first probe's stored vector replaced by another chunk's: searching its text no
    # longer finds it first.
    probe = day_rows.filter(pa.compute.equal(day_rows["chunk_id"], ids[0]))
    donor = day_rows.filter(pa.compute.equal(day_rows["chunk_id"], ids[5]))
    vector = pa.array([donor["vector"][0].as_py()], type=probe.schema.field("vector").type)
    probe = probe.set_column(probe.schema.get_field_index("vector"), "vector", vector)
    table.merge_insert("chunk_id").when_matched_update_all().execute(probe)
    result = run_checks_only(defs, instance, DAY, "vector_index")
    found = failed(result)
    assert set(found) == {
        "vector_index/rows_match_embeddings",
        "vector_index/known_item_probe",
    }
    assert "2 of 3" in found["vector_index/known_item_probe"]


def test_ann_recall_is_measured_once_an_ann_index_exists(clean, tmp_path):
    settings = copy_home(clean[0], tmp_path).replace(ann_min_rows=10)
    defs = build_definitions(settings)
    with temp_instance(tmp_path) as instance:
        result = run_day(defs, instance, DAY)
        check = evaluations(result)["vector_index/ann_recall"]
        assert VectorIndex(settings.lance_path).has_ann_index()
        assert check.metadata["ann_index"].value is True
        assert 0.0 <= check.metadata["recall_at_10"].value <= 1.0
        # The table changes after the build (here: another day's rows go) and DAY is not the
        # week's probe day: the exact searches are skipped, and the check says so.
        assert DAY.toordinal() % RECALL_PROBE_EVERY_DAYS != 0
        VectorIndex(settings.lance_path).table().delete(f"partition_date = date '{DAYS[0]}'")
        result = run_checks_only(defs, instance, DAY, "vector_index")
    check = evaluations(result)["vector_index/ann_recall"]
    assert check.passed and check.description == "recall probe not due for this day"
    assert "recall_at_10" not in check.metadata


def test_theme_stability_compares_the_window_with_the_previous_one(corrupted):
    settings, _, instance = corrupted
    # Judged as a sliding 2-day window (half of it new); in the default month it is filling.
    defs = build_definitions(settings.replace(theme_window_days=2))
    # As if this window had put every document in another theme than the window before did.
    _rewrite(
        settings,
        "theme_assignments",
        THEME_ASSIGNMENTS,
        lambda a: a.with_columns(pl.lit("theme-from-an-older-model").alias("theme_id")),
    )
    result = run_checks_only(defs, instance, DAY, "themes")
    check = evaluations(result)["themes/stability"]
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["share_kept"].value == 0.0
    assert check.metadata["ari"].value <= 0.0
    assert f"window ending {DAYS[0]}" in check.description


def test_each_window_records_why_it_refitted_and_its_stability_against_the_previous(clean):
    _, results = clean
    first, second = (
        next(m.metadata for m in _materializations(results[d]) if m.asset_key.path == ["themes"])
        for d in DAYS[:2]
    )
    assert first["refit_reason"].value == "no earlier model" and "stability_ari" not in first
    # 14 messages a day: the first day's few themes leave most of the next day as outliers.
    assert second["refit_reason"].value.startswith("drift:")
    assert 0.0 <= second["stability_kept"].value <= 1.0
    assert -1.0 <= second["stability_ari"].value <= 1.0


def _materializations(result) -> list:
    return [
        e.event_specific_data.materialization for e in result.get_asset_materialization_events()
    ]


def test_profiling_adds_statistics_only_when_switched_on(clean, tmp_path):
    plain = {s.name for c in build_definitions(clean[0]).asset_checks for s in c.check_specs}
    assert "profile" not in plain
    settings = copy_home(clean[0], tmp_path).replace(profiling=1)
    defs = build_definitions(settings)
    with temp_instance(tmp_path) as instance:
        result = run_checks_only(defs, instance, DAY, "raw_documents")
    profile = evaluations(result)["raw_documents/profile"].metadata
    assert profile["rows"].value > 0
    assert "text" in profile["lengths"].value
    assert "category" in profile["metadata"].value


def test_label_agreement_is_recorded_and_warns_below_the_floor_as_the_ui_reads_it(clean, tmp_path):
    plain = {s.name for c in build_definitions(clean[0]).asset_checks for s in c.check_specs}
    assert "label_agreement" not in plain  # no labelled evaluation set configured
    settings = copy_home(clean[0], tmp_path).replace(
        eval_label_field="category", check_min_v_measure=0.99
    )
    defs = build_definitions(settings)
    key, day = check_key("themes/label_agreement"), DAY.isoformat()
    with temp_instance(tmp_path) as instance:
        result = run_checks_only(defs, instance, DAY, "themes", downstream=THEME_ASSETS)
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [key], partition_filter=PartitionKeyFilter(key=day)
        )[key]
        statuses = partition_statuses(instance, defs, key)
        recorded = instance.get_latest_materialization_event(AssetKey("themes"))
    evaluation = latest.event.asset_check_evaluation
    assert (latest.partition, evaluation.passed, evaluation.severity.value) == (day, False, "WARN")
    assert statuses == {"FAILED": {day}}
    assert "SEMSEARCH_CHECK_MIN_V_MEASURE" in defs.resolve_asset_graph().get(key).description
    metadata = recorded.asset_materialization.metadata
    assert recorded.asset_materialization.partition == day
    assert isinstance(metadata["eval_v_measure"], FloatMetadataValue)
    v_measure = metadata["eval_v_measure"].value
    assert 0.0 < v_measure < 0.99
    assert evaluation.metadata["v_measure"].value == v_measure
    assert f"V-measure {v_measure:.3f}" in evaluation.description
    for name in ("homogeneity", "completeness", "ari"):
        assert metadata[f"eval_{name}"].value == evaluation.metadata[name].value, name
    assert metadata["eval_labelled_documents"].value == evaluation.metadata["labelled"].value > 0
    assert materialized(result) == set(THEME_ASSETS)  # a warning blocks nothing


def test_assignments_kept_counts_only_chunks_present_in_both_runs():
    now = pl.DataFrame({"chunk_id": ["a", "b", "c", "d"], "theme_id": ["t1", "t1", "t2", "t2"]})
    before = pl.DataFrame({"chunk_id": ["a", "b", "c", "x"], "theme_id": ["t1", "t2", "t2", "t9"]})
    outcome = q.assignments_kept(now, before, minimum=0.8)
    assert outcome.metadata["compared"] == 3 and outcome.metadata["kept"] == 2
    assert not outcome.passed
    assert q.assignments_kept(now, None, 0.8).passed


def test_stability_is_not_judged_while_the_window_is_mostly_new():
    """The demo's second day: a window of 372 documents of which 149 were in the previous one is
    filling, not unstable (the check failed there with 45.6% kept)."""
    week = q.stability_min_overlap(7)
    before = pl.DataFrame({"doc_id": ["a", "b"], "theme_id": ["t1", "t1"]})
    now = pl.DataFrame(
        {"doc_id": ["a", "b", "c", "d", "e"], "theme_id": ["t2", "t2", "t1", "t1", "t1"]}
    )
    filling = q.assignments_kept(now, before, 0.8, key="doc_id", min_overlap=week)
    assert filling.passed and "not judged: only 2 of the window's 5" in filling.description
    slid_before = now.head(4).with_columns(theme_id=pl.lit("t3"))
    slid = q.assignments_kept(now, slid_before, 0.8, key="doc_id", min_overlap=week)
    assert not slid.passed and slid.metadata["compared"] == 4 and slid.metadata["kept"] == 0


def test_stability_judges_a_sliding_window_and_not_one_filling_up():
    """A W-day window slides by 1/W a day; while it fills, day d of the data is 1/d new. The
    demo's 15 days in a 30-day window warned twice on days that were still filling."""
    for window_days in (2, 7, 30, 90):
        sliding = 1 - 1 / window_days
        assert sliding >= q.stability_min_overlap(window_days), window_days
    month = q.stability_min_overlap(30)
    filling_days_judged = [d for d in range(2, 31) if (d - 1) / d >= month]
    assert filling_days_judged[0] == 10  # a tenth new at most
    assert q.stability_min_overlap(7) > 5 / 7  # two days' worth new is not a sliding week
    assert q.stability_min_overlap(0) == 0.9  # all history: judged once growth is a tenth


def test_recall_at_k_is_a_plain_function():
    assert q.recall_at_k([["a", "b"], ["c", "x"]], [["a", "b"], ["c", "d"]]) == 0.75


def test_a_day_without_documents_materializes_every_asset_empty_and_has_no_theme_window(
    corrupted,
):
    settings, defs, instance = corrupted
    quiet_day = DAYS[-1] + timedelta(days=1)
    result = run_day(defs, instance, quiet_day)
    assert result.success
    assert materialized(result) == {
        "raw_documents",
        "chunks",
        "embeddings",
        "embedding_dead_letter",
        "embedding_cache",
        "vector_index",
        *THEME_ASSETS,
        "theme_trends",
    }
    assert set(failed(result)) == {"raw_documents/partition_not_empty"}
    tables = DeltaTables(settings.tables_path)
    for name, schema in [
        ("raw_documents", DOCUMENTS),
        ("chunks", CHUNKS),
        ("embeddings", EMBEDDINGS),
        ("theme_assignments", THEME_ASSIGNMENTS),
    ]:
        assert tables.read_partition(name, quiet_day, schema).height == 0, name
    # No window ends on a day without documents: the latest is the latest day with data.
    latest = themes(settings=settings)
    assert latest and latest[0].window[1] == DAYS[-1]
