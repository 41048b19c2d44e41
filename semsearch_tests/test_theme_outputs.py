"""What themes leave for people: chat labels (through the real loopback server), trends and their
flags, the theme_trends asset, backfill targets, and the window read in batches from Delta."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from semsearch.config import Settings
from semsearch.core.openai import EmbeddingConfigError
from semsearch.core.theme_trends import TrendRule, theme_trends
from semsearch.core.themes import Theme
from semsearch.defs.backfills import submit_backfill
from semsearch.defs.definitions import build_definitions
from semsearch.defs.labels import ThemeLabelResource
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import CHUNKS, EMBEDDINGS, THEME_TRENDS
from semsearch.storage.themes_store import WindowSource
from semsearch.testing.fake_openai_server import FakeOpenAIServer, chat_label
from semsearch_tests.ops_support import DAYS, temp_instance

KEY = "sk-test-theme-labels-0123456789"


def _theme(theme_id: str, keywords: list[str]) -> Theme:
    return Theme(theme_id, keywords, 10, [f"an example about {keywords[0]}"], np.ones(4), 0.5)


@pytest.fixture
def labels(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAIServer() as server:
        settings = Settings(
            theme_label_model="gpt-test",
            theme_label_base_url=server.base_url,
            openai_initial_wait_seconds=0.01,
            openai_max_wait_seconds=0.05,
        )
        yield server, ThemeLabelResource.from_settings(settings)


def _chat_requests(server: FakeOpenAIServer) -> int:
    return sum(r.path.endswith("/chat/completions") for r in server.requests)


def test_labels_come_from_the_chat_model_and_an_unchanged_theme_is_never_relabelled(
    labels, tmp_path
):
    server, resource = labels
    tables = DeltaTables(tmp_path / "tables")
    themes = [_theme("t1", ["card", "arrival", "late"]), _theme("t2", ["pin", "change"])]
    assert resource.label(themes, tables, logging.getLogger("test")) == 2
    assert [t.label for t in themes] == ["Card Arrival", "Pin Change"]
    assert _chat_requests(server) == 2
    again = [_theme("t1", ["card", "arrival", "late"]), _theme("t9", ["pin", "change"])]
    assert resource.label(again, tables, logging.getLogger("test")) == 0  # cached by content
    assert [t.label for t in again] == ["Card Arrival", "Pin Change"]
    changed = [_theme("t1", ["card", "delivery"]), _theme("t2", ["pin", "change"])]
    resource.label(changed, tables, logging.getLogger("test"))
    assert _chat_requests(server) == 3  # only the theme whose keywords changed
    sent = server.requests[0].body
    assert sent["model"] == "gpt-test" and "card, arrival, late" in sent["messages"][-1]["content"]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_failed_or_empty_chat_answer_is_retried_and_the_key_is_never_logged(
    labels, tmp_path, caplog
):
    server, resource = labels
    server.script("503", "empty_answer")
    themes = [_theme("t1", ["refund", "request"])]
    with caplog.at_level(logging.WARNING):
        resource.label(themes, DeltaTables(tmp_path / "tables"), logging.getLogger("test"))
    assert themes[0].label == chat_label("Keywords: refund, request") == "Refund Request"
    assert _chat_requests(server) == 3
    assert "theme label request attempt 1/6 failed (server_error" in caplog.text
    assert KEY not in caplog.text


def test_a_refused_key_stops_labelling_with_one_clear_error(labels, tmp_path):
    server, resource = labels
    server.script("401")
    with pytest.raises(EmbeddingConfigError, match="OPENAI_API_KEY rejected") as error:
        resource.label(
            [_theme("t1", ["refund"])], DeltaTables(tmp_path / "t"), logging.getLogger("test")
        )
    assert KEY not in str(error.value)


def test_labels_are_off_by_default_and_need_no_key():
    resource = ThemeLabelResource.from_settings(Settings())
    themes = [_theme("t1", ["card"])]
    assert resource.label(themes, None, logging.getLogger("test")) == 0
    assert themes[0].label == "" and themes[0].title == "card"


def test_a_rising_theme_is_emerging_and_a_quiet_one_fading():
    first = date(2026, 11, 1)
    rows = []
    for offset in range(10):
        day = first + timedelta(days=offset)
        rising = 1 if offset < 7 else 12  # a new problem in the last three days
        steady, fading = 10, (8 if offset < 7 else 0)
        for theme, count in (("rising", rising), ("steady", steady), ("fading", fading)):
            rows += [(f"{theme}-{offset}-{i}", theme, day) for i in range(count)]
    documents = pl.DataFrame(rows, schema=["doc_id", "theme_id", "document_date"], orient="row")
    trends = theme_trends(documents, first, first + timedelta(days=9), TrendRule(3, 2.0, 5))
    last = trends.filter(pl.col("day") == first + timedelta(days=9))
    flags = {r["theme_id"]: (r["emerging"], r["fading"]) for r in last.iter_rows(named=True)}
    assert flags == {"rising": (True, False), "steady": (False, False), "fading": (False, True)}
    rising = trends.filter(pl.col("theme_id") == "rising")
    assert rising["first_day"][0] == first and rising["last_day"][0] == first + timedelta(days=9)
    assert last.filter(pl.col("theme_id") == "rising")["share"][0] == pytest.approx(12 / 22)
    assert not trends.filter(pl.col("day") < first + timedelta(days=7))["emerging"].any()


def test_theme_trends_are_an_asset_with_a_table_and_a_chart(clean_days):
    settings, results = clean_days
    events = results[DAYS[-1]].get_asset_materialization_events()
    trends = next(
        e.event_specific_data.materialization
        for e in events
        if e.asset_key.path == ["theme_trends"]
    )
    assert trends.metadata["dagster/row_count"].value > 0
    assert "| theme | documents | per day" in trends.metadata["trend_chart"].value
    table = DeltaTables(settings.tables_path).read_partition("theme_trends", DAYS[-1], THEME_TRENDS)
    assert set(table.columns) == set(THEME_TRENDS.names)
    assert set(table["day"].to_list()) == set(DAYS)
    for day, shares in table.group_by("day").agg(pl.col("share").sum()).iter_rows():
        assert shares == pytest.approx(1.0), day


def test_a_backfill_of_two_days_targets_exactly_those_days_of_every_asset(tmp_path):
    settings = Settings(home=str(tmp_path / "home"), partitions_start="2026-10-01")
    defs = build_definitions(settings)
    with temp_instance(tmp_path) as instance:
        backfill_id = submit_backfill(instance, defs, DAYS[:2])
        target = instance.get_backfill(backfill_id).asset_backfill_data.target_subset
        for key in target.asset_keys:
            assert set(target.get_partitions_subset(key).get_partition_keys()) == {
                d.isoformat() for d in DAYS[:2]
            }, key


def test_the_window_is_read_in_batches_of_whole_documents(tmp_path):
    tables = DeltaTables(tmp_path / "tables")
    day = date(2026, 11, 3)
    docs = {f"doc-{i}": 1 + i % 3 for i in range(9)}  # 1 to 3 chunks each
    chunks, vectors = [], []
    for doc_id, count in docs.items():
        for position in range(count):
            chunk_id = f"{doc_id}-{position}"
            chunks.append((chunk_id, doc_id, position, f"{doc_id} part {position}", 3, day))
            vectors.append((chunk_id, doc_id, day, "m", 2, [float(position), 1.0]))
    tables.replace_partition(
        "chunks",
        day,
        pa.Table.from_pylist([dict(zip(CHUNKS.names, c, strict=True)) for c in chunks]),
        CHUNKS,
    )
    tables.replace_partition(
        "embeddings",
        day,
        pa.Table.from_pylist([dict(zip(EMBEDDINGS.names, v, strict=True)) for v in vectors]),
        EMBEDDINGS,
    )
    source = WindowSource(tables, day, day, batch_documents=4, text_chars=100)
    batches = list(source.documents())
    # The day is split by a hash of the id into ceil(9 / 4) parts: about 4 documents each.
    assert len(batches) >= 2 and all(len(b) < len(docs) for b in batches)
    seen = {
        d: (v, t) for b in batches for d, v, t in zip(b.doc_ids, b.vectors, b.texts, strict=True)
    }
    assert sorted(seen) == sorted(docs)
    vector, text = seen["doc-2"]  # three chunks: positions 0, 1, 2
    np.testing.assert_allclose(vector, [0 + 1 + 2, 3.0])  # summed; unit-normed when clustered
    assert text == "doc-2 part 0 doc-2 part 1 doc-2 part 2"
    assert sorted(d for ids in source.doc_ids() for d in ids) == sorted(docs)


FIT_IN_A_FRESH_PROCESS = """
import sys
import numpy as np
from pathlib import Path
from semsearch.core.numba_cache import use_persistent_cache
use_persistent_cache(Path(sys.argv[1]))
from semsearch.core.theme_clustering import ClusterParams, cluster_sample
vectors = np.random.default_rng(0).normal(size=(120, 16)).astype(np.float32)
cluster_sample(vectors, ClusterParams(5, 0.0, 5, 5, 15, 0.9, 0.01))
"""


def test_a_fresh_process_reuses_the_compiled_umap_code():
    import subprocess
    import sys

    # The default cache, shared by every semsearch home of the user: warm after the first run.
    cache = Settings().numba_cache_path

    def fit() -> dict[str, float]:
        subprocess.run(
            [sys.executable, "-c", FIT_IN_A_FRESH_PROCESS, str(cache)], check=True, timeout=600
        )
        return {str(p): p.stat().st_mtime for p in cache.rglob("*") if p.is_file()}

    first = fit()
    assert any("umap" in name and name.endswith(".nbi") for name in first)
    again = fit()  # the second process loads every cached function and compiles none of them
    assert {name: again[name] for name in first} == first


def test_theme_tables_written_by_an_older_version_gain_the_new_columns(tmp_path):
    from semsearch.storage import themes_store
    from semsearch.storage.schemas import THEME_ASSIGNMENTS, THEMES

    tables = DeltaTables(tmp_path / "tables")
    day = date(2026, 11, 3)
    old_themes = pa.schema([f for f in THEMES if f.name in THEMES.names[:8]])
    old_assignments = pa.schema([f for f in THEME_ASSIGNMENTS if f.name != "document_date"])
    row = {"partition_date": day, "theme_id": "t1", "label": "card", "keywords": ["card"]}
    row |= {"size": 1, "representatives": ["x"], "centroid": [1.0, 0.0], "window_start": day}
    tables.replace_partition("themes", day, pa.Table.from_pylist([row], old_themes), old_themes)
    assigned = {"partition_date": day, "chunk_id": "c1", "doc_id": "d1", "theme_id": "t1"}
    assigned["probability"] = 0.9
    tables.replace_partition(
        "theme_assignments", day, pa.Table.from_pylist([assigned], old_assignments), old_assignments
    )
    previous = themes_store.previous_window(tables, day + timedelta(days=1))
    assert previous.themes[0].theme_id == "t1" and previous.fingerprint == ""  # so: refit
    for name, schema in (("themes", THEMES), ("theme_assignments", THEME_ASSIGNMENTS)):
        themes_store.ensure_columns(tables, name, schema)
        assert set(tables.table(name).schema().to_arrow().names) == set(schema.names)
    later = day + timedelta(days=1)
    full = row | {
        "partition_date": later,
        "chunks": 1,
        "threshold": 0.5,
        "label_source": "keywords",
    }
    full |= {"fitted_on": later, "model_fingerprint": "f", "fit_noise_share": 0.0}
    tables.replace_partition("themes", later, pa.Table.from_pylist([full], THEMES), THEMES)
    assert tables.read_partition("themes", later, THEMES).height == 1
    assert tables.read_partition("themes", day, THEMES)["threshold"].to_list() == [None]
