"""ANN recall@10 against exact search, semsearch's index parameters vs LanceDB's defaults.

Embeds the SciFact corpus (5,183 abstracts) with the local model, indexes it in LanceDB, and runs
the SciFact claims as queries three ways: exact (flat) search, semsearch's IVF-HNSW-SQ with its
query parameters, and the library's default `create_index()` (IVF-PQ) with default query
parameters. Prints recall@10 against exact and milliseconds per query.

    .venv/bin/python benchmarks/bench_ann_recall.py [path/to/scifact]
"""

import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

from semsearch.core.embedding import LocalBackend
from semsearch.core.metrics import recall_at_k
from semsearch.storage.schemas import index_schema
from semsearch.storage.vector_index import AnnParams, VectorIndex

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/datasets/scifact"
K = 10


def load(folder: Path) -> tuple[list[dict], list[str]]:
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    queries = [
        json.loads(line)["text"] for line in (folder / "queries.jsonl").read_text().splitlines()
    ]
    return corpus, queries


def index_rows(corpus: list[dict], vectors: np.ndarray, model_id: str) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "chunk_id": d["id"],
                "doc_id": d["id"],
                "partition_date": date(2024, 1, 1),
                "title": d["title"],
                "text": d["text"][:200],
                "metadata": "{}",
                "metadata_tags": [],
                "model_id": model_id,
                "vector": v.tolist(),
            }
            for d, v in zip(corpus, vectors, strict=True)
        ],
        schema=index_schema(vectors.shape[1]),
    )


def timed_search(search, queries: np.ndarray) -> tuple[list[list[str]], float]:
    start = time.perf_counter()
    results = [search(q) for q in queries]
    return results, (time.perf_counter() - start) * 1000 / len(queries)


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA
    corpus, query_texts = load(folder)
    backend = LocalBackend()
    start = time.perf_counter()
    vectors = backend.embed([f"{d['title']}\n\n{d['text']}" for d in corpus]).vectors
    queries = backend.embed(query_texts).vectors
    print(
        f"embedded {len(corpus)} docs and {len(queries)} queries "
        f"in {time.perf_counter() - start:.0f}s"
    )

    params = AnnParams(min_rows=1)
    ours = VectorIndex(tempfile.mkdtemp(), "ours")
    ours.replace_partition(
        date(2024, 1, 1), index_rows(corpus, vectors, backend.model_id), backend.model_id
    )
    exact, exact_ms = timed_search(
        lambda q: ours.search(q, K, None, params, exact=True)["chunk_id"].to_pylist(), queries
    )
    start = time.perf_counter()
    ours.maintain_ann_index(params)
    build_s = time.perf_counter() - start
    approx, ann_ms = timed_search(
        lambda q: ours.search(q, K, None, params)["chunk_id"].to_pylist(), queries
    )

    default = VectorIndex(tempfile.mkdtemp(), "default")
    default.replace_partition(
        date(2024, 1, 1), index_rows(corpus, vectors, backend.model_id), backend.model_id
    )
    table = default.table()
    start = time.perf_counter()
    table.create_index("vector")  # the library's defaults: IVF-PQ, L2
    default_build_s = time.perf_counter() - start
    default_results, default_ms = timed_search(
        lambda q: table.search(q).limit(K).to_arrow()["chunk_id"].to_pylist(), queries
    )

    print(f"{'search':<40}{'recall@10':>10}{'ms/query':>10}{'build s':>9}")
    print(f"{'exact (flat)':<40}{1.0:>10.3f}{exact_ms:>10.1f}{0:>9.1f}")
    name = f"semsearch IVF-HNSW-SQ nprobes={params.nprobes} ef={params.ef}"
    print(f"{name:<40}{recall_at_k(approx, exact, K):>10.3f}{ann_ms:>10.1f}{build_s:>9.1f}")
    name = "library default create_index() (IVF-PQ)"
    print(
        f"{name:<40}{recall_at_k(default_results, exact, K):>10.3f}"
        f"{default_ms:>10.1f}{default_build_s:>9.1f}"
    )


if __name__ == "__main__":
    main()
