"""The `embeddings` asset through real Dagster runs: cache, retries, dead letters, config errors.

The API is a real HTTP server on 127.0.0.1 (`fake_openai_server`), the tables are real Delta
tables in a temp folder, and every run is a real `dagster.materialize` of the daily assets.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from dagster import DagsterInstance, EnvVar, materialize

from semsearch.config import ENV_PREFIX, Settings
from semsearch.core.embedding import embed_with_cache
from semsearch.core.ids import embedding_cache_key
from semsearch.core.openai import EmbeddingConfigError, OpenAIBackend
from semsearch.defs.checks import QualityResource
from semsearch.defs.definitions import daily_partitions
from semsearch.defs.labels import ThemeLabelResource
from semsearch.defs.resources import EmbeddingResource, PipelineResource, StorageResource
from semsearch.defs.stages import build_pipeline_assets, ingest_landing_files
from semsearch.defs.stages.embeddings import OUTPUT_TABLES
from semsearch.storage.delta import DeltaTables
from semsearch.storage.embedding_cache import CacheStore, LanceVectorCache
from semsearch.storage.embedding_store import dead_letter_count, read_dead_letters
from semsearch.storage.schemas import CHUNKS, DEAD_LETTER_TABLE, EMBEDDINGS
from semsearch.testing.fake_openai_server import FakeOpenAIServer, Fault
from semsearch_tests.conftest import write_jsonl

KEY = "sk-test-embeddings-asset-0123456789-secret"
DIM = 8
PRICE = 0.02  # USD per 1M tokens
DAY1, DAY2 = date(2026, 3, 2), date(2026, 3, 3)
OK_BODIES = {"ok", "missing_item", "extra_item", "duplicate_index", "wrong_dimension", "nan"}
STAGES = ["raw_documents", "chunks", *OUTPUT_TABLES]


@pytest.fixture
def server():
    with FakeOpenAIServer(dimension=DIM) as srv:
        yield srv


@pytest.fixture
def api_settings(settings: Settings, server: FakeOpenAIServer, monkeypatch) -> Settings:
    """The openai backend against the loopback server, with short waits and small batches."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return settings.replace(
        embedding_backend="openai",
        embedding_model="text-embedding-test",
        openai_base_url=server.base_url,
        openai_expected_dimension=DIM,
        openai_timeout_seconds=0.5,
        openai_initial_wait_seconds=0.01,
        openai_max_wait_seconds=0.2,
        openai_max_attempts=3,
        openai_concurrency=2,
        openai_max_inputs_per_request=8,
        openai_price_per_million_tokens=PRICE,
    )


def land(settings: Settings, name: str, records: list[dict], day: date) -> list[dict]:
    docs = [
        {"id": f"{name}-{i}", "text": r["text"], "created_at": f"{day}T12:00:00Z"}
        for i, r in enumerate(records)
    ]
    write_jsonl(settings.landing_path / f"{name}.jsonl", docs)
    return docs


def run_day(settings: Settings, instance: DagsterInstance, day: date, raise_on_error=True):
    """Ingest the landing folder, then materialize the day's documents, chunks, embeddings."""
    resources = {
        "storage": StorageResource.from_settings(settings),
        "pipeline": PipelineResource.from_settings(settings),
        "embedder": EmbeddingResource.from_settings(settings),
        "theme_labels": ThemeLabelResource.from_settings(settings),  # the themes asset's
        "quality": QualityResource.from_settings(settings),
    }
    materialize([ingest_landing_files], resources=resources, instance=instance)
    daily = build_pipeline_assets(daily_partitions(settings), settings.theme_window_days)
    return materialize(
        daily,
        selection=STAGES,
        partition_key=day.isoformat(),
        resources=resources,
        instance=instance,
        raise_on_error=raise_on_error,
    )


def metadata(result, asset: str = "embeddings") -> dict:
    (event,) = [
        e
        for e in result.asset_materializations_for_node("embeddings")
        if e.asset_key.to_user_string() == asset
    ]
    return {k: getattr(v, "value", v) for k, v in event.metadata.items()}


def run_log(instance: DagsterInstance, result) -> str:
    return "\n".join(str(entry) for entry in instance.all_logs(result.run_id))


def tables(settings: Settings) -> DeltaTables:
    return DeltaTables(settings.tables_path)


def day_chunks(settings: Settings, day: date) -> pl.DataFrame:
    return tables(settings).read_partition("chunks", day, CHUNKS)


