"""Embedding-cache lookups at 100k, 1M and 10M keys through the product's store, against the old
Delta scan at the smaller sizes, side by side.

    nice .venv/bin/python benchmarks/bench_cache_lookup.py [--sizes 100000,1000000,10000000]
        [--probe 3000] [--dimension 16] [--rows-per-append 100000]
        [--delta-sizes 100000,1000000] [--delta-appends 100] [--delta-dimension 384]
        [--run-rows 1000]

For each size, builds the LanceDB `embedding_cache` table the way runs do (`CacheStore.append`,
one commit per `--rows-per-append` rows, random unit vectors), folds the rows into the key index
as the end of a run does (`fold_in`), then times `LanceVectorCache.lookup` of `--probe` keys
(half cached, half not) on a freshly opened store, as a run opens it: the index pages come cold
from Lance (the files warm in the OS cache); best of 3. The vectors are small (`--dimension`,
default 16) so that a 10M cache builds in minutes: the key lookup is what is measured, and only
the hits' vectors are read. The baseline is the old Delta cache's lookup (a polars `is_in` scan of
the whole table), built in `--delta-appends` appends, at `--delta-sizes`.

Measured here (2 cores shared with two other workers, nice 10; 3000 keys of which 1500 cached,
best of 3; two runs of the whole script, the second in brackets: the machine's load varies):

    keys        lance d=16       delta d=16      lance d=384     delta d=384
    100000    0.040 (0.032) s  0.098 (0.078) s  0.048 (0.059) s  0.48 (0.71) s
    1000000   0.173 (0.229) s  0.388 (0.271) s  0.242 (0.250) s  11.4 (3.63) s
    10000000  1.02  (1.44)  s        -                -                -

    a run's fold-in of 1000 vectors: 0.03 s at 100k keys, 0.4-1.4 s at 1M, 3.3 s at 10M

The BTree lookup no longer reads the vectors of the whole table (at a real model's dimension,
1M keys: 0.25 s against the Delta scan's 3.6-11 s; issue 8 measured ~90 s for the scan at 10M),
and its cost does not depend on the dimension. It does NOT meet "10M within 2x of 100k" (25-45x
here): a BTree page holds 4096 keys, 3000 random keys touch ~2000 of the 2442 pages of a 10M
index (all 25 of a 100k one), and each page costs ~0.5 ms to load cold, so the lookup grows with
the size until pages outnumber the keys asked (about 12M keys for 3000); past that it should
stay near (keys asked) x 0.5 ms, not measured beyond 10M. Splitting the keys over 4 or 16
threads did not help (the page loads are CPU-bound here). Smaller pages (`zone_size` 256 or
64) and an int64 key prefix made the cold lookup no faster. The fold-in rewrites the index, so
it grows with the size too.

Tried later at 10M (3000 keys, fresh dataset, d=16; page loads are ~90% of the time, checking
each loaded page against the whole IN list ~9%): BTREE `zone_size` 65536 / 262144 1.04 / 1.17 s,
BLOOMFILTER ~1.0 s, BITMAP 7.1 s, the table sorted by key with a ZONEMAP 0.85 s, `prewarm_index`
1.29 s. What did work, not built: a stdlib sqlite3 side index (key -> stable Lance row id, the
table created with `enable_stable_row_ids=True`) and `_take_rows(ids, ["vector"])`: 0.038-0.058
s at 10M against 0.015-0.025 s at 100k, a run's fold-in of 1000 vectors 0.1 s at 10M (3.3 s
now); it needs a local POSIX filesystem and a one-off copy of an existing cache.
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
import polars as pl
import pyarrow as pa

from semsearch.storage.delta import DeltaTables
from semsearch.storage.embedding_cache import CacheStore, LanceVectorCache, cache_rows
from semsearch.storage.schemas import CACHE_TABLE, EMBEDDING_CACHE

MODEL = "bench/model"


def key(i: int, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}{i}".encode()).hexdigest()[:32]


def batches(rows: int, per_batch: int, dimension: int, rng: np.random.Generator):
    for first in range(0, rows, per_batch):
        n = min(per_batch, rows - first)
        vectors = rng.standard_normal((n, dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        yield cache_rows([key(i) for i in range(first, first + n)], vectors, MODEL, dimension)


def probe_keys(rows: int, probe: int) -> tuple[list[str], int]:
    hits = random.Random(1).sample(range(rows), probe // 2)
    return [key(i) for i in hits] + [key(i, "miss") for i in range(probe - len(hits))], len(hits)


def best_of_3(lookup, probe: list[str], expected: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        found = lookup(probe)
        best = min(best, time.perf_counter() - start)
        assert len(found) == expected, (len(found), expected)
    return best


def lance_lookup(root: str, rows: int, dimension: int, args) -> tuple[float, float]:
    """Build time and best lookup time of a LanceDB cache of `rows` keys; records the time a
    run's fold-in of `--run-rows` new vectors takes at that size in `FOLD_IN`."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    store = CacheStore.open(f"{root}/lancedb")
    for table in batches(rows, args.rows_per_append, dimension, rng):
        store.append(table)
    store.fold_in()
    built = time.perf_counter() - start
    probe, hits = probe_keys(rows, args.probe)

    def lookup(keys):  # a fresh store and dataset, as each run opens them
        return LanceVectorCache(CacheStore(store.lance_uri), MODEL, dimension).lookup(keys)

    best = best_of_3(lookup, probe, hits)
    (late,) = batches(args.run_rows, args.run_rows, dimension, np.random.default_rng(1))
    fresh = pa.array([key(i, "run") for i in range(args.run_rows)], pa.string())
    store.append(late.set_column(0, "cache_key", fresh))
    start = time.perf_counter()
    assert store.fold_in() == args.run_rows
    FOLD_IN[rows, dimension] = time.perf_counter() - start
    return built, best


