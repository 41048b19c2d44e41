"""Search at scale: latency and recall@10 against brute force, with and without filters.

    nice -n 10 .venv/bin/python benchmarks/bench_search_scale.py [--days 50] [--per-day 20000]
        [--queries 500] [--base 6000] [--work /tmp/bench_scale]

Builds the index through `VectorIndex.replace_partition` + `maintain_ann_index`, a day at a
time, exactly as the `vector_index` asset does (`--days` x `--per-day` rows), each day followed
by the nightly maintenance's merge of the ANN index's segments (`merge_ann_segments`). Vectors
are real MiniLM vectors of real texts (SciFact abstracts and Banking77 messages, `--base` of
them, embedded once and cached under `--work`) plus small noise; each row carries a `category`
tag (one of 100, by nearest of 100 topic centres: a topical, hence hard, filter of ~1% of rows).
Queries are real SciFact claims and Banking77 messages. The built index is cached under `--work`
so a rerun only measures. Prints, per filter (none, the last 10% of days, one category, both):
p50/p95/p99 ms and recall@10 at the LanceDB level (`VectorIndex.search`, the product's plan) and
through the public API (`Searcher.search`, query embedding included), and the first query's ms
apart (`first`: what a process pays before the index or the filter's rows are in memory; the
percentiles are of the queries after it), plus the day-write time of the first and last days,
and the re-write of a day (replaced by the same rows) at 20k rows and at the full size, then the
ANN index's segments (the build's, then the merged deltas) and the daily index update and
nightly merge times of the build. A rerun measures searches after that re-write (the day's old
fragment removed, its new rows one more segment), not after a fresh build.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

import numpy as np
import pyarrow as pa

from semsearch.config import Settings
from semsearch.core.embedding import LocalBackend
from semsearch.core.search_options import MODES
from semsearch.query.searcher import Searcher
from semsearch.storage.schemas import index_schema
from semsearch.storage.vector_index import AnnParams, VectorIndex

DATA = Path(__file__).resolve().parents[2] / "shared/datasets"
START, K, CATEGORIES, NOISE = date(2024, 1, 1), 10, 100, 0.03


def texts(n: int) -> tuple[list[str], list[str]]:
    corpus = [json.loads(x) for x in (DATA / "scifact/corpus.jsonl").read_text().splitlines()]
    bank = [json.loads(x) for x in (DATA / "banking77/docs.jsonl").read_text().splitlines()]
    claims = [
        json.loads(x)["text"] for x in (DATA / "scifact/queries.jsonl").read_text().splitlines()
    ]
    docs = [f"{d['title']} {d['text']}"[:1000] for d in corpus] + [b["text"] for b in bank]
    docs = docs[:: max(1, len(docs) // n)][:n]
    queries = claims[:250] + [b["text"] for b in bank[1::97]][:250]
    return docs, queries


def base_vectors(work: Path, n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    cached = work / f"vectors_{n}.npz"
    if cached.exists():
        data = np.load(cached)
        return data["docs"], data["queries"][:n_queries]
    docs, queries = texts(n)
    backend = LocalBackend()
    data = {"docs": backend.embed(docs).vectors, "queries": backend.embed(queries).vectors}
    work.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **data)
    return data["docs"], data["queries"][:n_queries]


def day_vectors(base: np.ndarray, day: int, per_day: int) -> tuple[np.ndarray, np.ndarray]:
    """The day's vectors (base rows plus noise) and which base row each one is."""
    rng = np.random.default_rng(day)
    picked = rng.integers(0, len(base), per_day)
    noisy = base[picked] + rng.normal(0, NOISE, (per_day, base.shape[1])).astype(np.float32)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32), picked


def day_rows(
    vectors: np.ndarray, texts: list[str], categories: np.ndarray, day: int, model_id: str
) -> pa.Table:
    n, when = len(vectors), START + timedelta(days=day)
    flat = pa.array(vectors.ravel())
    return pa.table(
        {
            "chunk_id": [f"{day:03d}-{i:06d}" for i in range(n)],
            "doc_id": [f"{day:03d}-{i:06d}" for i in range(n)],
            "partition_date": [when] * n,
            "title": [None] * n,
            "text": texts,  # the base row's real text: the full-text index has real words
            "metadata": [json.dumps({"category": f"c{c}"}) for c in categories],
            "metadata_tags": [[f"category=c{c}"] for c in categories],
            "model_id": [model_id] * n,
            "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
        },
        schema=index_schema(vectors.shape[1]),
    )