def day_embeddings(settings: Settings, day: date) -> pl.DataFrame:
    return tables(settings).read_partition("embeddings", day, EMBEDDINGS).sort("chunk_id")


def ok_inputs(requests) -> Counter:
    """How many times each text got a vector back from the server."""
    return Counter(t for r in requests if r.behaviour == "ok" for t in r.inputs)


def server_tokens(requests) -> int:
    # The fake bills every 200 (malformed ones too, as a real API would) at len(bytes)//4 + 1.
    return sum(
        len(t.encode()) // 4 + 1 for r in requests if r.behaviour in OK_BODIES for t in r.inputs
    )


def test_metadata_counts_match_what_the_server_saw(api_settings, server, instance, banking77):
    land(api_settings, "a", banking77[:30], DAY1)
    server.script("500", Fault("429", retry_after_ms=50), "missing_item")
    result = run_day(api_settings, instance, DAY1)

    chunks = day_chunks(api_settings, DAY1)
    texts = chunks["text"].to_list()
    assert ok_inputs(server.requests) == Counter(texts)  # every chunk embedded exactly once
    rows = day_embeddings(api_settings, DAY1)
    assert rows["chunk_id"].to_list() == sorted(chunks["chunk_id"].to_list())
    by_id = dict(zip(chunks["chunk_id"], texts, strict=True))
    for chunk_id, vector in zip(rows["chunk_id"], rows["vector"].to_list(), strict=True):
        np.testing.assert_array_equal(np.array(vector, np.float32), server.vector(by_id[chunk_id]))

    meta = metadata(result)
    assert meta["dagster/row_count"] == meta["chunks"] == len(texts)
    assert meta["model_requests"] == len(server.requests)
    assert meta["retries"] == 3
    assert meta["retry_reasons"] == {"server_error": 1, "rate_limit": 1, "malformed_response": 1}
    assert meta["tokens"] == server_tokens(server.requests)
    assert meta["estimated_cost_usd"] == pytest.approx(meta["tokens"] * PRICE / 1e6, abs=1e-6)
    assert (meta["cache_hits"], meta["cache_misses"]) == (0, len(texts))
    assert meta["texts_requested"] == len(texts)
    assert meta["dead_letters"] == 0 and dead_letter_count(tables(api_settings), DAY1) == 0

    log = run_log(instance, result)  # each retry is in the Dagster run log, with its details
    for reason in ("server_error", "rate_limit", "malformed_response"):
        assert f"({reason}:" in log
    assert "attempt 1/3" in log and "retrying in" in log
    assert KEY not in log


def test_cached_text_is_never_requested_again_across_reruns_and_partitions(
    api_settings, server, instance, banking77
):
    land(api_settings, "a", banking77[:20], DAY1)
    repeated = banking77[:3]  # same text, other documents, another day
    land(api_settings, "b", banking77[100:107] + repeated, DAY2)
    first_run = run_day(api_settings, instance, DAY1)
    first, first_cache = metadata(first_run), metadata(first_run, "embedding_cache")
    before = day_embeddings(api_settings, DAY1)
    sent = len(server.requests)
    assert first_cache["dagster/row_count"] == first["cache_misses"] > 0
    assert first_cache["rows_folded_into_index"] == first_cache["dagster/row_count"]
    assert first_cache["table"].endswith("lancedb/embedding_cache.lance")

    again_run = run_day(api_settings, instance, DAY1)
    again, again_cache = metadata(again_run), metadata(again_run, "embedding_cache")
    assert (again_cache["hits"], again_cache["rows_folded_into_index"]) == (again["cache_hits"], 0)
    assert len(server.requests) == sent  # zero requests for cached text
    assert (again["model_requests"], again["tokens"], again["estimated_cost_usd"]) == (0, 0, 0)
    assert again["cache_hits"] == first["cache_misses"] == again["dagster/row_count"]
    assert day_embeddings(api_settings, DAY1).equals(before)  # same rows, no duplicates

    day2 = metadata(run_day(api_settings, instance, DAY2))
    day1_texts = set(day_chunks(api_settings, DAY1)["text"])
    day2_texts = day_chunks(api_settings, DAY2)["text"].to_list()
    assert day2["cache_hits"] == sum(t in day1_texts for t in day2_texts) >= 3
    assert ok_inputs(server.requests[sent:]) == Counter(
        t for t in day2_texts if t not in day1_texts
    )
    assert max(ok_inputs(server.requests).values()) == 1  # over all runs, each text once
    store = CacheStore(api_settings.lance_path)
    cache = pl.from_arrow(store.dataset().to_table())
    assert cache.height == cache["cache_key"].n_unique() == len(day1_texts | set(day2_texts))
    assert store.unindexed_rows() == 0  # every run folded its vectors into the key index


