"""Alerts as state transitions: what fails fires once, what recovers resolves once.

The alert sensor turns what it observes (check evaluations, finished runs) into `Signal`s, each
with a key naming the thing that can fail (a check on a day, a job on a day). `transitions`
compares them with the keys already firing, so a failure seen again stays quiet and a pass
after a failure resolves it; `slack_payload` renders one transition as a Slack-compatible
incoming-webhook message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FIRING, RESOLVED = "firing", "resolved"
DESCRIPTION_CHARS = 600
FACTS = 6  # metadata entries quoted in a message


@dataclass(frozen=True)
class Signal:
    """One observation: something that can fail was seen failing or passing."""

    key: str
    kind: str  # "check" or "run"
    failing: bool
    severity: str  # "ERROR" or "WARN"
    title: str
    occurred_at: datetime
    description: str = ""
    asset: str | None = None
    check_name: str | None = None
    partition: str | None = None
    job: str | None = None
    run_id: str | None = None
    facts: dict[str, str] = field(default_factory=dict)


def check_key(asset: str, check_name: str, partition: str | None) -> str:
    return f"check:{asset}/{check_name}:{partition or '-'}"


def run_key(job: str, partition: str | None) -> str:
    return f"run:{job}:{partition or '-'}"


@dataclass(frozen=True)
class Transition:
    signal: Signal
    status: str  # FIRING or RESOLVED

    @property
    def key(self) -> str:
        return self.signal.key


def latest_per_key(signals: Iterable[Signal]) -> list[Signal]:
    """The last signal of each key: what is true now. A failure already recovered within the
    same batch (e.g. freshness evaluated by each day of a multi-day run before the last day
    was indexed) is no news, and alerting on it would fire and resolve at once."""
    latest: dict[str, Signal] = {}
    for signal in sorted(signals, key=lambda s: s.occurred_at):
        latest[signal.key] = signal
    return sorted(latest.values(), key=lambda s: s.occurred_at)


def transitions(signals: Iterable[Signal], firing: set[str]) -> list[Transition]:
    """New failures and recoveries, in the order they happened; repeats produce nothing."""
    open_keys = set(firing)
    result = []
    for signal in sorted(signals, key=lambda s: s.occurred_at):
        if signal.failing and signal.key not in open_keys:
            open_keys.add(signal.key)
            result.append(Transition(signal, FIRING))
        elif not signal.failing and signal.key in open_keys:
            open_keys.discard(signal.key)
            result.append(Transition(signal, RESOLVED))
    return result


def _headline(transition: Transition) -> str:
    signal = transition.signal
    if transition.status == RESOLVED:
        return f":large_green_circle: RESOLVED {signal.title}"
    icon = ":red_circle:" if signal.severity == "ERROR" else ":large_yellow_circle:"
    return f"{icon} [{signal.severity}] {signal.title}"


def _context(signal: Signal) -> str:
    parts = [
        f"{name} `{value}`"
        for name, value in (
            ("partition", signal.partition),
            ("job", signal.job),
            ("run", signal.run_id),
        )
        if value
    ]
    return " · ".join(parts + [signal.occurred_at.strftime("%Y-%m-%d %H:%M:%S UTC")])


def slack_payload(transition: Transition) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` for notifications, `blocks` for the channel."""
    signal = transition.signal
    headline = _headline(transition)
    body = signal.description[:DESCRIPTION_CHARS]
    facts = "\n".join(f"• {k}: {v}" for k, v in list(signal.facts.items())[:FACTS])
    detail = "\n".join(part for part in (f"*{headline}*", body, facts) if part)
    return {
        "text": f"{headline}: {body}" if body else headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": detail}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _context(signal)}]},
        ],
    }
