"""Rebuild semsearch/data/banking77_sample.jsonl from the Banking77 dataset (CC BY 4.0).

Takes up to 40 messages per intent (deterministically, by a hash of the message id) and spreads
them over 14 days with synthetic timestamps, so the demo has real daily partitions.

    python scripts/make_sample_corpus.py ../shared/datasets/banking77/docs.jsonl
"""

import hashlib
import json
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

PER_INTENT = 40
FIRST_DAY = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 14
OUT = Path(__file__).resolve().parents[1] / "semsearch" / "data" / "banking77_sample.jsonl"


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def main(source: str) -> None:
    by_intent = defaultdict(list)
    for line in Path(source).read_text().splitlines():
        record = json.loads(line)
        by_intent[record["label"]].append(record)
    sample = []
    for intent in sorted(by_intent):
        records = sorted(by_intent[intent], key=lambda r: _hash(r["id"]))[:PER_INTENT]
        sample.extend(records)
    sample.sort(key=lambda r: _hash("order" + r["id"]))
    with OUT.open("w") as out:
        for record in sample:
            h = _hash("time" + record["id"])
            created = FIRST_DAY + timedelta(days=h % DAYS, seconds=(h >> 8) % 86400)
            row = {
                "id": f"b77-{record['id']}",
                "text": record["text"],
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "category": record["label"],
            }
            out.write(json.dumps(row) + "\n")
    sys.stderr.write(f"wrote {len(sample)} records to {OUT}\n")


if __name__ == "__main__":
    main(sys.argv[1])
