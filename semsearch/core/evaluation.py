"""Evaluation metrics: ranked retrieval against relevance judgements, themes against labels.

Pure functions over plain data. Retrieval metrics come from trec_eval (through pytrec_eval, as
BEIR computes them), so a figure here is comparable with a notebook's; theme metrics from
scikit-learn. BEIR-format files (corpus.jsonl, queries.jsonl, qrels TSV) are read here too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path

NDCG_AT, RECALL_AT, MRR_AT = 10, 100, 10
# trec_eval measure (as pytrec_eval names its result) -> ours; MRR@10 is trec_eval's reciprocal
# rank of the run cut to its top 10.
_MEASURES = {f"ndcg_cut_{NDCG_AT}": f"ndcg@{NDCG_AT}", f"recall_{RECALL_AT}": f"recall@{RECALL_AT}"}
_ASKED = {f"ndcg_cut.{NDCG_AT}", f"recall.{RECALL_AT}"}
MRR = f"mrr@{MRR_AT}"
RETRIEVAL_METRICS = (*_MEASURES.values(), MRR)

Qrels = Mapping[str, Mapping[str, int]]  # query id -> doc id -> graded relevance (0: not)
Rankings = Mapping[str, Sequence[str]]  # query id -> doc ids, best first


def _as_run(rankings: Rankings, depth: int | None = None) -> dict[str, dict[str, float]]:
    """Ranked lists as trec_eval runs: strictly decreasing scores, so trec_eval's own ordering
    (by score, ties by doc id) is exactly the search's order."""
    run = {}
    for query, docs in rankings.items():
        ranked = list(dict.fromkeys(docs))[:depth]  # a doc counts once, at its best rank
        run[query] = {doc: float(len(ranked) - i) for i, doc in enumerate(ranked)}
    return run


def per_query_scores(rankings: Rankings, qrels: Qrels) -> dict[str, dict[str, float]]:
    """nDCG@10, Recall@100 and MRR@10 of every judged query (a query with at least one relevant
    document); a judged query missing from `rankings`, or ranked nothing, scores 0."""
    import pytrec_eval

    judged = {
        q: {d: int(r) for d, r in docs.items()}
        for q, docs in qrels.items()
        if any(r > 0 for r in docs.values())
    }
    wanted = {q: rankings.get(q, ()) for q in judged}
    main = pytrec_eval.RelevanceEvaluator(judged, _ASKED)
    top = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"})
    found = main.evaluate(_as_run(wanted))
    found_top = top.evaluate(_as_run(wanted, MRR_AT))
    zero = dict.fromkeys(RETRIEVAL_METRICS, 0.0)
    scores = {}
    for query in judged:
        row = dict(zero)
        for measure, name in _MEASURES.items():
            row[name] = float(found.get(query, {}).get(measure, 0.0))
        row[MRR] = float(found_top.get(query, {}).get("recip_rank", 0.0))
        scores[query] = row
    return scores


def mean_scores(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over the queries (0 for no queries)."""
    count = len(per_query)
    return {
        name: (sum(row[name] for row in per_query.values()) / count if count else 0.0)
        for name in RETRIEVAL_METRICS
    }


def retrieval_scores(rankings: Rankings, qrels: Qrels) -> dict[str, float]:
    """Mean nDCG@10, Recall@100 and MRR@10 over the judged queries."""
    return mean_scores(per_query_scores(rankings, qrels))


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` quantile (nearest rank) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(share * len(ordered))))
    return ordered[rank - 1]


@dataclass(frozen=True)
class ThemeScores:
    """How well a window's themes agree with a label column. Outliers count as one more
    cluster in the label metrics: documents a clustering left out are not "right"."""

    v_measure: float
    homogeneity: float  # each theme holds one label
    completeness: float  # each label sits in one theme
    ari: float  # adjusted Rand index: 0 is chance, 1 identical
    noise_share: float  # of all documents, left as outliers
    themes: int  # not counting the outlier bucket
    documents: int
    labelled: int  # documents with a label (the label metrics' population)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def theme_scores(
    themes: Sequence[str], labels: Sequence[str | None], outlier_id: str
) -> ThemeScores:
    """`themes[i]` is document i's theme id, `labels[i]` its label (None: unlabelled)."""
    from sklearn.metrics import adjusted_rand_score, homogeneity_completeness_v_measure

    if len(themes) != len(labels):
        raise ValueError(f"{len(themes)} theme ids but {len(labels)} labels")
    pairs = [(t, lbl) for t, lbl in zip(themes, labels, strict=True) if lbl is not None]
    if pairs:
        predicted, truth = [p[0] for p in pairs], [p[1] for p in pairs]
        homogeneity, completeness, v_measure = homogeneity_completeness_v_measure(truth, predicted)
        ari = adjusted_rand_score(truth, predicted)
    else:
        homogeneity = completeness = v_measure = ari = 0.0
    noise = sum(t == outlier_id for t in themes)
    return ThemeScores(
        v_measure=round(float(v_measure), 4),
        homogeneity=round(float(homogeneity), 4),
        completeness=round(float(completeness), 4),
        ari=round(float(ari), 4),
        noise_share=round(noise / len(themes), 4) if themes else 0.0,
        themes=len(set(themes) - {outlier_id}),
        documents=len(themes),
        labelled=len(pairs),
    )


# BEIR-format files.


def _jsonl(path: Path) -> Iterable[dict]:
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not a JSON object ({exc.msg})") from None


def _record_id(record: dict, path: Path) -> str:
    found = record.get("_id", record.get("id"))  # BEIR writes `_id`; some exports `id`
    if found is None:
        raise ValueError(f"{path}: a record without `_id` (or `id`): {str(record)[:80]}")
    return str(found)


def read_corpus(path: Path) -> list[dict]:
    """corpus.jsonl as documents: id, title, text."""
    return [
        {"id": _record_id(r, path), "title": r.get("title") or "", "text": r.get("text") or ""}
        for r in _jsonl(path)
    ]


def read_queries(path: Path) -> dict[str, str]:
    """queries.jsonl as query id -> text."""
    return {_record_id(r, path): str(r.get("text", "")) for r in _jsonl(path)}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """A qrels file: BEIR's TSV (query-id, corpus-id, score; header optional) or TREC's
    whitespace-separated `query 0 doc relevance`."""
    qrels: dict[str, dict[str, int]] = {}
    with Path(path).open(encoding="utf-8") as rows:
        for number, line in enumerate(rows, start=1):
            fields = line.split("\t") if "\t" in line else line.split()
            fields = [f.strip() for f in fields]
            if not any(fields) or (number == 1 and not fields[-1].lstrip("-").isdigit()):
                continue  # blank, or the header
            if len(fields) == 4:
                fields = [fields[0], fields[2], fields[3]]
            if len(fields) != 3 or not fields[2].lstrip("-").isdigit():
                raise ValueError(
                    f"{path}:{number}: expected query-id, corpus-id, score (tab-separated), "
                    f"got {line.strip()[:80]!r}"
                )
            qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
    return qrels


def dated_documents(documents: Sequence[dict], days: Sequence[date]) -> list[dict]:
    """Landing records of a corpus spread over `days` (document i on day i mod n, at noon UTC):
    an undated evaluation corpus becomes a few daily partitions, as production data is."""
    return [
        doc | {"created_at": datetime.combine(days[i % len(days)], time(12), UTC).isoformat()}
        for i, doc in enumerate(documents)
    ]
