"""Retrieval quality and search latency on SciFact, through the pipeline, per search mode.

    nice -n 10 .venv/bin/python benchmarks/bench_retrieval.py [--docs N] [--split test]
        [--work /tmp/bench_retrieval] [--mode M ...]

Lands SciFact (../shared/datasets/scifact; `--docs N`: the documents judged for the split's
queries, then distractors, N in all) into an evaluation home under `--work`, runs it through
the same pipeline as `semsearch run` (the documents dated over three days), then sends every
judged query of the split through `Searcher.search` (document results, top 100) in each mode of
`semsearch.core.search_options.MODES`. Prints nDCG@10, Recall@100 and MRR@10 per mode side by
side (the vector mode is today's baseline), and search latency p50/p99 (one search call, query
embedding included; the embedding alone beside it). This is `semsearch eval retrieval`'s own
code path; the JSON report goes to `--work`. The home is kept, so a rerun only measures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from semsearch.config import Settings
from semsearch.core.evaluation import read_qrels, read_queries, retrieval_scores
from semsearch.core.fusion import rrf, weighted
from semsearch.core.search_options import MODES
from semsearch.evaluate import retrieval_table, run_retrieval_eval
from semsearch.query import searcher_for
from semsearch.testing.beir import beir_subset

SCIFACT = Path(__file__).resolve().parents[2] / "shared/datasets/scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, help="documents to index (default: all 5,183)")
    parser.add_argument("--split", default="test", help="qrels split (default test)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_retrieval"))
    parser.add_argument("--mode", action="append", choices=MODES, help="default: every mode")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    name = f"scifact-{args.split}-{args.docs or 'all'}"
    corpus, queries, qrels = beir_subset(SCIFACT, args.work / name / "data", args.docs, args.split)
    start = time.perf_counter()
    report = run_retrieval_eval(
        Settings.from_env(),
        queries,
        qrels,
        corpus,
        args.work / name / "home",
        tuple(args.mode or MODES),
    )
    seconds = time.perf_counter() - start
    state = "ingested now" if report["ingested"] else "reused"
    print(
        f"SciFact {args.split}: {report['queries_evaluated']} queries, "
        f"{report['documents_indexed']} documents ({state}; {seconds:.0f} s in all), "
        f"model {report['settings']['embedding_model']}"
    )
    print(retrieval_table(report))
    out = args.work / f"{name}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"report: {out}")
    print("hybrid fusion variants (from the two legs' top 100 documents):")
    print(
        fusion_table(
            Settings.from_env().replace(home=str(args.work / name / "home")), queries, qrels
        )
    )


def fusion_table(settings: Settings, queries_path: Path, qrels_path: Path) -> str:
    """nDCG@10 of reciprocal rank fusion (k0 10..100) beside the normalised-score sum (vector
    weight 0.3..0.7; 0.5 is the product's hybrid), over the same two ranked lists per query."""
    searcher = searcher_for(settings)
    qrels = read_qrels(qrels_path)
    queries = {q: text for q, text in read_queries(queries_path).items() if q in qrels}
    legs = {
        mode: {q: [(h.doc_id, h.score) for h in searcher.search(t, k=100, mode=mode)]
               for q, t in queries.items()}
        for mode in ("vector", "keyword")
    }  # fmt: skip
    variants = {mode: {q: legs[mode][q] for q in queries} for mode in legs}
    for k0 in (10, 30, 60, 100):
        variants[f"rrf k0={k0}"] = {
            q: rrf([[d for d, _ in legs[m][q]] for m in ("vector", "keyword")], k0) for q in queries
        }
    for w in (0.3, 0.5, 0.7):
        variants[f"weighted w={w}"] = {
            q: weighted(dict(legs["vector"][q]), dict(legs["keyword"][q]), w) for q in queries
        }
    lines = []
    for label, ranked in variants.items():
        runs = {q: [d for d, _ in pairs[:100]] for q, pairs in ranked.items()}
        lines.append(f"  {label:16s} nDCG@10 {retrieval_scores(runs, qrels)['ndcg@10']:.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
