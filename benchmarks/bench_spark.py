"""The local engine against Spark local[2] on the same day, and the driver's memory as days grow.

    nice -n 10 .venv/bin/python benchmarks/bench_spark.py [--chunks N] [--sizes A,B] [--parts 1,2]

Every measurement is two fresh processes. The first lands ROWS documents on one day (Banking77
messages, each made unique so every chunk is a cache miss) and ingests them into bronze. The
second (`--one ENGINE ROWS BACKEND HOME`) materializes raw_documents, chunks and the embeddings
step through Dagster on ENGINE, and reports chunks, seconds of raw_documents and of the chunks +
embeddings steps, chunks/s, and the peak RSS of its Python driver (ru_maxrss; on Spark the JVM
and the Python workers are other processes: the driver holding a day's rows or vectors would
show here). Part 1: both engines on the same 20k+ chunks with the local model. Part 2: both
engines' driver peak as the day grows, with the openai backend against the loopback fake server
(cheap vectors, so the larger days take minutes, not hours).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script

DAY = date(2026, 3, 2)
DOCS = ROOT.parent / "shared" / "datasets" / "banking77" / "docs.jsonl"


def bench_settings(engine: str, home: Path, backend: str, base_url: str = ""):
    """The benchmark's home on `engine`; the openai backend points at the fake server."""
    from semsearch.config import Settings

    settings = Settings(
        home=str(home), partitions_start="2026-01-01", engine=engine, spark_master="local[2]"
    )
    if backend == "openai":
        settings = settings.replace(
            embedding_backend="openai",
            embedding_model="text-embedding-bench",
            openai_base_url=base_url,
            openai_expected_dimension=384,
            openai_max_inputs_per_request=512,
        )
    return settings


def land(rows: int, home: Path) -> None:
    """Run in a fresh process: write the day's landing file and ingest it into bronze."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from dagster import DagsterInstance, materialize

    from semsearch.defs.definitions import build_resources
    from semsearch.defs.stages import ingest_landing_files

    texts = [json.loads(line)["text"] for line in DOCS.read_text().splitlines() if line.strip()]
    settings = bench_settings("local", home, "local")  # ingest embeds nothing
    landing = settings.landing_path
    landing.mkdir(parents=True)
    with (landing / "day.jsonl").open("w") as out:
        for i in range(rows):
            text = f"{texts[i % len(texts)]} (ticket {i})"
            out.write(json.dumps({"id": f"t{i}", "text": text, "created_at": f"{DAY}T12:00:00Z"}))
            out.write("\n")
    with DagsterInstance.ephemeral() as instance:
        materialize([ingest_landing_files], resources=build_resources(settings), instance=instance)


def one(engine: str, rows: int, backend: str, home: Path) -> dict:
    """Run in a fresh process: raw_documents, then chunks + embeddings of the day, timed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from dagster import DagsterInstance, materialize

    from semsearch.defs.definitions import build_resources, daily_partitions
    from semsearch.defs.stages import build_pipeline_assets
    from semsearch.defs.stages.embeddings import OUTPUT_TABLES
    from semsearch.testing.fake_openai_server import FakeOpenAIServer

    server = None
    if backend == "openai":
        server = FakeOpenAIServer(dimension=384).__enter__()
        os.environ["OPENAI_API_KEY"] = "sk-bench"
    settings = bench_settings(engine, home, backend, server.base_url if server else "")
    resources = build_resources(settings)
    daily = build_pipeline_assets(daily_partitions(settings), 30, engine=engine)
    key = DAY.isoformat()
    if engine == "spark":  # the session (JVM) starts here, not inside the timed steps
        from pyspark.sql import SparkSession

        from semsearch.defs.resources import spark_config

        builder = SparkSession.builder
        for name, value in spark_config(settings).items():
            builder = builder.config(name, value)
        builder.getOrCreate()
    with DagsterInstance.ephemeral() as instance:
        start = time.perf_counter()
        materialize(
            daily,
            selection=["raw_documents"],
            partition_key=key,
            resources=resources,
            instance=instance,
        )
        raw_seconds = time.perf_counter() - start
        start = time.perf_counter()
        result = materialize(
            daily,
            selection=["chunks", *OUTPUT_TABLES],
            partition_key=key,
            resources=resources,
            instance=instance,
        )
        seconds = time.perf_counter() - start
    chunks = [
        e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "chunks"
    ][0]
    if server is not None:
        server.__exit__(None, None, None)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "engine": engine,
        "rows": rows,
        "backend": backend,
        "chunks": chunks,
        "raw_seconds": round(raw_seconds, 1),
        "seconds": round(seconds, 1),
        "chunks_per_s": round(chunks / seconds, 1),
        "driver_peak_mb": round(peak_mb),
    }


def measure(engine: str, rows: int, backend: str) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"bench_spark_{engine}_"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for step in ("--land", "--one"):
        command = [sys.executable, __file__, step, engine, str(rows), backend, str(home)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            raise SystemExit(f"{step} {engine} {rows} failed:\n{done.stderr[-3000:]}")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    shutil.rmtree(home, ignore_errors=True)
    return json.loads(lines[-1])


def table(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    print(
        "| engine | backend | documents | chunks | raw_documents s | chunks + embeddings s "
        "| chunks/s | driver peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['backend']} | {r['rows']:,} | {r['chunks']:,} | "
            f"{r['raw_seconds']} | {r['seconds']} | {r['chunks_per_s']} | {r['driver_peak_mb']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000, help="documents of part 1")
    parser.add_argument("--sizes", default="5000,20000,50000", help="documents of part 2")
    parser.add_argument("--parts", default="1,2", help="which parts to run: 1, 2 or 1,2")
    parser.add_argument("--land", nargs=4, metavar=("ENGINE", "ROWS", "BACKEND", "HOME"))
    parser.add_argument("--one", nargs=4, metavar=("ENGINE", "ROWS", "BACKEND", "HOME"))
    args = parser.parse_args()
    if args.land:
        _, rows, _, home = args.land
        land(int(rows), Path(home))
        return
    if args.one:
        engine, rows, backend, home = args.one
        print(json.dumps(one(engine, int(rows), backend, Path(home))))
        return
    parts = args.parts.split(",")
    if "1" in parts:
        part1 = [measure(e, args.chunks, "local") for e in ("local", "spark")]
        table(part1, f"1. same {part1[0]['chunks']:,} chunks, local model")
    if "2" in parts:
        sizes = [int(s) for s in args.sizes.split(",")]
        part2 = [measure(e, n, "openai") for n in sizes for e in ("local", "spark")]
        table(part2, "2. driver peak memory as the day grows, both engines (openai, fake server)")


if __name__ == "__main__":
    main()
