"""The `embeddings` asset (local model, through Dagster) against the bare model, same texts.

    .venv/bin/python benchmarks/bench_embeddings.py [--docs PATH] [--texts 2000] [--rounds 2]

The docs path defaults to $SEMSEARCH_BENCH_DOCS, else ../shared/datasets/banking77/docs.jsonl
(JSONL with a `text` field). Each round, on a fresh semsearch home (cold cache):

1. raw: `SentenceTransformer.encode` in a loop over batches of the configured batch size, on the
   day's chunk texts (the baseline: no Dagster, no tables, no cache), measured just before and
   just after step 2 and averaged, so CPU load drifting during the round biases neither side;
   also one `encode` call over all texts (what `LocalBackend` does: sentence-transformers sorts
   one call's texts by length, so batches pad less), which isolates the pipeline's overhead;
2. first: the `embeddings` asset materialized through Dagster; its embed step (cache lookup +
   model + cache write) and the whole asset are timed, and model calls are counted at `encode`;
3. rerun: the same partition re-materialized, unchanged: it should make zero model calls.

Targets: embed-step throughput >= 90% of raw; the re-run <= 5% of the first run's time.

Wall time on a shared machine swings with other people's load, so the process's CPU time is
reported too: throughput per CPU-second is the steadier comparison. (The asset's CPU time is
that of the whole `materialize()` call, Dagster included, so its ratio is a lower bound.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from dagster import DagsterInstance, materialize

from semsearch.config import Settings
from semsearch.core.embedding import LocalBackend
from semsearch.defs.checks import QualityResource
from semsearch.defs.definitions import daily_partitions
from semsearch.defs.resources import EmbeddingResource, PipelineResource, StorageResource
from semsearch.defs.stages import build_pipeline_assets, ingest_landing_files
from semsearch.defs.stages.embeddings import OUTPUT_TABLES
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import CHUNKS

DAY = date(2026, 3, 2)
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
DEFAULT_DOCS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "banking77"


class CallCounter:
    """Counts calls to the shared model's `encode` (it still runs the real model)."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, 0
        self._encode: Callable = model.encode

    def __enter__(self) -> CallCounter:
        def encode(*args, **kwargs):
            self.calls += 1
            return self._encode(*args, **kwargs)

        self.model.encode = encode
        return self

    def __exit__(self, *exc: object) -> None:
        del self.model.encode  # back to the class's method


def load_texts(path: Path, n: int) -> list[str]:
    texts = []
    with path.open() as handle:
        for line in handle:
            if line.strip():
                texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    return texts


def prepare(home: Path, texts: list[str]) -> tuple[Settings, dict, list]:
    """A semsearch home with the texts landed, ingested and chunked for DAY."""
    settings = Settings(home=str(home), partitions_start="2026-01-01")
    settings.landing_path.mkdir(parents=True)
    records = [
        {"id": f"d{i}", "text": t, "created_at": f"{DAY}T12:00:00Z"} for i, t in enumerate(texts)
    ]
    (settings.landing_path / "docs.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records)
    )
    resources = {
        "storage": StorageResource.from_settings(settings),
        "pipeline": PipelineResource.from_settings(settings),
        "embedder": EmbeddingResource.from_settings(settings),
        "quality": QualityResource.from_settings(settings),
    }
    daily = build_pipeline_assets(daily_partitions(settings), settings.theme_window_days)
    return settings, resources, daily


