"""Theme quality and stability on whole labelled sets, through the pipeline, against baselines.

Each set is landed into a fresh semsearch home with every record dated on one day (so the whole
set is one window) and run through Dagster with the default settings: ingest, chunks, the local
model's embeddings, index, themes. The `theme_assignments` table is then scored against the
labels. Printed per set, side by side in one run:

  - semsearch: the pipeline's themes (V-measure counting outliers as one cluster, homogeneity,
    completeness, ARI, outlier share, theme count, seconds of the themes step);
  - before: the previous recipe on the same vectors (UMAP + HDBSCAN leaf, min_cluster_size 15,
    no topic or outlier reduction);
  - notebook: PCA(50) + HDBSCAN(min_cluster_size=10);
  - kmeans(k): KMeans given the true number of labels (a bound an unsupervised method is not
    given);
  - stability: the window split into 10 days by id hash; themes of days 0-8, then days 1-9:
    the daily run (model kept, new day assigned) and a forced refit, as the share of documents
    in both windows that keep their theme id, and the ARI between the two windows.

    nice -n 10 .venv/bin/python benchmarks/bench_themes.py [SET ...]

SET is `banking77` (default), `hf_issues` (single-label issues of ../shared/datasets, by label)
or a path to a JSONL file of {"id", "text", "label"} records (e.g. CLINC150, converted from
github.com/clinc/oos-eval data_full.json: the 22,500 in-scope train/val/test queries).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import hdbscan
import numpy as np
import polars as pl
from dagster import DagsterInstance
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, homogeneity_completeness_v_measure

from semsearch.config import Settings
from semsearch.core.quality import assignments_kept
from semsearch.core.theme_clustering import ClusterParams, cluster_sample, doc_hash, unit_rows
from semsearch.core.themes import OUTLIERS, ArraySource, ThemeParams, assign_themes, fit_themes
from semsearch.runner import run_pipeline
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import EMBEDDINGS, THEME_ASSIGNMENTS

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets"
DAY = date(2026, 11, 2)


def load(name: str) -> list[dict]:
    if name == "banking77":
        path = DATASETS / "banking77/docs.jsonl"
    elif name == "hf_issues":
        path = DATASETS / "hf_datasets_issues/docs.jsonl"
    else:
        path = Path(name)
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if name == "hf_issues":  # issues with exactly one label, the title and body as text
        records = [
            {"id": r["id"], "text": f"{r['title']}\n{r['text'] or ''}", "label": r["labels"][0]}
            for r in records
            if len(r["labels"]) == 1
        ]
    return [{"id": str(r["id"]), "text": r["text"], "label": r["label"]} for r in records]


def scores(labels: list[str], predicted: list) -> str:
    h, c, v = homogeneity_completeness_v_measure(labels, predicted)
    ari = adjusted_rand_score(labels, predicted)
    noise = np.mean([p in (-1, OUTLIERS) for p in predicted])
    themes = len(set(predicted) - {-1, OUTLIERS})
    return f"V={v:.3f} h={h:.3f} c={c:.3f} ARI={ari:.3f} noise={noise:5.1%} themes={themes:<4}"


def through_pipeline(records: list[dict], root: Path) -> tuple[dict[str, str], float, Settings]:
    settings = Settings(home=str(root / "home"), partitions_start=DAY.isoformat())
    landing = settings.landing_path
    landing.mkdir(parents=True)
    with (landing / "set.jsonl").open("w") as out:
        for r in records:
            row = {"id": r["id"], "text": r["text"], "created_at": f"{DAY}T12:00:00Z"}
            out.write(json.dumps(row | {"category": r["label"]}) + "\n")
    with DagsterInstance.ephemeral(tempdir=str(root / "dagster")) as instance:
        run = run_pipeline(settings, instance, [DAY])
    seconds = sum(float(r.metadata.get("seconds_total", 0)) for r in run.for_asset("themes"))
    assigned = DeltaTables(settings.tables_path).read_partition(
        "theme_assignments", DAY, THEME_ASSIGNMENTS
    )
    theme_of = dict(assigned.unique("doc_id").select("doc_id", "theme_id").iter_rows())
    return theme_of, seconds, settings


def document_vectors(settings: Settings) -> tuple[list[str], np.ndarray]:
    """The pipeline's own vectors, a document's chunks averaged (as the themes stage does)."""
    embeddings = DeltaTables(settings.tables_path).read_partition("embeddings", DAY, EMBEDDINGS)
    frame = embeddings.group_by("doc_id").agg(pl.col("vector")).sort("doc_id")
    vectors = [np.mean(np.stack(chunks), axis=0) for chunks in frame["vector"].to_list()]
    return frame["doc_id"].to_list(), unit_rows(np.stack(vectors))


def baselines(ids: list[str], vectors: np.ndarray, labels: list[str]) -> None:
    k = len(set(labels))
    start = time.perf_counter()
    before = ClusterParams(15, 0.0, 5, 5, 15, 1.0, 0.0)  # the previous defaults
    predicted = cluster_sample(vectors, before)
    print(f"  {'before (leaf, size 15)':<28} {scores(labels, predicted.tolist())} "
          f"{time.perf_counter() - start:.0f}s")  # fmt: skip
    start = time.perf_counter()
    reduced = PCA(n_components=50, random_state=0).fit_transform(vectors)
    predicted = hdbscan.HDBSCAN(min_cluster_size=10).fit_predict(reduced)
    print(f"  {'notebook PCA50+HDBSCAN':<28} {scores(labels, predicted.tolist())} "
          f"{time.perf_counter() - start:.0f}s")  # fmt: skip
    start = time.perf_counter()
    predicted = KMeans(n_clusters=k, n_init=3, random_state=0).fit_predict(vectors)
    print(f"  {f'kmeans(k={k}, given)':<28} {scores(labels, predicted.tolist())} "
          f"{time.perf_counter() - start:.0f}s")  # fmt: skip


def stability(ids: list[str], vectors: np.ndarray, params: ThemeParams) -> None:
    days = np.array([doc_hash(d) % 10 for d in ids])

    def window(mask: np.ndarray) -> ArraySource:
        rows = np.flatnonzero(mask)
        return ArraySource([ids[i] for i in rows], vectors[rows], ["-"] * len(rows))

    first = fit_themes(window(days <= 8), params)
    later = {ids[i] for i in np.flatnonzero(days >= 1)}
    known = first.assignments.filter(pl.col("doc_id").is_in(list(later)))
    daily = assign_themes(first.themes, known, window(days == 9).documents())
    refit = fit_themes(window(days >= 1), params, first.assignments, first.themes)
    for name, result in (("daily run (model kept)", daily), ("refit", refit)):
        kept = assignments_kept(result.assignments, first.assignments, 0.0, key="doc_id")
        print(
            f"  stability, {name:<23} {kept.metadata['share_kept']:.1%} of "
            f"{kept.metadata['compared']} documents keep their theme, "
            f"ARI {kept.metadata['ari']:.3f}"
        )


def main() -> None:
    sets = sys.argv[1:] or ["banking77"]
    for name in sets:
        records = load(name)
        labels_by_id = {r["id"]: r["label"] for r in records}
        print(f"{name}: {len(records)} documents, {len(set(labels_by_id.values()))} labels")
        with tempfile.TemporaryDirectory() as tmp:
            theme_of, seconds, settings = through_pipeline(records, Path(tmp))
            ids, vectors = document_vectors(settings)
            labels = [labels_by_id[i] for i in ids]
            print(f"  {'semsearch (pipeline)':<28} {scores(labels, [theme_of[i] for i in ids])} "
                  f"{seconds:.0f}s")  # fmt: skip
            baselines(ids, vectors, labels)
            stability(ids, vectors, ThemeParams.from_settings(settings))


if __name__ == "__main__":
    main()
