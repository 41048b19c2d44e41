"""Serving throughput and latency: `semsearch serve` on 127.0.0.1 under 1, 8 and 32 clients.

Starts the real server (`semsearch serve`, with 1 and then 2 worker processes: `--workers`) on
a semsearch home that holds an index (the demo's: `SEMSEARCH_HOME=... semsearch demo`), warms
it, then for each search mode and
client count runs closed-loop clients (keep-alive HTTP, one request in flight each) for a bounded
time and prints requests/s, errors and p50/p95/p99 latency. Then the same searches through the
Python API in this process (one thread), for comparison.

Every timed request asks a question not asked before in the run (Banking77's customer messages
from ../shared/datasets, in their own words), so the server's cache of recent query vectors
never answers and every figure includes the query embedding; the fixed warm-up questions below
only load the model and open the tables.

    nice -n 10 .venv/bin/python benchmarks/bench_serve.py --home .semsearch [--seconds 10]

Targets (2 cores): warm single-client hybrid p50 <= 30 ms including the query embedding;
8 clients >= 100 requests/s with no errors.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

from semsearch.config import Settings
from semsearch.core.search_options import MODES
from semsearch.query.searcher import searcher_for
from semsearch.serve.server import one_thread_per_query
from semsearch.testing.live_server import free_port

WARM_UP = [
    "my card payment was declined",
    "I was charged twice for the same purchase",
    "how long does a transfer take",
    "the card I ordered has not arrived",
    "I forgot my passcode",
    "why is there a fee on my top up",
    "exchange rate looks wrong",
    "my account was frozen",
    "cash withdrawal not recognised",
    "can I use apple pay",
    "refund has not shown up",
    "change my personal details",
]


DATA = Path(__file__).resolve().parents[2] / "shared/datasets"


class Questions:
    """Distinct questions, handed out once each across threads (cycling only after all of
    them, far more than the server's cache of recent query vectors holds)."""

    def __init__(self) -> None:
        rows = (DATA / "banking77/docs.jsonl").read_text().splitlines()
        texts = list(dict.fromkeys(json.loads(row)["text"] for row in rows))
        random.Random(0).shuffle(texts)
        self._texts, self._next, self._lock = texts, 0, threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._next += 1
            return self._texts[self._next % len(self._texts)]


def start_server(home: str, port: int, workers: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "SEMSEARCH_HOME": home,
        "HF_HUB_OFFLINE": "1",
        "SEMSEARCH_SERVE_WORKERS": str(workers),
    }
    env.pop("SEMSEARCH_API_TOKEN", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "semsearch.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5).ok:
                return server
        except requests.ConnectionError:
            time.sleep(0.5)
        if server.poll() is not None:
            raise SystemExit("semsearch serve exited before answering")
    server.terminate()
    raise SystemExit("semsearch serve did not answer within 300 s")


def percentiles(latencies: list[float]) -> str:
    if not latencies:
        return "no requests"
    p50, p95, p99 = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    return f"p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  p99 {p99:6.1f} ms"


def load(
    url: str, mode: str, clients: int, seconds: float, questions: Questions
) -> tuple[list[float], int, float]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        session = requests.Session()
        while time.monotonic() < stop:
            params = {"q": questions.next(), "k": 10, "mode": mode}
            started = time.perf_counter()
            try:
                ok = session.get(url + "/api/search", params=params, timeout=60).status_code == 200
            except requests.RequestException:
                ok = False
            latencies[i].append(time.perf_counter() - started)
            errors[i] += not ok

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [x for part in latencies for x in part], sum(errors), time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("SEMSEARCH_HOME", ".semsearch"))
    parser.add_argument("--seconds", type=float, default=10.0, help="per mode and client count")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--workers", default="1,2", help="server processes, compared side by side")
    args = parser.parse_args()
    if not (Path(args.home) / "lancedb").exists():
        raise SystemExit(
            f"no index in {args.home}: run `SEMSEARCH_HOME={args.home} semsearch demo`"
        )
    questions = Questions()
    for workers in [int(w) for w in args.workers.split(",")]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(args.home, port, workers)
        try:
            health = requests.get(url + "/api/health", timeout=30).json()
            print(
                f"\nindex: {health['index_rows']} chunks, version {health['index_version']}, "
                f"last day {health['last_materialized_day']}, model {health['model_id']}"
            )
            for mode in MODES:  # warm every mode's path (in every worker, most likely)
                for query in WARM_UP * workers:
                    requests.get(url + "/api/search", params={"q": query, "mode": mode}, timeout=60)
            print(f"HTTP, {workers} worker(s), {args.seconds:g} s per row, k=10, closed-loop:")
            for mode in MODES:
                for clients in [int(c) for c in args.clients.split(",")]:
                    latencies, errors, elapsed = load(url, mode, clients, args.seconds, questions)
                    print(
                        f"  {mode:8} {clients:3} clients: {len(latencies) / elapsed:7.1f} req/s  "
                        f"errors {errors:4}  {percentiles(latencies)}"
                    )
        finally:
            server.terminate()
            server.wait(timeout=60)

    settings = Settings.from_env({**os.environ, "SEMSEARCH_HOME": args.home})
    searcher = searcher_for(settings)
    one_thread_per_query()  # as the server does
    print("\nPython API (this process, one thread, torch on one thread as served), k=10:")
    for mode in MODES:
        for query in WARM_UP:
            searcher.search(query, 10, mode=mode)
        latencies = []
        stop = time.monotonic() + args.seconds
        while time.monotonic() < stop:
            query = questions.next()
            started = time.perf_counter()
            searcher.search(query, 10, mode=mode)
            latencies.append(time.perf_counter() - started)
        print(
            f"  {mode:8}: {len(latencies) / args.seconds:7.1f} searches/s  {percentiles(latencies)}"
        )


if __name__ == "__main__":
    main()
