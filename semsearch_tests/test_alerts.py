"""Alerts: one message per new failure to a real webhook on 127.0.0.1 and the alerts table,
never twice for the same failure, a resolved message when it recovers, log-only without URL."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from semsearch.core.alerts import (
    FIRING,
    RESOLVED,
    Signal,
    latest_per_key,
    slack_payload,
    transitions,
)
from semsearch.defs.alerts import WEBHOOK_ENV
from semsearch.defs.definitions import INGEST_JOB, build_definitions
from semsearch.storage.alerts_store import read_alerts
from semsearch.storage.delta import DeltaTables
from semsearch_tests.ops_support import (
    DAYS,
    QUIET,
    ops_settings,
    run_day,
    sample_records,
    temp_instance,
    write_jsonl,
)
from semsearch_tests.ops_support import tick as tick_sensor

DAY = DAYS[1]


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        received = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/semsearch"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self) -> list[dict]:
        taken = list(self.payloads)
        self.payloads.clear()
        return taken


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()


def tick(defs, instance, cursor):
    return tick_sensor(defs, instance, "alert_sensor", cursor).cursor


def land(settings, bad_rows: int) -> None:
    good = sample_records([DAY], per_day=6)
    bad = [
        {"id": f"bad-{i}", "text": "", "created_at": f"{DAY}T10:00:00Z"} for i in range(bad_rows)
    ]
    write_jsonl(settings.landing_path / "tickets.jsonl", good + bad)


def headlines(payloads: list[dict]) -> list[str]:
    return sorted(p["text"].split(":", 2)[-1].split(": ")[0].strip() for p in payloads)


def test_failures_alert_once_and_recoveries_resolve(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
    settings = ops_settings(tmp_path, alert_webhook_url="set")
    defs = build_definitions(settings)
    with temp_instance(tmp_path) as instance:
        ingest = defs.resolve_job_def(INGEST_JOB)
        land(settings, bad_rows=4)  # 40% of the file rejected: a blocking check fails
        ingest.execute_in_process(instance=instance, run_config=QUIET)
        assert not run_day(defs, instance, DAY).success
        cursor = tick(defs, instance, None)
        fired = receiver.take()
        assert len(fired) == 2
        texts = " | ".join(p["text"] for p in fired)
        assert "raw_documents/rejected_share on 2026-11-04" in texts
        assert "run of daily_pipeline on 2026-11-04" in texts
        assert all(p["blocks"][0]["type"] == "section" for p in fired)

        # The same failure again: a new run, a new evaluation, but no new alert.
        assert not run_day(defs, instance, DAY).success
        cursor = tick(defs, instance, cursor)
        assert receiver.take() == []

        land(settings, bad_rows=0)  # fixed at the source
        ingest.execute_in_process(instance=instance, run_config=QUIET)
        assert run_day(defs, instance, DAY).success
        tick(defs, instance, cursor)
        after_fix = receiver.take()
        resolved = [p for p in after_fix if "RESOLVED" in p["text"]]
        assert len(resolved) == 2  # (six documents are too few for themes: WARN alerts too)
        table = read_alerts(DeltaTables(settings.tables_path))
        history = dict(table.group_by("key", maintain_order=True).agg("status").iter_rows())
        assert history["check:raw_documents/rejected_share:2026-11-04"] == [FIRING, RESOLVED]
        assert history["run:daily_pipeline:2026-11-04"] == [FIRING, RESOLVED]
        assert table["delivered"].all()
        assert receiver.url not in " ".join(table["payload"].to_list())


def test_without_a_webhook_alerts_go_to_the_table_only(tmp_path):
    settings = ops_settings(tmp_path)
    defs = build_definitions(settings)
    with temp_instance(tmp_path) as instance:
        land(settings, bad_rows=4)
        defs.resolve_job_def(INGEST_JOB).execute_in_process(instance=instance, run_config=QUIET)
        run_day(defs, instance, DAY)
        tick(defs, instance, None)
    table = read_alerts(DeltaTables(settings.tables_path))
    assert table.height == 2
    assert not table["delivered"].any()
    assert set(table["delivery_error"]) == {"no webhook configured"}


def _signal(key: str, failing: bool, minute: int) -> Signal:
    at = datetime(2026, 11, 4, 9, tzinfo=UTC) + timedelta(minutes=minute)
    return Signal(key, "check", failing, "ERROR", key, at, "why")


def test_transitions_fire_on_new_failures_and_resolve_on_recovery_only():
    signals = [
        _signal("a", True, 0),
        _signal("a", True, 1),  # still failing: quiet
        _signal("b", False, 2),  # never failed: quiet
        _signal("c", True, 3),  # already firing before this tick: quiet
        _signal("a", False, 4),
        _signal("a", True, 5),  # fails again after recovering: a new alert
    ]
    found = [(t.key, t.status) for t in transitions(signals, firing={"c"})]
    assert found == [("a", FIRING), ("a", RESOLVED), ("a", FIRING)]


def test_only_the_latest_state_of_each_key_in_a_tick_counts():
    """Freshness evaluated by every day of a multi-day run fails until the last day is indexed:
    a failure recovered within the same tick fires nothing."""
    signals = [
        _signal("freshness", True, 0),
        _signal("freshness", True, 1),
        _signal("freshness", False, 2),
        _signal("other", True, 3),
    ]
    found = [(t.key, t.status) for t in transitions(latest_per_key(signals), firing=set())]
    assert found == [("other", FIRING)]
    assert [(t.key, t.status) for t in transitions(signals, firing=set())][:2] == [
        ("freshness", FIRING),
        ("freshness", RESOLVED),
    ]  # what the unfiltered signals would have sent


def test_slack_payload_has_text_and_blocks():
    [transition] = transitions([_signal("check:x/y:2026-11-04", True, 0)], set())
    payload = slack_payload(transition)
    assert payload["text"].startswith(":red_circle: [ERROR]")
    assert [b["type"] for b in payload["blocks"]] == ["section", "context"]
    json.dumps(payload)  # serialisable as is
