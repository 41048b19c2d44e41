"""The `alerts` Delta table: every alert sent (or logged), and which keys are still firing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa

from semsearch.core.alerts import FIRING, Transition
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import ALERTS, ALERTS_TABLE


@dataclass(frozen=True)
class Delivery:
    payload: str
    delivered: bool
    error: str | None = None


def firing_keys(tables: DeltaTables) -> set[str]:
    """Keys whose latest alert is `firing`: failures not yet resolved."""
    latest = (
        tables.scan(ALERTS_TABLE, ALERTS)
        .sort("sent_at")
        .group_by("key")
        .agg(pl.col("status").last())
        .filter(pl.col("status") == FIRING)
        .collect()
    )
    return set(latest["key"].to_list())


def record(tables: DeltaTables, sent: list[tuple[Transition, Delivery]]) -> None:
    if not sent:
        return
    now = datetime.now(UTC)
    rows = [_row(transition, delivery, now, i) for i, (transition, delivery) in enumerate(sent)]
    columns = {name: [row[name] for row in rows] for name in ALERTS.names}
    tables.append(ALERTS_TABLE, pa.table(columns, schema=ALERTS), ALERTS, partitioned=False)


def _row(transition: Transition, delivery: Delivery, now: datetime, index: int) -> dict:
    signal = transition.signal
    return {
        "alert_id": f"{now:%Y%m%dT%H%M%S%f}-{index}",
        "key": signal.key,
        "status": transition.status,
        "kind": signal.kind,
        "severity": signal.severity,
        "title": signal.title,
        "description": signal.description,
        "asset": signal.asset,
        "check_name": signal.check_name,
        "partition": signal.partition,
        "job": signal.job,
        "run_id": signal.run_id,
        "payload": delivery.payload,
        "delivered": delivery.delivered,
        "delivery_error": delivery.error,
        "occurred_at": signal.occurred_at,
        "sent_at": now,
    }


def read_alerts(tables: DeltaTables) -> pl.DataFrame:
    return tables.scan(ALERTS_TABLE, ALERTS).sort("sent_at", "alert_id").collect()
