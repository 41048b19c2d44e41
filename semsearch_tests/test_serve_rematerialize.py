"""The server while the pipeline writes: searches during a day's re-materialization see the
old day or the new day, never a mix or an error, and the new day without a restart."""

from __future__ import annotations

import threading
from datetime import date

import requests

from semsearch.defs.definitions import INGEST_JOB, build_definitions
from semsearch.query.searcher import searcher_for
from semsearch.serve.app import create_app
from semsearch.testing.live_server import live_server
from semsearch_tests.ops_support import (
    DAYS,
    QUIET,
    copy_home,
    run_day,
    sample_records,
    temp_instance,
    write_jsonl,
)

DAY = DAYS[1]


def day_documents(url: str, day: date) -> frozenset[str]:
    params = {"q": "a problem with my card", "k": 1000, "since": day, "until": day}
    response = requests.get(url + "/api/search", params=params, timeout=120)
    assert response.status_code == 200, response.text
    return frozenset(h["doc_id"] for h in response.json()["hits"])


def test_searches_during_a_rematerialization_see_the_old_or_the_new_day(clean_days, tmp_path):
    settings = copy_home(clean_days[0], tmp_path)
    records = sample_records()
    on_day = [r for r in records if r["created_at"].startswith(DAY.isoformat())]
    changed = {r["id"] for r in on_day[len(on_day) // 2 :]}
    new_records = [r if r["id"] not in changed else {**r, "id": r["id"] + "-v2"} for r in records]

    with live_server(create_app(settings, searcher_for(settings))) as url:
        old = day_documents(url, DAY)
        assert old == {r["id"] for r in on_day}
        new = (old - changed) | {i + "-v2" for i in changed}
        seen: list[frozenset[str]] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def keep_searching() -> None:
            while not done.is_set():
                try:
                    seen.append(day_documents(url, DAY))
                except BaseException as exc:  # noqa: BLE001 (reported by the test below)
                    errors.append(exc)

        searchers = [threading.Thread(target=keep_searching) for _ in range(3)]
        for thread in searchers:
            thread.start()
        try:
            write_jsonl(settings.landing_path / "tickets.jsonl", new_records)
            defs = build_definitions(settings)
            with temp_instance(tmp_path) as instance:
                ingest = defs.resolve_job_def(INGEST_JOB)
                assert ingest.execute_in_process(instance=instance, run_config=QUIET).success
                assert run_day(defs, instance, DAY).success
            after = day_documents(url, DAY)  # picked up without a restart
        finally:
            done.set()
            for thread in searchers:
                thread.join(timeout=120)

    assert not errors, errors[:3]
    assert after == new
    assert len(seen) >= 3, "the searches did not overlap the run"
    mixed = [s for s in seen if s not in (old, new)]
    assert not mixed, f"{len(mixed)} of {len(seen)} searches saw a mix: {sorted(mixed[0])}"
    assert old in seen