def time_first_query(index, params, searcher, level, vector, text, sql, api) -> float:
    """The ms of a process's first query with this filter (the index, or the filter's rows, read
    into memory); it is timed apart, and the percentiles are of the queries after it."""
    start = time.perf_counter()
    if level == "lancedb":
        index.search(vector, K, sql, params)
    else:
        searcher.search(text, k=K, mode="vector", unit="chunk", **api)
    return (time.perf_counter() - start) * 1000


def percentiles(ms: list[float]) -> str:
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return f"{p50:7.1f}{p95:7.1f}{p99:7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=50)
    parser.add_argument("--per-day", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--base", type=int, default=6000)
    parser.add_argument("--work", default="/tmp/bench_scale")
    args = parser.parse_args()
    work = Path(args.work)
    base, queries = base_vectors(work, args.base, args.queries)
    centres = base[np.random.default_rng(7).choice(len(base), CATEGORIES, replace=False)]
    model_id = LocalBackend().model_id
    home = work / f"home_{args.days}x{args.per_day}"
    settings = Settings(home=str(home))
    index = VectorIndex(settings.lance_path, settings.lance_table)
    params = AnnParams(min_rows=settings.ann_min_rows)
    base_texts = texts(args.base)[0]
    all_vectors, all_days, all_cats, writes = [], [], [], []
    for day in range(args.days):
        vectors, picked = day_vectors(base, day, args.per_day)
        categories = np.argmax(vectors @ centres.T, axis=1)
        all_vectors.append(vectors)
        all_days.append(np.full(len(vectors), day))
        all_cats.append(categories)
        if index.count_rows() >= (day + 1) * args.per_day:
            continue  # built by an earlier run
        rows = day_rows(vectors, [base_texts[i] for i in picked], categories, day, model_id)
        start = time.perf_counter()
        index.replace_partition(START + timedelta(days=day), rows, model_id)
        written = time.perf_counter() - start
        mode = index.maintain_ann_index(params)
        indexed = time.perf_counter() - start - written
        start = time.perf_counter()
        merged = index.merge_ann_segments()  # what the nightly maintenance does to the index
        merging = time.perf_counter() - start
        writes.append((day, written, indexed, mode, merging))
        print(
            f"day {day}: write {written:.2f} s, index {indexed:.1f} s, {mode}; "
            f"maintenance merged {merged} segments in {merging:.1f} s",
            flush=True,
        )
    vectors, days, cats = np.vstack(all_vectors), np.concatenate(all_days), np.concatenate(all_cats)
    ids = np.array([f"{d:03d}-{i:06d}" for d in range(args.days) for i in range(args.per_day)])
    common = int(np.bincount(cats).argmax())
    rare = int(np.argsort(np.bincount(cats, minlength=CATEGORIES))[CATEGORIES // 2])
    since_day = int(args.days * 0.9)
    filters = {
        "no filter": (None, {}, np.ones(len(ids), bool)),
        "last 10% of days": (
            f"partition_date >= date '{START + timedelta(days=since_day)}'",
            {"since": START + timedelta(days=since_day)},
            days >= since_day,
        ),
        f"category c{rare} (median)": (
            f"array_has(metadata_tags, 'category=c{rare}')",
            {"where": {"category": f"c{rare}"}},
            cats == rare,
        ),
        f"days + category c{common}": (
            f"partition_date >= date '{START + timedelta(days=since_day)}' "
            f"AND array_has(metadata_tags, 'category=c{common}')",
            {"since": START + timedelta(days=since_day), "where": {"category": f"c{common}"}},
            (days >= since_day) & (cats == common),
        ),
    }
    query_texts = texts(args.base)[1][: len(queries)]
    searcher = Searcher(settings)
    searcher.search("warm up", k=K, unit="chunk")
    print(f"\n{index.count_rows():,} rows; {len(queries)} queries; k={K}")
    print(
        f"{'filter':<26}{'share':>7} {'level':<8}{'p50':>7}{'p95':>7}{'p99':>7}{'recall':>8}"
        f"{'first':>8}"
    )
    for name, (sql, api, mask) in filters.items():
        subset = np.flatnonzero(mask)
        truth = [set(ids[subset[np.argsort(-(vectors[subset] @ q))[:K]]]) for q in queries]
        for level in ("lancedb", "api"):
            first_ms = time_first_query(
                index, params, searcher, level, queries[0], query_texts[0], sql, api
            )
            searcher.embed_query.cache_clear()  # the API's figures include the query embedding
            ms, found = [], []
            for q, text in zip(queries, query_texts, strict=True):
                start = time.perf_counter()
                if level == "lancedb":
                    got = index.search(q, K, sql, params)["chunk_id"].to_pylist()
                else:
                    got = [
                        h.chunk_id
                        for h in searcher.search(text, k=K, mode="vector", unit="chunk", **api)
                    ]
                ms.append((time.perf_counter() - start) * 1000)
                found.append(got)
            if level == "api":  # the API embeds the text; recall against that text's exact top k
                qv = searcher.backend.embed(query_texts).vectors
                truth_api = [set(ids[subset[np.argsort(-(vectors[subset] @ q))[:K]]]) for q in qv]
                ref = truth_api
            else:
                ref = truth
            recall = np.mean([len(set(f) & t) / len(t) for f, t in zip(found, ref, strict=True)])
            print(
                f"{name:<26}{mask.mean():>7.3f} {level:<8}{percentiles(ms)}{recall:>8.3f}"
                f"{first_ms:>8.1f}"
            )
    if writes:
        first, last = writes[0], writes[-1]
        print(f"\nday write: day {first[0]} {first[1]:.2f} s, day {last[0]} {last[1]:.2f} s")
    print_modes(searcher, query_texts, filters)
    rewrite_day = args.days - 1
    _, picked = day_vectors(base, rewrite_day, args.per_day)
    rows = day_rows(
        all_vectors[rewrite_day],
        [base_texts[i] for i in picked],
        all_cats[rewrite_day],
        rewrite_day,
        model_id,
    )
    small = VectorIndex(str(work / "rewrite_one_day"))  # the same day alone in a new index
    if small.count_rows() == 0:
        small.replace_partition(START + timedelta(days=rewrite_day), rows, model_id)
        small.maintain_ann_index(params)  # its scalar indexes, as the asset makes them
    for name, target in ((f"{small.count_rows():,}", small), (f"{index.count_rows():,}", index)):
        print(f"re-write of a day at {name} rows: {rewrite_seconds(target, rows, model_id)}")
    index.maintain_ann_index(params)  # as the asset does after a write; the next run measures it
    print(f"ANN index {index.ann_index_names()}: segments of {index.ann_segment_rows()} rows")
    updates = [w for w in writes if "updated" in w[3]]  # not the builds and re-partitions
    if updates:
        for label, at in (("daily index update", 2), ("nightly segment merge", 4)):
            seconds = sorted(w[at] for w in updates)
            slowest = max(updates, key=lambda w: w[at])
            print(
                f"{label}: median {seconds[len(seconds) // 2]:.1f} s, longest day "
                f"{slowest[0]} {slowest[at]:.1f} s"
            )


def rewrite_seconds(index: VectorIndex, rows: pa.Table, model_id: str) -> str:
    """Best and worst of 3 replacements of the day of `rows` by the same rows."""
    day = rows.column("partition_date")[0].as_py()
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        index.replace_partition(day, rows, model_id)
        seconds.append(time.perf_counter() - start)
    return f"best {min(seconds):.2f} s, worst {max(seconds):.2f} s"


def print_modes(searcher: Searcher, query_texts: list[str], filters: dict) -> None:
    """Each search mode through the public API, documents returned (the default), with the
    query embedding excluded (measured apart): every query is searched once to embed it, then
    timed on the second call, when `Searcher` serves its vector from its cache."""
    embed_ms = []
    for text in query_texts:
        start = time.perf_counter()
        searcher.query_embedder(text)  # what a new query costs (ONNX Runtime, one thread)
        embed_ms.append((time.perf_counter() - start) * 1000)
    print(f"\nsearch modes, documents, k={K}, query embedding excluded")
    print(f"{'filter':<26}{'mode':<9}{'p50':>7}{'p95':>7}{'p99':>7}")
    for name, (_, api, _) in filters.items():
        for mode in MODES:
            ms = []
            for text in query_texts:
                start = time.perf_counter()
                searcher.search(text, k=K, mode=mode, **api)
                ms.append((time.perf_counter() - start) * 1000)
            print(f"{name:<26}{mode:<9}{percentiles(ms)}")
    print(f"(the query embedding alone: p50 {np.median(embed_ms):.1f} ms)")


if __name__ == "__main__":
    main()
