"""Throughput of OpenAIBackend against the loopback fake server: injected faults vs none.

Same texts, same settings, one run each, printed side by side:

    .venv/bin/python benchmarks/bench_openai_faults.py [--texts 4000] [--fault-rate 0.3]

Faults are drawn per request (429 with a short retry-after-ms, 500, 503, dropped connection,
malformed 200s). Timeouts are left out: they would only measure the configured timeout.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from semsearch.core.openai import OpenAIBackend
from semsearch.testing.fake_openai_server import FakeOpenAIServer, Fault

FAULTS = (
    Fault("429", retry_after_ms=50),
    Fault("500"),
    Fault("503"),
    Fault("drop"),
    Fault("missing_item"),
    Fault("nan"),
)


def make_texts(n: int) -> list[str]:
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
    ]
    return [" ".join(words[(i + j) % len(words)] for j in range(20)) + f" #{i}" for i in range(n)]


def run(texts: list[str], fault_rate: float, args: argparse.Namespace) -> dict:
    with FakeOpenAIServer(
        dimension=args.dimension, fault_rate=fault_rate, random_faults=FAULTS
    ) as srv:
        with OpenAIBackend(
            "bench-model",
            "sk-bench",
            base_url=srv.base_url,
            dimension=args.dimension,
            timeout=5.0,
            max_attempts=10,
            initial_wait=0.02,
            max_wait_seconds=0.5,
            concurrency=args.concurrency,
            max_inputs_per_request=args.batch,
        ) as backend:
            start = time.perf_counter()
            result = backend.embed(texts)
            elapsed = time.perf_counter() - start
        seen = len(srv.requests)
    return {
        "fault_rate": fault_rate,
        "seconds": elapsed,
        "inputs_per_s": len(result.indices) / elapsed,
        "embedded": len(result.indices),
        "failures": len(result.failures),
        "requests": result.stats.requests,
        "server_saw": seen,
        "retries": result.stats.retries,
        "reasons": dict(sorted(result.stats.retry_reasons.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32, help="max_inputs_per_request")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--dimension", type=int, default=256)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--verbose", action="store_true", help="show every retry")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR)

    texts = make_texts(args.texts)
    rows = [run(texts, 0.0, args), run(texts, args.fault_rate, args)]
    print(
        f"{len(texts)} texts, batch {args.batch}, concurrency {args.concurrency}, "
        f"dimension {args.dimension}"
    )
    header = (
        "faults",
        "seconds",
        "inputs/s",
        "embedded",
        "failed",
        "requests",
        "server",
        "retries",
    )
    print("".join(f"{h:>10}" for h in header))
    for row in rows:
        cells = (
            f"{row['fault_rate']:.0%}",
            f"{row['seconds']:.2f}",
            f"{row['inputs_per_s']:.0f}",
            row["embedded"],
            row["failures"],
            row["requests"],
            row["server_saw"],
            row["retries"],
        )
        print("".join(f"{c:>10}" for c in cells))
    print(f"retry reasons at {args.fault_rate:.0%}: {rows[1]['reasons']}")
    print(
        "throughput ratio (faults / clean): "
        f"{rows[1]['inputs_per_s'] / rows[0]['inputs_per_s']:.2f}"
    )


if __name__ == "__main__":
    main()
