"""Shared fixtures: real data from ../shared/datasets, the real local model (loaded once per
session), and a fresh semsearch home (landing folder, Delta tables, LanceDB) per test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dagster import DagsterInstance

from semsearch.config import Settings
from semsearch.core.embedding import LocalBackend

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATASETS = Path(
    os.environ.get("SEMSEARCH_DATASETS", Path(__file__).parents[2] / "shared" / "datasets")
)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="session")
def local_backend() -> LocalBackend:
    return LocalBackend()


def read_dataset(name: str) -> list[dict]:
    path = DATASETS / name / "docs.jsonl"
    if not path.exists():
        pytest.fail(f"dataset not found: {path} (set SEMSEARCH_DATASETS to the datasets folder)")
    return read_jsonl(path)


@pytest.fixture(scope="session")
def hf_issues() -> list[dict]:
    """The dated GitHub issues, as landing records (id, title, text, date, labels)."""
    return read_dataset("hf_datasets_issues")


@pytest.fixture(scope="session")
def banking77() -> list[dict]:
    return read_dataset("banking77")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A semsearch home in a temp folder; small ANN threshold off by default."""
    return Settings(home=str(tmp_path / "home"), partitions_start="2020-01-01")


@pytest.fixture
def instance(tmp_path: Path):
    with DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster")) as dagster_instance:
        yield dagster_instance


@pytest.fixture(scope="session")
def clean_days(tmp_path_factory):
    """Three clean days landed and materialized with every check, once per session: the
    settings and each day's run result. Tests that change tables work on a copy
    (`ops_support.copy_home`), so this home stays clean."""
    from semsearch.defs.definitions import INGEST_JOB, build_definitions
    from semsearch_tests.ops_support import (
        DAYS,
        QUIET,
        ops_settings,
        run_day,
        sample_records,
        temp_instance,
    )

    root = tmp_path_factory.mktemp("clean_days")
    settings = ops_settings(root)
    write_jsonl(settings.landing_path / "tickets.jsonl", sample_records())
    defs = build_definitions(settings)
    with temp_instance(root) as instance:
        defs.resolve_job_def(INGEST_JOB).execute_in_process(instance=instance, run_config=QUIET)
        results = {day: run_day(defs, instance, day) for day in DAYS}
    return settings, results


@pytest.fixture
def home(clean_days, monkeypatch):
    """The session's materialized home (read only), as the environment names it."""
    settings = clean_days[0]
    monkeypatch.setenv("SEMSEARCH_HOME", settings.home)
    monkeypatch.setenv("SEMSEARCH_PARTITIONS_START", settings.partitions_start)
    return settings


@pytest.fixture(scope="module")
def served(clean_days):
    """(base URL, settings) of a real uvicorn server over the three clean days."""
    from semsearch.query.searcher import searcher_for
    from semsearch.serve.app import create_app
    from semsearch.testing.live_server import live_server

    settings, _ = clean_days
    with live_server(create_app(settings, searcher_for(settings))) as url:
        yield url, settings
