"""A real HTTP server speaking the OpenAI `POST /v1/embeddings` and `POST /v1/chat/completions`
protocols, scriptable per request.

Each request consumes one scripted `Fault` from a queue (falling back to "ok", or to a random
fault when `fault_rate` is set); a "poison" input triggers a 400 on every request containing it.
Every request is recorded (monotonic time received, inputs, behaviour used) so tests can check
batching, retries and waits from the server's side of the wire.

Vectors are deterministic: `FakeOpenAIServer.vector(text, dimension)` is what "ok" returns. A chat
answer is too: `chat_label(prompt)`, built from the prompt's first keywords.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

import numpy as np

KINDS = (
    "ok",
    "429",  # rate limit; Fault.retry_after / retry_after_ms set the headers
    "quota",  # 429 with code insufficient_quota
    "500",
    "503",
    "drop",  # close the socket without any response
    "slow",  # sleep Fault.sleep seconds before answering (longer than the client timeout)
    "missing_item",
    "extra_item",
    "duplicate_index",
    "wrong_dimension",
    "nan",
    "zero_vector",
    "garbage",  # 200 with a body that is not JSON
    "400",
    "bad_param",  # 400 blaming a request parameter (param="dimensions"), not an input
    "401",
    "403",
    "404",
    "empty_answer",  # chat: 200 whose message has no content
)


@dataclass(frozen=True)
class Fault:
    kind: str
    retry_after: str | None = None  # Retry-After header value (seconds or HTTP date)
    retry_after_ms: int | None = None
    sleep: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass
class RecordedRequest:
    time: float  # time.monotonic() when the request body was read
    path: str
    query: str
    headers: dict[str, str]
    inputs: list[str]
    body: dict[str, Any]
    behaviour: str


@dataclass
class _State:
    dimension: int
    fault_rate: float
    random_faults: tuple[Fault, ...]
    rng: random.Random
    float_only: bool
    queue: collections.deque = field(default_factory=collections.deque)
    poison: set[str] = field(default_factory=set)
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    connections: set[socket.socket] = field(default_factory=set)


def fake_vector(text: str, dimension: int) -> np.ndarray:
    """The deterministic unit vector the server returns for `text`."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimension)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean

    def setup(self) -> None:
        super().setup()
        with self.server.state.lock:
            self.server.state.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.state.lock:
            self.server.state.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_POST(self) -> None:
        state = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        received = time.monotonic()
        url = urlsplit(self.path)
        chat = url.path.endswith("/chat/completions")
        if not (chat or url.path.endswith("/embeddings")):
            self._send_json(404, _error_body(f"no route {url.path}", "invalid_request_error", None))
            return
        payload = json.loads(body)
        if chat:
            inputs = [m.get("content", "") for m in payload.get("messages", [])]
        else:
            inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
        fault = self._choose(inputs)
        with state.lock:
            state.requests.append(
                RecordedRequest(
                    time=received,
                    path=url.path,
                    query=url.query,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    inputs=list(inputs),
                    body=payload,
                    behaviour=fault.kind,
                )
            )
        self._respond(fault, payload, inputs)

    def _choose(self, inputs: list[str]) -> Fault:
        state = self.server.state
        with state.lock:
            if state.poison.intersection(inputs):
                return Fault("400")
            if state.queue:
                return state.queue.popleft()
            if state.fault_rate and state.rng.random() < state.fault_rate:
                return state.rng.choice(state.random_faults)
        return Fault("ok")

    def _respond(self, fault: Fault, payload: dict, inputs: list[str]) -> None:
        kind = fault.kind
        if kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "slow":
            if self.server.state.stopping.wait(fault.sleep):
                return
            kind = "ok"
        if kind in _ERRORS:
            status, body = _ERRORS[kind](self, payload, inputs)
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            if fault.retry_after_ms is not None:
                headers["retry-after-ms"] = str(fault.retry_after_ms)
            self._send_json(status, body, headers)
            return
        if kind == "garbage":
            self._send_raw(200, b"<html>upstream proxy error</html>", "application/json")
            return
        if "messages" in payload:
            self._send_json(200, _chat_answer(kind, payload, inputs))
            return
        self._send_json(200, self._embeddings(kind, payload, inputs))

    def _embeddings(self, kind: str, payload: dict, inputs: list[str]) -> dict:
        state = self.server.state
        dimension = int(payload.get("dimensions") or state.dimension)
        vectors = [fake_vector(text, dimension) for text in inputs]
        items = [[i, v] for i, v in enumerate(vectors)]
        if kind == "missing_item" and items:
            items.pop(len(items) // 2)
        elif kind == "extra_item":
            items.append([len(items), fake_vector("extra", dimension)])
        elif kind == "duplicate_index" and len(items) > 1:
            items[-1][0] = items[0][0]
        elif kind == "wrong_dimension" and items:
            items[0][1] = items[0][1][:-1]
        elif kind == "nan" and items:
            items[0][1] = items[0][1].copy()
            items[0][1][0] = np.nan
        elif kind == "zero_vector" and items:
            items[0][1] = np.zeros(dimension, dtype=np.float32)
        random.Random(len(state.requests)).shuffle(items)  # clients must match by `index`
        as_base64 = payload.get("encoding_format") == "base64" and not state.float_only
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, as_base64)}
            for i, v in items
        ]
        tokens = sum(len(text.encode("utf-8")) // 4 + 1 for text in inputs)
        return {
            "object": "list",
            "data": data,
            "model": payload.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _send_json(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        # allow_nan: the literal NaN is what a broken upstream would send; Python's json parses it.
        self._send_raw(
            status, json.dumps(body, allow_nan=True).encode(), "application/json", headers
        )

    def _send_raw(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (e.g. timed out) first


def chat_label(prompt: str) -> str:
    """The deterministic label the server answers: the prompt's first two keywords, titled."""
    for line in prompt.splitlines():
        if line.startswith("Keywords:"):
            words = [w.strip() for w in line.removeprefix("Keywords:").split(",") if w.strip()]
            return " ".join(words[:2]).title() or "Untitled"
    return "Untitled"


def _chat_answer(kind: str, payload: dict, inputs: list[str]) -> dict:
    content = "" if kind == "empty_answer" else chat_label(inputs[-1] if inputs else "")
    tokens = sum(len(text) // 4 + 1 for text in inputs)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": payload.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": tokens, "completion_tokens": 3, "total_tokens": tokens + 3},
    }


def _encode(vector: np.ndarray, as_base64: bool) -> str | list[float]:
    if as_base64:
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return [float(x) for x in vector]


def _bad_request(handler: _Handler, payload: dict, inputs: list[str]) -> tuple[int, dict]:
    poisoned = [i for i, text in enumerate(inputs) if text in handler.server.state.poison]
    message = f"Invalid input at index {poisoned[0] if poisoned else 0}: content rejected."
    return 400, _error_body(message, "invalid_request_error", None, "input")


def _unauthorized(handler: _Handler, payload: dict, inputs: list[str]) -> tuple[int, dict]:
    # Echo the full key, as a careless proxy would: the client must not repeat it.
    key = handler.headers.get("Authorization", "").removeprefix("Bearer ")
    message = f"Incorrect API key provided: {key}."
    return 401, _error_body(message, "invalid_request_error", "invalid_api_key")


_ERRORS = {
    "429": lambda h, p, i: (
        429,
        _error_body("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    ),
    "quota": lambda h, p, i: (
        429,
        _error_body(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
    ),
    "500": lambda h, p, i: (500, _error_body("The server had an error", "server_error", None)),
    "503": lambda h, p, i: (503, _error_body("The engine is overloaded", "server_error", None)),
    "400": _bad_request,
    "bad_param": lambda h, p, i: (
        400,
        _error_body(
            "This model does not support specifying dimensions.",
            "invalid_request_error",
            None,
            "dimensions",
        ),
    ),
    "401": _unauthorized,
    "403": lambda h, p, i: (
        403,
        _error_body("Project does not have access to this model", "invalid_request_error", None),
    ),
    "404": lambda h, p, i: (
        404,
        _error_body(
            f"The model `{p.get('model')}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
    ),
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class FakeOpenAIServer:
    """Loopback OpenAI-compatible embeddings server; use as a context manager or start()/stop()."""

    def __init__(
        self,
        dimension: int = 8,
        fault_rate: float = 0.0,
        random_faults: Iterable[Fault | str] = ("500", "503", "drop", "missing_item"),
        seed: int = 0,
        float_only: bool = False,
    ) -> None:
        self._state = _State(
            dimension=dimension,
            fault_rate=fault_rate,
            random_faults=tuple(_as_fault(f) for f in random_faults),
            rng=random.Random(seed),
            float_only=float_only,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def root_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def dimension(self) -> int:
        return self._state.dimension

    def vector(self, text: str, dimension: int | None = None) -> np.ndarray:
        return fake_vector(text, dimension or self._state.dimension)

    def script(self, *faults: Fault | str) -> None:
        """Queue behaviours, consumed one per request in arrival order."""
        with self._state.lock:
            self._state.queue.extend(_as_fault(f) for f in faults)

    def set_fault_rate(self, rate: float, faults: Iterable[Fault | str] | None = None) -> None:
        """From now on, answer a share `rate` of unscripted requests with a random fault."""
        with self._state.lock:
            self._state.fault_rate = rate
            if faults is not None:
                self._state.random_faults = tuple(_as_fault(f) for f in faults)

    def poison(self, *texts: str) -> None:
        """Any request containing one of `texts` gets a 400, every time."""
        with self._state.lock:
            self._state.poison.update(texts)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    @property
    def pending(self) -> int:
        with self._state.lock:
            return len(self._state.queue)

    def reset(self) -> None:
        with self._state.lock:
            self._state.requests.clear()
            self._state.queue.clear()
            self._state.poison.clear()

    def start(self) -> FakeOpenAIServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self._state
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._state.lock:
            open_connections = list(self._state.connections)
        for conn in open_connections:  # keep-alive handlers would otherwise block on read
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _as_fault(fault: Fault | str) -> Fault:
    return fault if isinstance(fault, Fault) else Fault(fault)
