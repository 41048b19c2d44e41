"""`semsearch eval`: does the pipeline rank (and theme) as well as the notebook did?

Retrieval: a BEIR-format corpus is landed in an evaluation home and run through the same
pipeline as `semsearch run` (the documents dated over a few days, as production data is), then
every judged query goes through the public search path (`Searcher.search`, document results)
in each mode. Themes: the current window's themes against a metadata label column. The metrics
themselves are in `semsearch.core.evaluation`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from semsearch.config import Settings
from semsearch.core import evaluation as ev
from semsearch.core.search_options import MODES
from semsearch.runner import Progress
from semsearch.storage import themes_store
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import DOCUMENTS, RAW_TABLE

log = logging.getLogger(__name__)

# The corpus is dated over these days (document i on day i mod 3): fixed, so a re-run over the
# same home finds the same partitions and has nothing to do.
EVAL_DAYS = (date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3))
LANDED_PREFIX = "eval-corpus-"
TIMED_QUANTILES = {"p50": 0.5, "p99": 0.99}


@dataclass
class EvalHome:
    settings: Settings
    ingested: bool  # the corpus went through the pipeline in this call
    documents: int  # in the home's raw_documents
    failed_days: list[str] = field(default_factory=list)


def eval_settings(base: Settings, home: Path) -> Settings:
    """`base` (its model, chunking and theme settings: what is being evaluated) on an evaluation
    home, reading landing records in the shape `dated_documents` writes."""
    return base.replace(
        home=str(home),
        landing_dir="",
        tables_dir="",
        lance_uri="",
        partitions_start=EVAL_DAYS[0].isoformat(),
        id_column="id",
        text_column="text",
        title_column="title",
        created_at_column="created_at",
        missing_date_policy="reject",
        source_table_uri="",
    )


def _land_corpus(settings: Settings, corpus: Path) -> Path:
    """The corpus as a dated landing file named by its content; a home already holding another
    evaluation corpus is refused (its results would mix two corpora)."""
    digest = hashlib.sha256(Path(corpus).read_bytes()).hexdigest()[:16]
    landing = settings.landing_path
    target = landing / f"{LANDED_PREFIX}{digest}.jsonl"
    others = [p for p in landing.glob(f"{LANDED_PREFIX}*.jsonl") if p != target]
    if others:
        raise ValueError(
            f"{settings.home} already holds another evaluation corpus ({others[0].name}); "
            "give another --home, or leave --home out for a scratch one"
        )
    if not target.exists():
        records = ev.dated_documents(ev.read_corpus(corpus), EVAL_DAYS)
        landing.mkdir(parents=True, exist_ok=True)
        partial = landing / f".{target.name}"  # hidden: ingest skips it until renamed
        partial.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        partial.rename(target)
    return target


def indexed_documents(settings: Settings) -> set[str]:
    tables = DeltaTables(settings.tables_path)
    ids = tables.scan(RAW_TABLE, DOCUMENTS).select("doc_id").unique().collect()
    return set(ids["doc_id"].to_list())


def prepare_home(
    base: Settings, home: Path | None, corpus: Path | None, progress: Progress | None = None
) -> EvalHome:
    """An evaluation home: with `corpus`, land it in `home` and run the pipeline there (days
    already materialized from the same corpus are not run again); without, `home` as it is
    (None: the configured home, `base`)."""
    from semsearch.runner import open_instance, run_pipeline

    if corpus is None:
        settings = base
        if home is not None:
            settings = base.replace(home=str(home), landing_dir="", tables_dir="", lance_uri="")
        return EvalHome(settings, False, len(indexed_documents(settings)))
    if home is None:
        raise ValueError("an evaluation corpus needs a home to be ingested into")
    settings = eval_settings(base, home)
    _land_corpus(settings, corpus)
    # The evaluation home's own Dagster instance: its runs never mix with another home's.
    os.environ["DAGSTER_HOME"] = str(settings.home_path / "dagster")
    run = run_pipeline(settings, open_instance(settings), progress=progress)
    failed = [str(d.day) for d in run.failed_days]
    return EvalHome(settings, not run.plan.empty, len(indexed_documents(settings)), failed)


def _timings(values: list[float]) -> dict[str, float]:
    return {name: round(ev.percentile(values, q) * 1000, 2) for name, q in TIMED_QUANTILES.items()}


def evaluate_retrieval(
    settings: Settings,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    modes: tuple[str, ...] = MODES,
    k: int = ev.RECALL_AT,
) -> dict:
    """Every judged query through `Searcher.search` in each mode: the mean metrics, search
    latency (p50/p99, query embedding included; the embedding alone beside it) and per-query
    scores."""
    from semsearch.query import searcher_for

    judged = {q: text for q, text in queries.items() if q in qrels}
    if not judged:
        raise ValueError("no query of the queries file has judgements in the qrels file")
    missing = sorted(set(qrels) - set(queries))
    if missing:
        log.warning("%d judged queries are not in the queries file: %s", len(missing), missing[:5])
    searcher = searcher_for(settings)
    if searcher.index.table() is None:
        raise ValueError(
            f"nothing is indexed in {settings.home}: give --corpus to ingest an evaluation corpus"
        )
    searcher.search(next(iter(judged.values())), 1)  # load the model and open the index first
    report: dict = {"k": k, "queries_evaluated": len(judged), "modes": {}, "per_query": {}}
    for mode in modes:
        rankings, seconds = {}, []
        for query, text in judged.items():
            start = time.perf_counter()
            hits = searcher.search(text, k, mode=mode, unit="document")
            seconds.append(time.perf_counter() - start)
            rankings[query] = [hit.doc_id for hit in hits]
        per_query = ev.per_query_scores(rankings, {q: qrels[q] for q in judged})
        scores = {n: round(v, 4) for n, v in ev.mean_scores(per_query).items()}
        report["modes"][mode] = scores | {"latency_ms": _timings(seconds)}
        report["per_query"][mode] = per_query
        log.info("%s: %s", mode, scores)
    embedding = []
    for text in judged.values():
        start = time.perf_counter()
        searcher.embed_query(text)
        embedding.append(time.perf_counter() - start)
    report["query_embedding_ms"] = _timings(embedding)
    judged_docs = {d for q in judged for d, r in qrels[q].items() if r > 0}
    report["judged_documents_not_indexed"] = len(judged_docs - indexed_documents(settings))
    return report


def retrieval_table(report: dict) -> str:
    """The modes side by side, as `semsearch eval retrieval` and the benchmark print them."""
    header = f"{'mode':<10}{'nDCG@10':>9}{'Recall@100':>12}{'MRR@10':>9}{'p50 ms':>9}{'p99 ms':>9}"
    lines = [header]
    for mode, row in report["modes"].items():
        latency = row["latency_ms"]
        lines.append(
            f"{mode:<10}{row['ndcg@10']:>9.4f}{row['recall@100']:>12.4f}{row['mrr@10']:>9.4f}"
            f"{latency['p50']:>9.1f}{latency['p99']:>9.1f}"
        )
    embedding = report.get("query_embedding_ms")
    if embedding:
        lines.append(
            f"(latency: one Searcher.search call, query embedding included; the embedding alone: "
            f"p50 {embedding['p50']:.1f} ms, p99 {embedding['p99']:.1f} ms)"
        )
    return "\n".join(lines)


def run_retrieval_eval(
    base: Settings,
    queries_path: Path,
    qrels_path: Path,
    corpus: Path | None,
    home: Path | None,
    modes: tuple[str, ...] = MODES,
    progress: Progress | None = None,
) -> dict:
    """Prepare the home, evaluate, and describe what was evaluated: the whole JSON report."""
    queries, qrels = ev.read_queries(queries_path), ev.read_qrels(qrels_path)
    prepared = prepare_home(base, home, corpus, progress)
    if prepared.failed_days:
        raise RuntimeError(
            f"the pipeline did not complete days {', '.join(prepared.failed_days)} of the "
            f"evaluation home {prepared.settings.home}: see `semsearch run` there"
        )
    report = evaluate_retrieval(prepared.settings, queries, qrels, modes)
    s = prepared.settings
    described = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "corpus": str(corpus) if corpus else None,
        "queries": str(queries_path),
        "qrels": str(qrels_path),
        "home": prepared.settings.home,
        "ingested": prepared.ingested,
        "documents_indexed": prepared.documents,
        "settings": {
            "embedding_backend": s.embedding_backend,
            "embedding_model": s.embedding_model,
            "chunk_size_tokens": s.chunk_size_tokens,
            "chunk_overlap_tokens": s.chunk_overlap_tokens,
        },
    }
    return described | report


def evaluate_themes(settings: Settings, label_field: str, day: date | None = None) -> dict:
    """The themes of the window ending at `day` (default: the latest) against metadata key
    `label_field`: V-measure, homogeneity, completeness, ARI, noise share, theme count."""
    from semsearch.query import themes

    found = themes(day, settings=settings)
    if not found:
        where = f"for {day}" if day else f"in {settings.home}"
        raise ValueError(f"no themes {where}: run `semsearch run` first")
    first, last = found[0].window
    scores = themes_store.window_label_scores(DeltaTables(settings.tables_path), last, label_field)
    return {"window": [first.isoformat(), last.isoformat()], "labels": label_field} | (
        scores.as_dict()
    )