FOLD_IN: dict[tuple[int, int], float] = {}


def delta_lookup(tables: DeltaTables, keys: list[str], dimension: int) -> dict:
    """The lookup of the Delta cache this branch replaces: a scan of the whole table."""
    found = (
        tables.scan(CACHE_TABLE, EMBEDDING_CACHE)
        .filter(pl.col("cache_key").is_in(keys))
        .select("cache_key", "vector")
        .unique(subset="cache_key", keep="first")
        .collect()
    )
    vectors = np.stack(found["vector"].to_numpy()) if found.height else np.zeros((0, dimension))
    return dict(zip(found["cache_key"].to_list(), vectors, strict=True))


def delta_baseline(root: str, rows: int, dimension: int, args) -> tuple[float, float]:
    tables = DeltaTables(f"{root}/tables")
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    per_append = max(1, rows // args.delta_appends)
    for table in batches(rows, per_append, dimension, rng):
        tables.append(CACHE_TABLE, table, EMBEDDING_CACHE, partitioned=False)
    built = time.perf_counter() - start
    probe, hits = probe_keys(rows, args.probe)
    return built, best_of_3(lambda k: delta_lookup(tables, k, dimension), probe, hits)


def sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=sizes, default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--delta-sizes", type=sizes, default=[100_000, 1_000_000])
    parser.add_argument("--probe", type=int, default=3000)
    parser.add_argument("--dimension", type=int, default=16)
    # The baseline sizes are also measured at a real model's dimension, both stores: the Delta
    # scan decodes the vectors of every row group holding a hit, so its cost follows it.
    parser.add_argument("--delta-dimension", type=int, default=384)
    parser.add_argument("--rows-per-append", type=int, default=100_000)
    parser.add_argument("--delta-appends", type=int, default=100)
    parser.add_argument("--run-rows", type=int, default=1000, help="vectors a run folds in")
    args = parser.parse_args()

    small, large = args.dimension, args.delta_dimension
    columns = [("lance", small), ("delta", small), ("lance", large), ("delta", large)]
    results: dict[int, dict[tuple[str, int], tuple[float, float]]] = {}
    for rows in sorted(set(args.sizes) | set(args.delta_sizes)):
        results[rows] = {}
        for store, dimension in columns:
            if (store, dimension) == ("lance", small) and rows not in args.sizes:
                continue
            if (store, dimension) != ("lance", small) and rows not in args.delta_sizes:
                continue
            build = lance_lookup if store == "lance" else delta_baseline
            with tempfile.TemporaryDirectory() as root:
                results[rows][store, dimension] = build(root, rows, dimension, args)
            print(
                f"  {rows} keys {store} {dimension}: {results[rows][store, dimension]}",
                file=sys.stderr,
                flush=True,
            )

    print(f"lookup of {args.probe} keys ({args.probe // 2} cached), best of 3, build time in ()")
    names = [f"{store} d={dimension}" for store, dimension in columns]
    print(f"{'keys':>10}" + "".join(f"  {name:>20}" for name in names))

    def cell(result) -> str:
        return "-" if result is None else f"{result[1]:7.3f} s ({result[0]:5.0f} s)"

    for rows, result in results.items():
        print(f"{rows:>10}" + "".join(f"  {cell(result.get(c)):>20}" for c in columns))
    lance_times = {
        rows: r["lance", small][1] for rows, r in results.items() if ("lance", small) in r
    }
    smallest = min(lance_times)
    for rows, seconds in lance_times.items():
        if rows != smallest:
            print(f"lance {rows} / {smallest}: {seconds / lance_times[smallest]:.1f}x")
    print(f"a run's fold-in of {args.run_rows} new vectors into the key index:")
    for (rows, dimension), seconds in sorted(FOLD_IN.items()):
        print(f"  {rows:>10} keys, d={dimension}: {seconds:.2f} s")


if __name__ == "__main__":
    main()