def materialize_day(assets, selection, resources, instance) -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    result = materialize(
        assets,
        run_config=QUIET,
        selection=selection,
        partition_key=DAY.isoformat(),
        resources=resources,
        instance=instance,
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    events = (
        result.asset_materializations_for_node("embeddings") if "embeddings" in selection else []
    )
    meta = {k: getattr(v, "value", v) for k, v in events[0].metadata.items()} if events else {}
    return {"wall": wall, "cpu": cpu, **meta}


def raw_loop(
    model, texts: list[str], batch_size: int, one_call: bool = False
) -> tuple[float, float]:
    """Wall and CPU seconds to encode `texts` in batches (or in one call)."""
    start, cpu = time.perf_counter(), time.process_time()
    step = len(texts) if one_call else batch_size
    for i in range(0, len(texts), step):
        model.encode(
            texts[i : i + step],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return time.perf_counter() - start, time.process_time() - cpu


def one_round(texts: list[str], backend: LocalBackend, batch_size: int) -> dict:
    with (
        tempfile.TemporaryDirectory() as tmp,
        DagsterInstance.ephemeral(tempdir=f"{tmp}/dg") as inst,
    ):
        settings, resources, daily = prepare(Path(tmp) / "home", texts)
        materialize([ingest_landing_files], run_config=QUIET, resources=resources, instance=inst)
        materialize_day(daily, ["raw_documents", "chunks"], resources, inst)
        chunks = DeltaTables(settings.tables_path).read_partition("chunks", DAY, CHUNKS)
        chunk_texts = chunks.sort("chunk_id")["text"].to_list()
        raw_before = raw_loop(backend._model, chunk_texts, batch_size)
        one_before = raw_loop(backend._model, chunk_texts, batch_size, one_call=True)
        with CallCounter(backend._model) as first_calls:
            first = materialize_day(daily, list(OUTPUT_TABLES), resources, inst)
        one_after = raw_loop(backend._model, chunk_texts, batch_size, one_call=True)
        raw_after = raw_loop(backend._model, chunk_texts, batch_size)
        with CallCounter(backend._model) as rerun_calls:
            rerun = materialize_day(daily, list(OUTPUT_TABLES), resources, inst)
    n = len(chunk_texts)
    return {
        "chunks": n,
        "raw_per_s": 2 * n / (raw_before[0] + raw_after[0]),
        "one_call_per_s": 2 * n / (one_before[0] + one_after[0]),
        "raw_per_cpu_s": 2 * n / (raw_before[1] + raw_after[1]),
        "one_call_per_cpu_s": 2 * n / (one_before[1] + one_after[1]),
        "asset_per_cpu_s": n / first["cpu"],
        "embed_per_s": n / first["seconds_embed"],
        "asset_per_s": n / first["seconds_total"],
        "first_asset_s": first["seconds_total"],
        "first_wall_s": first["wall"],
        "first_calls": first_calls.calls,
        "rerun_asset_s": rerun["seconds_total"],
        "rerun_wall_s": rerun["wall"],
        "rerun_calls": rerun_calls.calls,
        "rerun_requests": rerun["model_requests"],
    }


def report(rounds: list[dict], batch_size: int) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    print(f"{rounds[0]['chunks']} chunks, batch {batch_size}, {len(rounds)} round(s), medians:")
    print(f"  raw encode loop           {med('raw_per_s'):8.1f} chunks/s")
    print(f"  raw single encode call    {med('one_call_per_s'):8.1f} chunks/s")
    print(
        f"  asset embed step          {med('embed_per_s'):8.1f} chunks/s  "
        f"= {med('embed_per_s') / med('raw_per_s'):.1%} of raw loop (target >= 90%), "
        f"{med('embed_per_s') / med('one_call_per_s'):.1%} of single call"
    )
    print(
        f"  asset whole (seconds_total){med('asset_per_s'):7.1f} chunks/s  "
        f"= {med('asset_per_s') / med('raw_per_s'):.1%} of raw loop, "
        f"{med('asset_per_s') / med('one_call_per_s'):.1%} of single call"
    )
    print(
        f"  per CPU-second: raw loop {med('raw_per_cpu_s'):.1f}, single call "
        f"{med('one_call_per_cpu_s'):.1f}, asset (whole materialize) {med('asset_per_cpu_s'):.1f} "
        f"chunks = {med('asset_per_cpu_s') / med('raw_per_cpu_s'):.1%} of raw loop, "
        f"{med('asset_per_cpu_s') / med('one_call_per_cpu_s'):.1%} of single call"
    )
    print(
        f"  first run: asset {med('first_asset_s'):.2f} s, materialize() wall "
        f"{med('first_wall_s'):.2f} s, model calls {med('first_calls'):.0f}"
    )
    print(
        f"  re-run:    asset {med('rerun_asset_s'):.2f} s "
        f"({med('rerun_asset_s') / med('first_asset_s'):.1%} of first, target <= 5%), "
        f"materialize() wall {med('rerun_wall_s'):.2f} s "
        f"({med('rerun_wall_s') / med('first_wall_s'):.1%}), model calls "
        f"{max(r['rerun_calls'] for r in rounds)}, model_requests "
        f"{max(r['rerun_requests'] for r in rounds)} (target 0)"
    )
    for i, r in enumerate(rounds, 1):
        print(
            f"  round {i}: raw loop {r['raw_per_s']:.1f}/s, single call "
            f"{r['one_call_per_s']:.1f}/s, embed step {r['embed_per_s']:.1f}/s, "
            f"asset {r['asset_per_s']:.1f}/s, re-run {r['rerun_asset_s']:.3f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_docs = os.environ.get("SEMSEARCH_BENCH_DOCS", str(DEFAULT_DOCS / "docs.jsonl"))
    parser.add_argument("--docs", type=Path, default=Path(default_docs))
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    texts = load_texts(args.docs, args.texts)
    backend = LocalBackend(batch_size=Settings().embedding_batch_size)
    raw_loop(backend._model, texts[:256], backend.batch_size)  # warm-up, outside every timing
    rounds = [one_round(texts, backend, backend.batch_size) for _ in range(args.rounds)]
    report(rounds, backend.batch_size)


if __name__ == "__main__":
    main()