def test_poison_chunk_alone_is_dead_lettered_then_retried_first_and_recovered(
    api_settings, server, instance, banking77
):
    settings = api_settings.replace(openai_concurrency=1)  # one request at a time: a clear order
    land(settings, "a", banking77[:12], DAY1)
    poison = banking77[5]["text"]
    server.poison(poison)
    meta = metadata(run_day(settings, instance, DAY1))

    chunks = day_chunks(settings, DAY1)
    (poison_id,) = chunks.filter(pl.col("text") == poison)["chunk_id"].to_list()
    (letter,) = read_dead_letters(tables(settings), DAY1).to_dicts()
    assert letter["chunk_id"] == poison_id and letter["partition_date"] == DAY1
    assert letter["error_class"] == "bad_request" and "rejected" in letter["message"]
    assert letter["attempts"] == 1 and letter["first_seen"] == letter["last_seen"]
    assert meta["dead_letters"] == 1 and meta["failures_by_class"] == {"bad_request": 1}
    assert set(day_embeddings(settings, DAY1)["chunk_id"]) == set(chunks["chunk_id"]) - {poison_id}
    assert ok_inputs(server.requests) == Counter(t for t in chunks["text"] if t != poison)

    server.reset()
    server.poison(poison)  # still rejected: only the dead letter is tried, and it stays
    meta = metadata(run_day(settings, instance, DAY1))
    assert [r.inputs for r in server.requests] == [[poison]]
    (again,) = read_dead_letters(tables(settings), DAY1).to_dicts()
    assert again["attempts"] == 2 and again["first_seen"] == letter["first_seen"]
    assert again["last_seen"] > letter["last_seen"]
    assert (meta["dead_letters_retried"], meta["dead_letters_recovered"]) == (1, 0)

    server.reset()  # the server accepts it now; meanwhile the day got new documents
    new_docs = land(settings, "b", banking77[40:44], DAY1)
    meta = metadata(run_day(settings, instance, DAY1))
    assert server.requests[0].inputs[0] == poison  # the dead letter goes first
    new_texts = set(day_chunks(settings, DAY1)["text"]) - set(chunks["text"])
    assert len(new_texts) >= len(new_docs)
    assert ok_inputs(server.requests) == Counter([poison, *new_texts])
    assert read_dead_letters(tables(settings), DAY1).height == 0
    assert dead_letter_count(tables(settings), DAY1) == 0
    assert meta["dead_letters"] == 0 and meta["dead_letters_recovered"] == 1
    assert day_embeddings(settings, DAY1).height == day_chunks(settings, DAY1).height


@pytest.mark.parametrize("refusal", ["401", "quota"])
def test_config_error_fails_the_run_clearly_and_writes_nothing(
    api_settings, server, instance, banking77, refusal
):
    land(api_settings, "a", banking77[:10], DAY1)
    run_day(api_settings, instance, DAY1)
    before = day_embeddings(api_settings, DAY1)
    version = tables(api_settings).version("embeddings")

    land(api_settings, "b", banking77[50:60], DAY1)  # new text, so requests are needed
    server.script(refusal)
    result = run_day(api_settings, instance, DAY1, raise_on_error=False)

    assert not result.success
    failure = result.failure_data_for_node("embeddings")
    expected = "OPENAI_API_KEY rejected" if refusal == "401" else "quota exhausted"
    assert expected in failure.user_failure_data.description
    assert KEY not in run_log(instance, result)
    assert KEY not in str(failure)
    assert tables(api_settings).version("embeddings") == version  # no commit at all
    assert day_embeddings(api_settings, DAY1).equals(before)
    assert not tables(api_settings).exists(DEAD_LETTER_TABLE)


def test_local_backend_goes_through_the_same_cache(settings, instance, banking77, local_backend):
    land(settings, "a", banking77[:15], DAY1)
    first = metadata(run_day(settings, instance, DAY1))
    again = metadata(run_day(settings, instance, DAY1))

    rows = day_embeddings(settings, DAY1)
    assert rows.height == day_chunks(settings, DAY1).height == first["dagster/row_count"]
    assert first["model_id"] == local_backend.model_id and first["dimension"] == 384
    assert first["model_requests"] == 1 and first["cache_misses"] == rows.height
    assert first["estimated_cost_usd"] == 0 and first["tokens"] > 0
    assert (again["model_requests"], again["cache_hits"]) == (0, rows.height)
    norms = np.linalg.norm(np.array(rows["vector"].to_list()), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-4)


