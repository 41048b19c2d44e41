"""OpenAIBackend against a real loopback HTTP server, through the real `openai` client."""

from __future__ import annotations

import email.utils
import itertools
import logging
import time
from collections import Counter

import numpy as np
import pytest

from semsearch.core.chunking import ChunkSpec, chunk_text
from semsearch.core.embedding import EmbeddingResult
from semsearch.core.openai import (
    EmbeddingConfigError,
    OpenAIBackend,
    RateLimiter,
    Utf8ByteTokenizer,
    retry_after_seconds,
    tokenizer_for,
)
from semsearch.testing.fake_openai_server import FakeOpenAIServer, Fault

KEY = "sk-test-0123456789abcdef-secret"
DIM = 8


@pytest.fixture
def server():
    with FakeOpenAIServer(dimension=DIM) as srv:
        yield srv


@pytest.fixture
def make_backend(server):
    backends: list[OpenAIBackend] = []

    def make(**overrides) -> OpenAIBackend:
        options = {
            "base_url": server.base_url,
            "dimension": DIM,
            "timeout": 0.5,
            "initial_wait": 0.01,
            "max_wait_seconds": 2.0,
            "max_attempts": 4,
            "concurrency": 1,
        }
        options.update(overrides)
        backend = OpenAIBackend(options.pop("model", "text-embedding-test"), KEY, **options)
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        backend.close()


def texts(n: int, prefix: str = "text") -> list[str]:
    return [f"{prefix} {i}" for i in range(n)]


def assert_embedded(result: EmbeddingResult, inputs: list[str], server: FakeOpenAIServer) -> None:
    """Every input embedded, in index order, with exactly the server's vectors."""
    assert result.indices == list(range(len(inputs)))
    assert result.failures == []
    assert result.vectors.dtype == np.float32
    assert result.vectors.shape == (len(inputs), DIM)
    expected = np.stack([server.vector(t) for t in inputs])
    np.testing.assert_array_equal(result.vectors, expected)


def ok_inputs(server: FakeOpenAIServer) -> Counter:
    return Counter(t for r in server.requests if r.behaviour == "ok" for t in r.inputs)


def test_every_input_embedded_exactly_once(server, make_backend):
    inputs = texts(10)
    backend = make_backend(max_inputs_per_request=4, concurrency=3)
    result = backend.embed(inputs)
    assert_embedded(result, inputs, server)
    assert ok_inputs(server) == Counter(inputs)
    assert result.stats.requests == len(server.requests) == 3
    assert result.stats.retries == 0
    assert result.stats.tokens == sum(len(t.encode()) // 4 + 1 for t in inputs)


def test_empty_call_sends_nothing(server, make_backend):
    result = make_backend().embed([])
    assert result.indices == [] and result.vectors.shape == (0, DIM)
    assert server.requests == []


def test_retry_after_seconds_is_honoured_and_logged(server, make_backend, caplog):
    server.script(Fault("429", retry_after="1"))
    with caplog.at_level(logging.WARNING, logger="semsearch.core.openai"):
        result = make_backend().embed(texts(3))
    assert_embedded(result, texts(3), server)
    first, second = server.requests
    assert second.time - first.time >= 1.0
    assert result.stats.retries == 1
    assert result.stats.retry_reasons == Counter(rate_limit=1)
    assert result.stats.requests == 2
    assert "attempt 1/4" in caplog.text and "rate_limit" in caplog.text
    assert KEY not in caplog.text


def test_retry_after_ms_is_honoured(server, make_backend):
    server.script(Fault("429", retry_after_ms=400))
    make_backend().embed(texts(2))
    first, second = server.requests
    assert second.time - first.time >= 0.4


def test_retry_after_is_capped_by_max_wait(server, make_backend):
    server.script(Fault("429", retry_after="30"))
    result = make_backend(max_wait_seconds=0.3).embed(texts(2))
    first, second = server.requests
    assert 0.3 <= second.time - first.time < 2.0
    assert result.failures == []


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= retry_after_seconds({"retry-after": future}) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault("500"), "server_error"),
        (Fault("503"), "server_error"),
        (Fault("drop"), "connection"),
        (Fault("slow", sleep=1.5), "timeout"),
    ],
)
def test_transient_errors_are_retried(server, make_backend, fault, reason):
    inputs = texts(3)
    server.script(fault)
    result = make_backend().embed(inputs)
    assert_embedded(result, inputs, server)
    assert result.stats.retry_reasons == Counter({reason: 1})
    assert result.stats.requests == len(server.requests) == 2
    assert ok_inputs(server) == Counter(inputs)


@pytest.mark.parametrize(
    "kind",
    [
        "missing_item",
        "extra_item",
        "duplicate_index",
        "wrong_dimension",
        "nan",
        "zero_vector",
        "garbage",
    ],
)
def test_malformed_answers_are_retried_never_returned(server, make_backend, kind):
    inputs = texts(3)
    server.script(kind)
    result = make_backend().embed(inputs)
    # Equal to the server's good vectors: nothing from the malformed answer leaked through.
    assert_embedded(result, inputs, server)
    assert [r.behaviour for r in server.requests] == [kind, "ok"]
    assert result.stats.retry_reasons == Counter(malformed_response=1)


