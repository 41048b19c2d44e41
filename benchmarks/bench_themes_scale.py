"""Time and peak memory of the themes stage at 10k, 100k and 1M chunks, beside its quality.

The window: 30 days of Banking77 messages embedded by the local model. Up to the set's size each
message is one document of one chunk; past it, documents are copies of real messages whose two
chunks are the message's vector plus Gaussian noise (so they carry the message's intent label).
The tables are written straight to Delta, then the real `themes` multi-asset is materialized
through Dagster for the window's last day, in a fresh process (as the daemon runs it), whose
peak resident memory is measured. The first run compiles numba's code into the persistent cache;
it is shown, then every size runs with the cache warm.

    nice -n 10 .venv/bin/python benchmarks/bench_themes_scale.py [CHUNKS ...]

Prints, per size: documents, themes, outlier share, V-measure against the intents (outliers as
one cluster), the stage's seconds (total, clustering) and the process's peak memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets"
FIRST = date(2026, 10, 1)
DAYS = 30
NOISE = 0.02  # per dimension: a noisy copy keeps a cosine of about 0.93 to its message
RUN = "--materialize"
CACHE = Path.home() / ".cache/semsearch/bench"  # the set's vectors, embedded once


def base_set() -> tuple[np.ndarray, list[str], list[str]]:
    records = [
        json.loads(line) for line in (DATASETS / "banking77/docs.jsonl").read_text().splitlines()
    ]
    texts, labels = [r["text"] for r in records], [r["label"] for r in records]
    path = CACHE / "banking77-minilm.npy"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        from semsearch.core.embedding import LocalBackend

        np.save(path, LocalBackend().embed(texts).vectors)
    return np.load(path), texts, labels


def write_window(home: Path, chunks: int, base: tuple[np.ndarray, list[str], list[str]]) -> dict:
    """30 days of documents with `chunks` chunks in all; returns doc_id -> label."""
    from semsearch.config import Settings
    from semsearch.storage.delta import DeltaTables
    from semsearch.storage.schemas import CHUNKS, EMBEDDINGS

    vectors, texts, labels = base
    real = min(chunks, len(texts))
    copies = (chunks - real) // 2  # documents of two noisy chunks
    rng = np.random.default_rng(0)
    tables = DeltaTables(Settings(home=str(home)).tables_path)
    truth: dict[str, str] = {}
    per_day_real = np.array_split(np.arange(real), DAYS)
    per_day_copies = np.array_split(np.arange(copies), DAYS)
    for offset in range(DAYS):
        day = FIRST + timedelta(days=offset)
        doc_ids, chunk_ids, rows, positions = [], [], [], []
        for i in per_day_real[offset]:
            doc_ids.append(f"m{i}")
            chunk_ids.append(f"m{i}-0")
            rows.append(i)
            positions.append(0)
            truth[f"m{i}"] = labels[i]
        source = rng.integers(0, len(texts), len(per_day_copies[offset]))
        for j, i in zip(per_day_copies[offset], source, strict=True):
            for position in (0, 1):
                doc_ids.append(f"c{j}")
                chunk_ids.append(f"c{j}-{position}")
                rows.append(i)
                positions.append(position)
            truth[f"c{j}"] = labels[i]
        rows = np.asarray(rows)
        day_vectors = vectors[rows]
        noisy = np.asarray([d.startswith("c") for d in doc_ids])
        day_vectors[noisy] += rng.normal(0, NOISE, (noisy.sum(), vectors.shape[1]))
        day_vectors /= np.linalg.norm(day_vectors, axis=1, keepdims=True)
        n, dim = day_vectors.shape
        flat = pa.array(day_vectors.astype(np.float32).ravel())
        offsets = pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32))
        embeddings = pa.table(
            {
                "chunk_id": chunk_ids,
                "doc_id": doc_ids,
                "partition_date": [day] * n,
                "model_id": ["local/all-MiniLM-L6-v2"] * n,
                "dimension": [dim] * n,
                "vector": pa.ListArray.from_arrays(offsets, flat),
            }
        )
        chunk_rows = pa.table(
            {
                "chunk_id": chunk_ids,
                "doc_id": doc_ids,
                "position": positions,
                "text": [texts[i] for i in rows],
                "token_count": [12] * n,
                "partition_date": [day] * n,
            }
        )
        tables.replace_partition("embeddings", day, embeddings, EMBEDDINGS)
        tables.replace_partition("chunks", day, chunk_rows, CHUNKS)
    return truth


def materialize(home: str) -> None:
    """In the child process: the themes multi-asset for the window's last day, through Dagster."""
    from dagster import AssetKey, DagsterInstance

    from semsearch.config import Settings
    from semsearch.defs.definitions import PIPELINE_JOB, build_definitions, console_run_config

    settings = Settings(home=home, partitions_start=FIRST.isoformat())
    job = build_definitions(settings).resolve_job_def(PIPELINE_JOB)
    themes = job.get_subset(
        asset_selection={AssetKey("themes"), AssetKey("theme_assignments")},
        asset_check_selection=set(),
    )
    last = FIRST + timedelta(days=DAYS - 1)
    with DagsterInstance.ephemeral() as instance:
        result = themes.execute_in_process(
            partition_key=last.isoformat(), instance=instance, run_config=console_run_config()
        )
    metadata = {
        k: getattr(v, "value", v)
        for k, v in result.asset_materializations_for_node("themes_stage")[0].metadata.items()
        if isinstance(getattr(v, "value", v), int | float | str)
    }
    print(json.dumps(metadata))


def run_child(home: Path) -> tuple[dict, float, float]:
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, __file__, RUN, str(home)], stdout=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    out = child.stdout.read()
    if status != 0:
        raise RuntimeError(f"the themes run failed (status {status})")
    return json.loads(out.strip().splitlines()[-1]), seconds, usage.ru_maxrss / 1024


def quality(home: Path, truth: dict) -> float:
    from sklearn.metrics import v_measure_score

    from semsearch.config import Settings
    from semsearch.storage.delta import DeltaTables
    from semsearch.storage.schemas import THEME_ASSIGNMENTS

    tables = DeltaTables(Settings(home=str(home)).tables_path)
    last = FIRST + timedelta(days=DAYS - 1)
    docs = tables.read_partition("theme_assignments", last, THEME_ASSIGNMENTS).unique("doc_id")
    return v_measure_score([truth[d] for d in docs["doc_id"]], docs["theme_id"].to_list())


def main() -> None:
    sizes = [int(s) for s in sys.argv[1:]] or [10_000, 100_000, 1_000_000]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = base_set()
        print(f"{'chunks':>9} {'documents':>10} {'themes':>7} {'noise':>6} {'V':>6} "
              f"{'seconds':>8} {'cluster s':>9} {'peak MB':>8}")  # fmt: skip
        for i, size in enumerate(sizes):
            home = root / f"home-{size}"
            truth = write_window(home, size, base)
            runs = 2 if i == 0 else 1  # the first process compiles numba's code, the next reuse it
            for attempt in range(runs):
                metadata, seconds, peak = run_child(home)
                note = " (numba compiling)" if runs == 2 and attempt == 0 else ""
                print(
                    f"{size:>9,} {metadata['documents']:>10,} {metadata['themes']:>7} "
                    f"{metadata['noise_share']:>6.1%} {quality(home, truth):>6.3f} "
                    f"{seconds:>8.1f} {metadata.get('seconds_cluster', 0):>9.1f} "
                    f"{peak:>8.0f}{note}",
                    flush=True,
                )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == RUN:
        materialize(sys.argv[2])
    else:
        main()