def test_vectors_are_cached_per_slice_so_a_failed_run_does_not_pay_twice(server, tmp_path):
    texts = [f"text {i}" for i in range(12)]
    keys = [embedding_cache_key("m", DIM, t) for t in texts]
    cache = LanceVectorCache(CacheStore.open(str(tmp_path / "lancedb")), "m", DIM)
    options = {"base_url": server.base_url, "dimension": DIM, "concurrency": 1}
    with OpenAIBackend("m", KEY, max_inputs_per_request=4, **options) as backend:
        server.script("ok", "ok", "quota")
        with pytest.raises(EmbeddingConfigError):
            embed_with_cache(texts, keys, backend, cache, checkpoint_every=4)
        assert len(cache.lookup(keys)) == 8  # the two slices before the refusal are kept

        server.reset()
        outcome = embed_with_cache(texts, keys, backend, cache, checkpoint_every=4)
    assert [r.inputs for r in server.requests] == [texts[8:]]
    assert (outcome.cache_hits, outcome.texts_requested, outcome.failures) == (8, 4, [])


def test_embedding_api_settings_come_from_env_and_the_key_only_through_envvar(
    server, monkeypatch, tmp_path
):
    env = {
        "SEMSEARCH_HOME": str(tmp_path),
        "SEMSEARCH_EMBEDDING_BACKEND": "openai",
        "SEMSEARCH_EMBEDDING_MODEL": "text-embedding-test",
        "SEMSEARCH_OPENAI_BASE_URL": server.base_url,
        "SEMSEARCH_OPENAI_EXPECTED_DIMENSION": str(DIM),
        "SEMSEARCH_OPENAI_TIMEOUT_SECONDS": "2.5",
        "SEMSEARCH_OPENAI_CONCURRENCY": "3",
        "SEMSEARCH_OPENAI_PRICE_PER_MILLION_TOKENS": "0.13",
    }
    settings = Settings.from_env(env)
    assert (settings.openai_timeout_seconds, settings.openai_concurrency) == (2.5, 3)
    resource = EmbeddingResource.from_settings(settings)
    assert isinstance(resource.openai_api_key, EnvVar)
    assert resource.estimated_cost(2_000_000) == pytest.approx(0.26)

    # Outside a Dagster run (the search API) the EnvVar is read when the backend is built.
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with resource.get_backend() as backend:
        assert backend.embed(["query"]).failures == []
        assert KEY not in repr(backend)
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"

    for name, bad in [("OPENAI_TIMEOUT_SECONDS", "soon"), ("OPENAI_CONCURRENCY", "0")]:
        with pytest.raises(ValueError, match=ENV_PREFIX + name):
            Settings.from_env({**env, ENV_PREFIX + name: bad})


def test_env_example_lists_every_setting_with_its_default():
    lines = (Path(__file__).parents[1] / ".env.example").read_text().splitlines()
    listed = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    for field in dataclasses.fields(Settings):
        assert listed[ENV_PREFIX + field.name.upper()] == str(field.default), field.name


def test_endpoint_down_stops_the_day_fast_keeps_paid_vectors_and_never_pays_twice(
    api_settings, server, instance, banking77
):
    """The first 3 requests succeed, then every request fails: the breaker stops the run within
    a few requests, the 3 batches paid for are cached, and the re-run asks only for the rest."""
    land(api_settings, "a", banking77[:80], DAY1)
    settings = api_settings.replace(openai_concurrency=1, openai_circuit_breaker_failures=4)
    server.script("ok", "ok", "ok", *["503"] * 40)
    started = time.monotonic()
    result = run_day(settings, instance, DAY1, raise_on_error=False)
    assert not result.success and time.monotonic() - started < 60
    assert "looks down: 4 requests in a row failed" in run_log(instance, result)
    assert len(server.requests) == 3 + 4  # no batch spent its whole retry budget
    paid = ok_inputs(server.requests)
    assert sum(paid.values()) == 3 * 8
    assert day_embeddings(settings, DAY1).height == 0  # the day's tables as they were

    server.reset()
    assert run_day(settings, instance, DAY1).success
    again = ok_inputs(server.requests)
    assert not set(again) & set(paid)  # nothing requested twice
    assert day_embeddings(settings, DAY1).height == day_chunks(settings, DAY1).height
