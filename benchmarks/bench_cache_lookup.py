"""Embedding-cache lookups before and after storage maintenance, on one cache, side by side.

    .venv/bin/python benchmarks/bench_cache_lookup.py [--rows 200000] [--appends 1000]
        [--probe 3000] [--dimension 384]

Builds an `embedding_cache` Delta table the way daily runs do (one append per run, `--appends`
of them, `--rows` in all, random unit vectors), then times `DeltaVectorCache.lookup` of
`--probe` keys (half cached, half not; best of 3) on the fragmented table, then again after
`maintain_delta_table` (compaction + vacuum) on the same table. Also prints the files on disk
before and after.

Measured here (2 cores, 200k vectors, 1000 appends, 3000 keys): 1.84 s fragmented, 2.23 s
maintained. Compaction saves files, not lookup time: a lookup of random keys reads the key and
vector columns of the whole table either way, so its cost grows with the cache's rows.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

import numpy as np

from semsearch.storage.delta import DeltaTables
from semsearch.storage.embedding_store import DeltaVectorCache
from semsearch.storage.maintenance import maintain_delta_table
from semsearch.storage.schemas import CACHE_TABLE


def key(i: int, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}{i}".encode()).hexdigest()


def best_lookup(cache: DeltaVectorCache, probe: list[str], expected: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        found = cache.lookup(probe)
        best = min(best, time.perf_counter() - start)
        assert len(found) == expected, (len(found), expected)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--appends", type=int, default=1000)
    parser.add_argument("--probe", type=int, default=3000)
    parser.add_argument("--dimension", type=int, default=384)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        tables = DeltaTables(root)
        cache = DeltaVectorCache(tables, "bench/model", args.dimension)
        rng = np.random.default_rng(0)
        per_append = args.rows // args.appends
        start = time.perf_counter()
        for first in range(0, per_append * args.appends, per_append):
            vectors = rng.standard_normal((per_append, args.dimension)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            cache.store([key(i) for i in range(first, first + per_append)], vectors)
        built = time.perf_counter() - start
        rows = per_append * args.appends
        hits = random.Random(1).sample(range(rows), args.probe // 2)
        probe = [key(i) for i in hits] + [key(i, "miss") for i in range(args.probe - len(hits))]

        fragmented = best_lookup(cache, probe, len(hits))
        report = maintain_delta_table(tables, CACHE_TABLE, retention_hours=0)
        maintained = best_lookup(cache, probe, len(hits))

    print(f"cache: {rows} vectors of {args.dimension} in {args.appends} appends ({built:.0f} s)")
    print(f"lookup of {args.probe} keys ({len(hits)} cached), best of 3:")
    print(f"  fragmented  {report.files_before:>5} files  {fragmented:6.2f} s")
    print(f"  maintained  {report.files_after:>5} files  {maintained:6.2f} s")
    print(f"  ratio maintained/fragmented: {maintained / fragmented:.2f}")
    print(f"  maintenance: {report.seconds:.1f} s, {report.files_vacuumed} files vacuumed")


if __name__ == "__main__":
    main()