def test_literal_nan_in_float_json_is_rejected():
    # A server that ignores encoding_format and sends float lists, one of them with a bare NaN.
    with FakeOpenAIServer(dimension=DIM, float_only=True) as srv:
        srv.script("nan")
        with OpenAIBackend("m", KEY, base_url=srv.base_url, dimension=DIM, initial_wait=0.01) as be:
            result = be.embed(texts(2))
        assert_embedded(result, texts(2), srv)
        assert result.stats.retry_reasons == Counter(malformed_response=1)


def test_poison_input_is_isolated_by_bisection(server, make_backend):
    inputs = texts(8)
    inputs[5] = "POISON"
    server.poison("POISON")
    result = make_backend().embed(inputs)
    good = [i for i in range(8) if i != 5]
    assert result.indices == good
    np.testing.assert_array_equal(
        result.vectors, np.stack([server.vector(inputs[i]) for i in good])
    )
    [failure] = result.failures
    assert (failure.index, failure.error_class, failure.attempts) == (5, "bad_request", 1)
    assert "Invalid input" in failure.message
    # 8 -> 4+4 -> (2+2) -> (1+1): one request per node on the poison's path plus siblings.
    assert len(server.requests) == result.stats.requests == 7
    assert result.stats.retries == 0
    assert ok_inputs(server) == Counter(inputs[i] for i in good)


def test_single_input_400_is_not_retried(server, make_backend):
    server.poison("POISON")
    result = make_backend().embed(["POISON"])
    assert len(server.requests) == 1
    assert [(f.index, f.error_class) for f in result.failures] == [(0, "bad_request")]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("401", "OPENAI_API_KEY rejected by"),
        ("403", "permission denied"),
        ("404", "model 'text-embedding-test' not found at"),
        ("quota", "add credit or raise the limit"),
    ],
)
def test_config_errors_abort_without_retry(server, make_backend, caplog, kind, expected):
    server.script(kind)
    backend = make_backend(max_inputs_per_request=2)
    with pytest.raises(EmbeddingConfigError) as excinfo:
        backend.embed(texts(6))  # three batches; only the first is ever sent
    message = str(excinfo.value)
    assert expected in message
    assert KEY not in message and KEY not in repr(excinfo.value) and KEY not in caplog.text
    assert len(server.requests) == 1


def test_400_blaming_a_parameter_is_a_config_error_not_bisected(server, make_backend):
    server.script("bad_param")
    with pytest.raises(EmbeddingConfigError, match="rejected parameter 'dimensions'"):
        make_backend().embed(texts(8))
    assert len(server.requests) == 1


def test_config_error_stops_concurrent_batches(server, make_backend):
    server.script("401")
    backend = make_backend(max_inputs_per_request=1, concurrency=2)
    with pytest.raises(EmbeddingConfigError):
        backend.embed(texts(20))
    assert len(server.requests) <= 3  # at most the ones already in flight


def test_exhausted_attempts_become_failures(server, make_backend):
    server.script("500", "500", "500")
    result = make_backend(max_attempts=3, max_inputs_per_request=2).embed(texts(4))
    assert result.indices == [2, 3]
    assert [(f.index, f.error_class, f.attempts) for f in result.failures] == [
        (0, "server_error", 3),
        (1, "server_error", 3),
    ]
    assert result.stats.requests == len(server.requests) == 4
    assert result.stats.retries == 2


def test_exhausted_malformed_answers_become_failures(server, make_backend):
    server.script("nan", "nan")
    result = make_backend(max_attempts=2).embed(texts(2))
    assert result.indices == [] and result.vectors.shape == (0, DIM)
    assert {f.error_class for f in result.failures} == {"malformed_response"}


def test_max_total_seconds_bounds_retries(server, make_backend):
    server.script(*["503"] * 50)
    start = time.monotonic()
    result = make_backend(max_attempts=50, max_total_seconds=0.5, initial_wait=0.1).embed(["x"])
    # Without the budget, 50 attempts backing off from 0.1 s would take minutes; the margin
    # over 0.5 s is for a loaded CI machine.
    assert time.monotonic() - start < 5
    [failure] = result.failures
    assert failure.error_class == "server_error"
    assert failure.attempts == len(server.requests) < 50


def test_batches_respect_input_and_token_limits(server, make_backend):
    inputs = ["a", "bb", "ccc", "dddd", "e", "ff", "g", "h", "iiiiiiiii"]
    backend = make_backend(max_inputs_per_request=3, max_tokens_per_request=6)
    result = backend.embed(inputs)
    assert_embedded(result, inputs, server)
    batches = [r.inputs for r in server.requests]
    assert all(len(b) <= 3 for b in batches)
    assert all(sum(len(t.encode()) for t in b) <= 6 for b in batches if len(b) > 1)
    assert [t for b in batches for t in b] == inputs
    assert batches == [["a", "bb", "ccc"], ["dddd", "e"], ["ff", "g", "h"], ["iiiiiiiii"]]


