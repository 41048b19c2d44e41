"""The bundled sample corpus (see NOTICE) and how `semsearch demo` lands it.

The sample's timestamps are synthetic; the demo moves them all by one offset so that the
newest message is the moment it is landed. The demo's days are then the last two weeks, today
included, and the pipeline it leaves is as fresh as a live one (its freshness check passes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path

SAMPLE = "banking77_sample.jsonl"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class LandedSample:
    path: Path
    new: bool  # False: it was already in the landing folder, and kept as it was
    records: int
    first: date
    last: date


def sample_records() -> list[dict]:
    text = (resources.files(__name__) / SAMPLE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _created_at(record: dict) -> datetime:
    return datetime.strptime(record["created_at"], TIME_FORMAT).replace(tzinfo=UTC)


def dated_to_end_at(records: list[dict], now: datetime) -> list[dict]:
    """`records` with every created_at moved by the same offset, the newest landing at `now`
    (whole seconds), so the order and spacing of the messages are kept."""
    newest = max(_created_at(r) for r in records)
    shift = now.astimezone(UTC).replace(microsecond=0) - newest
    return [r | {"created_at": (_created_at(r) + shift).strftime(TIME_FORMAT)} for r in records]


def land_sample(landing_dir: Path, now: datetime) -> LandedSample:
    """Write the sample, dated to end at `now`, into the landing folder; a sample landed by an
    earlier demo is kept as it is (re-dating it would move every document to another day)."""
    path = landing_dir / SAMPLE
    new = not path.exists()
    if new:
        landing_dir.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(r) for r in dated_to_end_at(sample_records(), now)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    days = sorted(_created_at(r).date() for r in records)
    return LandedSample(path, new, len(records), days[0], days[-1])
