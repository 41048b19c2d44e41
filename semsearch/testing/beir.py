"""A small BEIR-format subset of a BEIR set, for tests and quick benchmark runs."""

from __future__ import annotations

import json
from pathlib import Path

from semsearch.core.evaluation import read_corpus, read_qrels, read_queries


def beir_subset(
    source: Path,
    target: Path,
    documents: int | None,
    split: str = "test",
    queries_at_most: int | None = None,
) -> tuple[Path, Path, Path]:
    """corpus.jsonl, queries.jsonl and qrels/<split>.tsv of `source` cut to `documents`
    documents (None: all): the documents judged for the split's first `queries_at_most` queries
    (None: all) first, in query order, then others as distractors; only queries whose judged
    documents are all kept. Returns the three paths under `target`."""
    corpus = read_corpus(source / "corpus.jsonl")
    queries = read_queries(source / "queries.jsonl")
    qrels = read_qrels(source / "qrels" / f"{split}.tsv")
    limit = len(corpus) if documents is None else documents
    asked = [q for q in qrels if q in queries][:queries_at_most]
    judged = list(dict.fromkeys(d for q in asked for d in qrels[q]))
    keep = set(judged[:limit])
    distractors = [d["id"] for d in corpus if d["id"] not in keep]
    keep.update(distractors[: max(0, limit - len(keep))])
    kept_qrels = {q: qrels[q] for q in asked if set(qrels[q]) <= keep}
    target.mkdir(parents=True, exist_ok=True)
    (target / "qrels").mkdir(exist_ok=True)
    paths = (target / "corpus.jsonl", target / "queries.jsonl", target / "qrels" / f"{split}.tsv")
    paths[0].write_text("".join(json.dumps(d) + "\n" for d in corpus if d["id"] in keep))
    paths[1].write_text(
        "".join(json.dumps({"_id": q, "text": queries[q]}) + "\n" for q in kept_qrels)
    )
    rows = [f"{q}\t{d}\t{r}\n" for q, docs in kept_qrels.items() for d, r in docs.items()]
    paths[2].write_text("query-id\tcorpus-id\tscore\n" + "".join(rows))
    return paths