def test_over_long_and_empty_inputs_are_not_sent(server, make_backend):
    inputs = ["short", "much too long for the limit", "", "ok"]
    result = make_backend(max_input_tokens=10).embed(inputs)
    assert result.indices == [0, 3]
    assert [(f.index, f.error_class, f.attempts) for f in result.failures] == [
        (1, "input_too_long", 0),
        (2, "empty_input", 0),
    ]
    assert [r.inputs for r in server.requests] == [["short", "ok"]]


def test_requests_per_minute_spaces_requests(server, make_backend):
    # 240/min = 4/s with a one-second burst: 4 immediate, then one every 0.25 s.
    backend = make_backend(requests_per_minute=240, max_inputs_per_request=1, concurrency=2)
    backend.embed(texts(8))
    times = sorted(r.time for r in server.requests)
    assert times[-1] - times[0] >= 0.9
    assert min(b - a for a, b in itertools.pairwise(times[4:])) >= 0.2


def test_tokens_per_minute_budget():
    limiter = RateLimiter(tokens_per_minute=600)  # 10 tokens/s, bucket of 10
    start = time.monotonic()
    limiter.acquire(10)
    limiter.acquire(5)
    assert time.monotonic() - start >= 0.45


def test_dimensions_parameter_and_model_id(server, make_backend):
    backend = make_backend(model="text-embedding-3-small", dimensions=4, dimension=None)
    assert backend.model_id == "openai/text-embedding-3-small@4"
    assert backend.dimension == 4
    result = backend.embed(["a", "b"])
    np.testing.assert_array_equal(result.vectors[0], server.vector("a", 4))
    assert server.requests[0].body["dimensions"] == 4

    plain = make_backend(model="text-embedding-3-small", dimension=None)
    assert (plain.model_id, plain.dimension, plain.normalized) == (
        "openai/text-embedding-3-small",
        1536,
        True,
    )
    assert make_backend(model="text-embedding-3-large", dimension=None).dimension == 3072
    server.reset()
    make_backend().embed(["a"])
    assert "dimensions" not in server.requests[0].body
    with pytest.raises(ValueError, match="dimension"):
        OpenAIBackend("some-other-model", KEY, base_url=server.base_url)


def test_azure_routing(server, make_backend):
    backend = make_backend(
        model="my-deployment", base_url=server.root_url, azure_api_version="2024-10-21"
    )
    assert_embedded(backend.embed(["a"]), ["a"], server)
    [request] = server.requests
    assert request.path == "/openai/deployments/my-deployment/embeddings"
    assert "api-version=2024-10-21" in request.query
    assert request.headers["api-key"] == KEY


def test_unknown_model_counts_bytes_and_says_so(make_backend, caplog):
    tokenizer_for.cache_clear()
    with caplog.at_level(logging.WARNING, logger="semsearch.core.openai"):
        backend = make_backend(model="my-local-model")
    assert "UTF-8 bytes" in caplog.text
    text = "héllo €"
    [count] = backend.count_tokens([text])
    assert count == len(text.encode("utf-8")) == len(backend.token_offsets(text))
    assert Utf8ByteTokenizer().count_tokens(["", "ab"]) == [0, 2]


def test_openai_chunks_are_sized_in_the_models_own_tokens(make_backend):
    """text-embedding-3-* chunks count cl100k tokens (shipped offline), not bytes."""
    backend = make_backend(model="text-embedding-3-small", dimension=None, dimensions=DIM)
    assert backend.count_tokens(["hello world", "héllo €"]) == [2, 4]
    text = " ".join(f"Ticket {i} says the card never arrived." for i in range(300))
    chunks = chunk_text(text, ChunkSpec(size=200, overlap=0), backend)
    counts = backend.count_tokens([c.text for c in chunks])
    assert max(counts) <= 200 and sum(counts) >= 0.9 * backend.count_tokens([text])[0]
    # ~4 bytes per token: byte-sized chunks would have been four times as many.
    assert len(chunks) <= len(text.encode()) // 200 // 3
    spans = backend.token_offsets(text)
    assert len(spans) == backend.count_tokens([text])[0] and spans[-1][1] == len(text)


def test_tokenizer_override(make_backend):

    class Words:
        def count_tokens(self, texts):
            return [len(t.split()) for t in texts]

        def token_offsets(self, text):
            return [(0, len(text))]

    custom = make_backend(tokenizer=Words(), max_input_tokens=2)
    result = custom.embed(["two words", "three words here"])
    assert [f.index for f in result.failures] == [1]


def test_key_never_in_repr(make_backend):
    assert KEY not in repr(make_backend())
