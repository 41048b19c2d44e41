"""Alerts: a sensor that watches check evaluations and finished runs and posts what changed.

Dagster OSS records check results but sends nothing. Each tick this sensor reads the runs that
finished since its cursor, with the check evaluations they made (the freshness check runs in
runs too), turns them into signals, keeps the latest of each key (what is true now), and keeps
only transitions against the `alerts` table: a new failure fires once, a repeat stays quiet, a
pass after a failure resolves it. Each transition goes to the log, to the `alerts` table and,
when SEMSEARCH_ALERT_WEBHOOK_URL is set, to that Slack-compatible webhook.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dagster import (
    AssetCheckEvaluation,
    ConfigurableResource,
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    EnvVar,
    EventLogRecord,
    RunStatusChangeRecordsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from semsearch.config import ENV_PREFIX, Settings
from semsearch.core.alerts import (
    RESOLVED,
    Signal,
    Transition,
    check_key,
    latest_per_key,
    run_key,
    slack_payload,
    transitions,
)
from semsearch.defs.resources import StorageResource
from semsearch.storage import alerts_store
from semsearch.storage.alerts_store import Delivery

log = logging.getLogger(__name__)

WEBHOOK_ENV = f"{ENV_PREFIX}ALERT_WEBHOOK_URL"
BATCH = 200  # records read per source per tick; the rest waits for the next tick
FACT_CHARS = 120


class AlertsResource(ConfigurableResource):
    """Where alerts go. The URL arrives through EnvVar: the UI shows its name, not its value."""

    webhook_url: str = ""
    send_resolved: bool = True
    timeout_seconds: float = 10.0
    attempts: int = 2

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertsResource:
        url = EnvVar(WEBHOOK_ENV) if settings.alert_webhook_url else ""
        return cls(webhook_url=url, send_resolved=bool(settings.alert_resolved))

    def deliver(self, transition: Transition) -> Delivery:
        payload = json.dumps(slack_payload(transition), ensure_ascii=False)
        if transition.status == RESOLVED and not self.send_resolved:
            return Delivery(payload, False, "resolved messages are switched off")
        if not self.webhook_url:
            return Delivery(payload, False, "no webhook configured")
        error = None
        for _ in range(self.attempts):
            error = self._post(payload)
            if error is None:
                return Delivery(payload, True)
        log.warning("alert webhook failed: %s", error)
        return Delivery(payload, False, error)

    def _post(self, payload: str) -> str | None:
        request = urllib.request.Request(
            self.webhook_url,
            data=payload.encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                response.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            # Never echo the URL: it is the secret.
            return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        return None


@dataclass
class AlertCursor:
    """Storage ids of the last run-success and run-failure events read."""

    success: int = 0
    failure: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> AlertCursor:
        stored = json.loads(raw) if raw else {}
        # Cursors written before check evaluations outside runs stopped being read hold more.
        return cls(**{k: v for k, v in stored.items() if k in cls.__dataclass_fields__})

    def dump(self) -> str:
        return json.dumps(self.__dict__)


def _facts(metadata: dict) -> dict[str, str]:
    facts = {}
    for name, value in metadata.items():
        text = json.dumps(getattr(value, "value", value), default=str)
        facts[name] = text if len(text) <= FACT_CHARS else text[: FACT_CHARS - 1] + "…"
    return facts


def check_signal(
    evaluation: AssetCheckEvaluation, occurred_at: datetime, run_id: str | None, job: str | None
) -> Signal:
    asset = evaluation.asset_key.to_user_string()
    return Signal(
        key=check_key(asset, evaluation.check_name, evaluation.partition),
        kind="check",
        failing=not evaluation.passed,
        severity=evaluation.severity.value,
        title=f"check {asset}/{evaluation.check_name} on {evaluation.partition or 'the asset'}",
        occurred_at=occurred_at,
        description=evaluation.description or "",
        asset=asset,
        check_name=evaluation.check_name,
        partition=evaluation.partition,
        job=job,
        run_id=run_id or None,
        facts=_facts(dict(evaluation.metadata)),
    )


def _timestamp(record: EventLogRecord) -> datetime:
    return datetime.fromtimestamp(record.event_log_entry.timestamp, UTC)


def _evaluations(records: Iterable[EventLogRecord]) -> Iterable[tuple[EventLogRecord, object]]:
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is not None:
            yield record, event.event_specific_data


def run_signals(instance: DagsterInstance, record: EventLogRecord, failed: bool) -> list[Signal]:
    """The run's own outcome plus every check it evaluated."""
    run_id = record.event_log_entry.run_id
    run = instance.get_run_by_id(run_id)
    job = run.job_name if run else record.event_log_entry.job_name
    partition = run.tags.get("dagster/partition") if run else None
    checks = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    signals = [check_signal(data, _timestamp(r), run_id, job) for r, data in _evaluations(checks)]
    message = record.event_log_entry.message or ""
    signals.append(
        Signal(
            key=run_key(job, partition),
            kind="run",
            failing=failed,
            severity="ERROR",
            title=f"run of {job} on {partition or 'no partition'}",
            occurred_at=_timestamp(record),
            description=message if failed else "",
            partition=partition,
            job=job,
            run_id=run_id,
        )
    )
    return signals


def _finished_runs(
    instance: DagsterInstance, cursor: AlertCursor
) -> tuple[list[Signal], AlertCursor]:
    signals: list[Signal] = []
    updated = AlertCursor(cursor.success, cursor.failure)
    for event_type, attr in (
        (DagsterEventType.RUN_SUCCESS, "success"),
        (DagsterEventType.RUN_FAILURE, "failure"),
    ):
        result = instance.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(event_type, after_storage_id=getattr(cursor, attr)),
            limit=BATCH,
            ascending=True,
        )
        for record in result.records:
            signals += run_signals(instance, record, event_type == DagsterEventType.RUN_FAILURE)
            setattr(updated, attr, max(getattr(updated, attr), record.storage_id))
    return signals, updated


@dataclass
class AlertTick:
    sent: list[tuple[Transition, Delivery]] = field(default_factory=list)
    cursor: str = ""


def evaluate_alerts(
    instance: DagsterInstance,
    raw_cursor: str | None,
    storage: StorageResource,
    alerts: AlertsResource,
    logger: logging.Logger | None = None,
) -> AlertTick:
    """One tick: read new events, work out transitions, deliver and record them."""
    logger = logger or log
    signals, cursor = _finished_runs(instance, AlertCursor.parse(raw_cursor))
    tables = storage.tables()
    changes = transitions(latest_per_key(signals), alerts_store.firing_keys(tables))
    sent = []
    for change in changes:
        delivery = alerts.deliver(change)
        level = logging.INFO if change.status == RESOLVED else logging.WARNING
        logger.log(level, "alert %s %s: %s", change.status, change.key, change.signal.description)
        sent.append((change, delivery))
    # Recorded after delivery: a crash in between re-sends on the next tick rather than never.
    alerts_store.record(tables, sent)
    return AlertTick(sent, cursor.dump())


def build_alert_sensor(interval_seconds: int) -> SensorDefinition:
    @sensor(
        name="alert_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Posts one alert per new check or run failure (and a resolved message when "
        "it recovers) to the `alerts` table, the log and the configured webhook.",
    )
    def alert_sensor(
        context: SensorEvaluationContext, storage: StorageResource, alerts: AlertsResource
    ) -> SensorResult:
        tick = evaluate_alerts(context.instance, context.cursor, storage, alerts, context.log)
        skip = None if tick.sent else "no new failures or recoveries"
        return SensorResult(cursor=tick.cursor, skip_reason=skip)

    return alert_sensor
