"""Theme quality on Banking77 against its 77 intent labels, side by side with a notebook baseline.

Prints V-measure, homogeneity, completeness, noise share, theme count and seconds for:
  - baseline: PCA(50) + HDBSCAN(min_cluster_size=10), the typical notebook recipe;
  - semsearch: `find_themes` (UMAP 5-d, fixed seed, HDBSCAN leaf selection), as the themes
    asset runs it.

    .venv/bin/python benchmarks/bench_themes.py [N] [path/to/banking77/docs.jsonl]
"""

import json
import sys
import time
from pathlib import Path

import hdbscan
import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import homogeneity_completeness_v_measure

from semsearch.core.embedding import LocalBackend
from semsearch.core.themes import OUTLIERS, ThemeParams, find_themes

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/datasets/banking77/docs.jsonl"


def load(path: Path, n: int) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    step = max(1, len(records) // n)
    return records[::step][:n]


def report(name: str, labels: list[str], predicted: list, seconds: float) -> None:
    h, c, v = homogeneity_completeness_v_measure(labels, predicted)
    noise = np.mean([p in (-1, OUTLIERS) for p in predicted])
    themes = len(set(predicted) - {-1, OUTLIERS})
    print(
        f"{name:<36} V={v:.3f} (h={h:.3f} c={c:.3f})  noise={noise:.1%}  "
        f"themes={themes:<4} {seconds:.1f}s"
    )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    path = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_DATA
    records = load(path, n)
    texts = [r["text"] for r in records]
    labels = [r["label"] for r in records]
    ids = [r["id"] for r in records]
    vectors = LocalBackend().embed(texts).vectors
    print(f"{len(records)} Banking77 messages, {len(set(labels))} intents")

    start = time.perf_counter()
    reduced = PCA(n_components=50, random_state=0).fit_transform(vectors)
    baseline = hdbscan.HDBSCAN(min_cluster_size=10).fit_predict(reduced)
    report("baseline PCA50+HDBSCAN", labels, baseline.tolist(), time.perf_counter() - start)

    variants = [ThemeParams(min_cluster_size=10), ThemeParams(min_cluster_size=15)]
    for params in variants:
        start = time.perf_counter()
        result = find_themes(ids, vectors, texts, params)
        by_id = dict(zip(result.chunk_ids, result.theme_ids, strict=True))
        name = f"semsearch min_cluster_size={params.min_cluster_size}"
        report(name, labels, [by_id[i] for i in ids], time.perf_counter() - start)


if __name__ == "__main__":
    main()
