"""The LanceDB embedding cache on real Lance tables: exact vectors back, misses absent, rows
appended after the key index found, two writers at once, duplicates, the import of an old Delta
cache, and maintenance folding rows into the index."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from semsearch.config import Settings
from semsearch.storage.delta import DeltaTables
from semsearch.storage.embedding_cache import (
    INDEX_NAME,
    CacheStore,
    LanceVectorCache,
    cache_rows,
)
from semsearch.storage.schemas import CACHE_TABLE, EMBEDDING_CACHE

DIM = 4


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


@pytest.fixture
def store(tmp_path) -> CacheStore:
    return CacheStore.open(str(tmp_path / "lancedb"))


def test_lookup_returns_exactly_the_stored_vectors_and_no_misses(store):
    cache = LanceVectorCache(store, "m", DIM)
    keys, stored = [f"k{i}" for i in range(10)], vectors(10)
    cache.store(keys, stored)
    found = cache.lookup(["k3", "k0", "absent", "k9"])
    assert set(found) == {"k0", "k3", "k9"}
    for key in found:
        np.testing.assert_array_equal(found[key], stored[int(key[1:])])
    assert cache.lookup([]) == {} and cache.lookup(["absent"]) == {}
    assert cache.count_rows() == 10


def test_the_cache_is_a_lancedb_table_beside_the_index(store):
    LanceVectorCache(store, "m", DIM).store(["a"], vectors(1))
    table = lancedb.connect(store.lance_uri).open_table(CACHE_TABLE)
    assert table.count_rows() == 1 and table.schema.names == EMBEDDING_CACHE.names


def test_rows_appended_after_the_index_are_found_then_folded_in(store):
    cache = LanceVectorCache(store, "m", DIM)
    cache.store([f"old{i}" for i in range(5)], vectors(5))
    assert store.fold_in() == 5 and store.unindexed_rows() == 0
    late = vectors(3, seed=1)
    cache.store(["new0", "new1", "new2"], late)
    assert store.unindexed_rows() == 3  # scanned flat until folded in
    found = cache.lookup(["old1", "new2"])
    np.testing.assert_array_equal(found["new2"], late[2])
    assert store.fold_in() == 3 and store.unindexed_rows() == 0
    assert set(cache.lookup(["old4", "new0"])) == {"old4", "new0"}
    plan = store.dataset().scanner(filter="cache_key = 'new0'").explain_plan()
    assert f"@{INDEX_NAME}" in plan  # answered by the BTree, not a scan


def test_a_key_stored_twice_is_returned_once_its_earliest_vector(store):
    cache = LanceVectorCache(store, "m", DIM)
    first, second = vectors(1, seed=1), vectors(1, seed=2)
    cache.store(["dup"], first)
    store.fold_in()
    cache.store(["dup"], second)  # another run raced on the same text
    found = cache.lookup(["dup"])
    assert list(found) == ["dup"]
    np.testing.assert_array_equal(found["dup"], first[0])
    assert store.count_rows() == 2


def _write(uri: str, writer: int, batches: int) -> None:
    cache = LanceVectorCache(CacheStore(uri), "m", DIM)
    for batch in range(batches):
        keys = [f"w{writer}-{batch}-{i}" for i in range(5)]
        cache.store(keys, vectors(5, seed=writer * 100 + batch))


def test_two_processes_appending_at_once_both_keep_every_row(store):
    spawn = multiprocessing.get_context("spawn")  # lance's threads do not survive a fork
    writers = [spawn.Process(target=_write, args=(store.lance_uri, w, 15)) for w in range(2)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
    assert [p.exitcode for p in writers] == [0, 0]
    assert store.count_rows() == 2 * 15 * 5
    cache = LanceVectorCache(store, "m", DIM)
    keys = [f"w{w}-{b}-{i}" for w in range(2) for b in range(15) for i in range(5)]
    assert len(cache.lookup(keys)) == len(keys)


def test_a_home_with_an_old_delta_cache_gets_it_imported_once(tmp_path, monkeypatch):
    settings = Settings(home=str(tmp_path / "home"))
    tables = DeltaTables(settings.tables_path)
    old = vectors(7)
    for part in (range(0, 4), range(4, 7)):  # two appends, as two runs wrote them
        rows = cache_rows([f"k{i}" for i in part], old[list(part)], "m", DIM)
        tables.append(CACHE_TABLE, rows, EMBEDDING_CACHE, partitioned=False)
    monkeypatch.setattr("semsearch.storage.embedding_cache.IMPORT_BATCH_ROWS", 3)  # streamed

    store = CacheStore.open(settings.lance_path, legacy=tables)
    found = LanceVectorCache(store, "m", DIM).lookup([f"k{i}" for i in range(7)])
    assert len(found) == 7
    for i in range(7):
        np.testing.assert_array_equal(found[f"k{i}"], old[i])
    assert store.unindexed_rows() == 0  # the import is indexed at once

    LanceVectorCache(store, "m", DIM).store(["new"], vectors(1))
    again = CacheStore.open(settings.lance_path, legacy=tables)  # the next run: no re-import
    assert again.count_rows() == 8
    assert tables.count_rows(CACHE_TABLE, EMBEDDING_CACHE) == 7  # the Delta folder is untouched


def test_an_unreadable_old_delta_cache_is_named_and_nothing_is_created(tmp_path):
    settings = Settings(home=str(tmp_path / "home"))
    tables = DeltaTables(settings.tables_path)
    rows = cache_rows(["k"], vectors(1), "m", DIM)
    tables.append(CACHE_TABLE, rows, EMBEDDING_CACHE, partitioned=False)
    log = settings.tables_path / CACHE_TABLE / "_delta_log"
    max(log.glob("*.json")).write_text("{not json")
    with pytest.raises(RuntimeError, match="Delta embedding cache .* cannot be read"):
        CacheStore.open(settings.lance_path, legacy=tables)
    assert not CacheStore(settings.lance_path).exists()


def test_maintenance_compacts_and_folds_every_row_into_the_index(store):
    cache = LanceVectorCache(store, "m", DIM)
    for run in range(4):
        cache.store([f"r{run}-{i}" for i in range(3)], vectors(3, seed=run))
    report = store.maintain(cleanup_older_than=timedelta(0))
    assert (report.rows, report.unindexed_rows_before, report.unindexed_rows_after) == (12, 12, 0)
    assert report.fragments_after < report.fragments_before == 4
    assert report.versions_after == 1 < report.versions_before
    assert len(cache.lookup([f"r{run}-0" for run in range(4)])) == 4


def test_vectors_of_another_length_under_a_key_are_refused_by_name(store):
    store.append(cache_rows(["short"], np.ones((1, 2), np.float32), "m", 2))
    with pytest.raises(ValueError, match="not 4"):
        LanceVectorCache(store, "m", DIM).lookup(["short"])


def test_an_index_table_named_like_the_cache_is_refused(tmp_path):
    with pytest.raises(ValueError, match="SEMSEARCH_LANCE_TABLE='embedding_cache'"):
        Settings.from_env({"SEMSEARCH_HOME": str(tmp_path), "SEMSEARCH_LANCE_TABLE": CACHE_TABLE})


def test_an_empty_store_answers_lookups_and_counts(store):
    assert store.count_rows() == 0
    assert LanceVectorCache(store, "m", DIM).lookup(["a", "b"]) == {}
    assert store.lookup(["a"]).schema == pa.schema(
        [("cache_key", pa.string()), ("vector", pa.list_(pa.float32()))]
    )
