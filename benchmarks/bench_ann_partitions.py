"""How the ANN index's partitioning trades latency for recall, through the product's index.

    nice .venv/bin/python benchmarks/bench_ann_partitions.py [--rows 1000000]
        [--partition-rows 4096,1048576] [--ef 128,256,512] [--queries 200]
        [--work /tmp/bench_scale]

Writes `--rows` rows (real MiniLM vectors of `bench_search_scale.py`'s texts plus its noise,
spread over 10 days) through `VectorIndex.replace_partition`, builds the IVF-HNSW-SQ index with
`maintain_ann_index` once per `--partition-rows` (rows per IVF partition; each partition is one
HNSW graph), and times `VectorIndex.search` at each `--ef`: p50/p99 ms and recall@10 against
brute force, with no filter and with one day of ten (a filter too broad for the exact plan).
Each variant's table is kept under `--work`, so a rerun only measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

import numpy as np
from bench_search_scale import base_vectors, day_rows, day_vectors, texts

from semsearch.core.embedding import LocalBackend
from semsearch.storage.vector_index import AnnParams, VectorIndex, day_filter

DAYS, K, START = 10, 10, date(2024, 1, 1)


def build(home: Path, base: np.ndarray, rows: int, params: AnnParams, model_id: str):
    """The index at `home` (built once), the day of every row and every row's vector."""
    index = VectorIndex(str(home))
    base_texts = texts(len(base))[0]
    per_day = rows // DAYS
    vectors, days = [], []
    for day in range(DAYS):
        day_vecs, picked = day_vectors(base, day, per_day)
        vectors.append(day_vecs)
        days.append(np.full(per_day, day))
        if index.count_rows() < (day + 1) * per_day:
            categories = np.zeros(per_day, int)
            texts_of_day = [base_texts[i] for i in picked]
            rows_of_day = day_rows(day_vecs, texts_of_day, categories, day, model_id)
            index.replace_partition(START + timedelta(days=day), rows_of_day, model_id)
    if not index.ann_index_names():
        start = time.perf_counter()
        mode = index.maintain_ann_index(params)
        print(f"  {mode}: {time.perf_counter() - start:.0f} s", flush=True)
    return index, np.concatenate(days), np.vstack(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partition-rows", default="4096,1048576")
    parser.add_argument("--ef", default="128,256,512")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--work", default="/tmp/bench_scale")
    args = parser.parse_args()
    work = Path(args.work)
    base, queries = base_vectors(work, 6000, args.queries)
    model_id = LocalBackend().model_id
    print(f"{'rows/partition':>15}{'ef':>6} {'filter':<10}{'p50':>7}{'p99':>7}{'recall':>8}")
    for partition_rows in [int(x) for x in args.partition_rows.split(",")]:
        params = AnnParams(min_rows=1, rows_per_partition=partition_rows, exact_filter_rows=0)
        home = work / f"ann_{args.rows}_{partition_rows}"
        index, days, vectors = build(home, base, args.rows, params, model_id)
        ids = np.array([f"{d:03d}-{i:06d}" for d in range(DAYS) for i in range(args.rows // DAYS)])
        for where, mask in {"none": None, "one day": days == 0}.items():
            subset = np.arange(len(ids)) if mask is None else np.flatnonzero(mask)
            truth = [set(ids[subset[np.argsort(-(vectors[subset] @ q))[:K]]]) for q in queries]
            sql = None if mask is None else day_filter(START)
            for ef in [int(x) for x in args.ef.split(",")]:
                ef_params = dataclasses.replace(params, ef=ef)
                index.search(queries[0], K, sql, ef_params)  # the index into memory
                ms, recall = [], []
                for q, true in zip(queries, truth, strict=True):
                    start = time.perf_counter()
                    found = index.search(q, K, sql, ef_params)["chunk_id"].to_pylist()
                    ms.append((time.perf_counter() - start) * 1000)
                    recall.append(len(set(found) & true) / K)
                p50, p99 = np.percentile(ms, [50, 99])
                print(
                    f"{partition_rows:>15}{ef:>6} {where:<10}{p50:>7.1f}{p99:>7.1f}"
                    f"{np.mean(recall):>8.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
