"""Landing files into bronze: good rows load, every bad row is rejected with its reason."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semsearch.core.ingest import ColumnMapping, DatePolicy, RecordParser
from semsearch.storage import bronze
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import (
    BRONZE_TABLE,
    DOCUMENTS,
    LANDED_FILES,
    LANDED_TABLE,
    REJECTED_RECORDS,
    REJECTED_TABLE,
)
from semsearch_tests.ops_support import write_jsonl

FIRST_DAY = date(2024, 1, 1)


def parser(policy: str = "reject") -> RecordParser:
    return RecordParser(ColumnMapping(), DatePolicy.parse(policy), FIRST_DAY)


@pytest.fixture
def tables(tmp_path: Path) -> DeltaTables:
    return DeltaTables(tmp_path / "tables")


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path


def good(i: int, day: int = 2, **extra) -> dict:
    return {
        "id": f"d{i}",
        "text": f"message number {i}",
        "created_at": f"2024-01-0{day}T10:00:00Z",
    } | extra


def rejected(tables: DeltaTables) -> dict[tuple[str, int | None], str]:
    frame = tables.scan(REJECTED_TABLE, REJECTED_RECORDS).collect()
    return {
        (f, r): reason
        for f, r, reason in frame.select("source_file", "source_row", "reason").rows()
    }


def loaded_ids(tables: DeltaTables) -> set[str]:
    return set(tables.scan(BRONZE_TABLE, DOCUMENTS).collect()["doc_id"])


def test_mixed_jsonl_loads_every_good_row_and_rejects_every_bad_one(tables, landing):
    lines = [
        json.dumps(good(1, category="card")),  # 1 good
        json.dumps({"id": "d2", "text": "", "created_at": "2024-01-02"}),  # 2 no text
        json.dumps(good(3) | {"created_at": "yesterday"}),  # 3 bad date
        json.dumps(good(4) | {"text": 42}),  # 4 wrong type
        '{"id": "d5", "text": "caf\xe9", "created_at": "2024-01-02"}',  # 5 invalid UTF-8
        json.dumps(good(1)),  # 6 duplicate of row 1
        "{not json",  # 7 invalid JSON
        json.dumps(good(8, day=3)),  # 8 good
        json.dumps({"text": "no id given", "created_at": "2024-01-03T00:00:00+02:00"}),  # 9 good
        json.dumps(good(10) | {"created_at": None}),  # 10 no date
        json.dumps(good(11) | {"created_at": "2023-12-31T12:00:00Z"}),  # 11 before first day
    ]
    raw = "\n".join(lines).encode("utf-8").replace("caf\xc3\xa9".encode("latin-1"), b"caf\xe9")
    (landing / "mixed.jsonl").write_bytes(raw)

    report = bronze.ingest_landing(landing, tables, parser())

    assert report.rows_loaded == 3 and report.rows_rejected == 8
    reasons = rejected(tables)
    assert set(reasons) == {("mixed.jsonl", r) for r in (2, 3, 4, 5, 6, 7, 10, 11)}
    assert "no text" in reasons[("mixed.jsonl", 2)]
    assert "unparseable created_at" in reasons[("mixed.jsonl", 3)]
    assert "text must be a string" in reasons[("mixed.jsonl", 4)]
    assert "invalid UTF-8" in reasons[("mixed.jsonl", 5)]
    assert "duplicate id 'd1' (first at row 1)" in reasons[("mixed.jsonl", 6)]
    assert "invalid JSON" in reasons[("mixed.jsonl", 7)]
    assert "no created_at" in reasons[("mixed.jsonl", 10)]
    assert "before the first partition" in reasons[("mixed.jsonl", 11)]
    ids = loaded_ids(tables)
    assert {"d1", "d8"} <= ids and len(ids) == 3
    hashed = next(i for i in ids if i not in {"d1", "d8"})
    assert hashed.startswith("h")  # a content hash for the record that came without an id
    # +02:00 on Jan 3 at midnight is Jan 2 in UTC, the zone partitions are cut in.
    days = dict(
        tables.scan(BRONZE_TABLE, DOCUMENTS).select("doc_id", "partition_date").collect().rows()
    )
    assert days[hashed] == date(2024, 1, 2)
    metadata = (
        tables.scan(BRONZE_TABLE, DOCUMENTS)
        .filter(pl.col("doc_id") == "d1")
        .collect()["metadata"][0]
    )
    assert json.loads(metadata) == {"category": "card"}


def test_csv_and_parquet_load_with_a_column_mapping(tables, landing):
    (landing / "tickets.csv").write_text(
        "ticket,body,opened,team\nT1,printer is on fire,2024-01-05,ops\nT2,,2024-01-05,ops\n"
    )
    pq.write_table(
        pa.table(
            {
                "ticket": ["T3", "T4"],
                "body": ["vpn down", "mail slow"],
                "opened": ["2024-01-06T08:00:00", "2024-01-06T09:00:00"],
                "team": ["net", "it"],
            }
        ),
        landing / "more.parquet",
    )
    mapping = ColumnMapping(id="ticket", text="body", created_at="opened")
    report = bronze.ingest_landing(landing, tables, RecordParser(mapping, DatePolicy(), FIRST_DAY))
    assert report.rows_loaded == 3
    assert report.days == {date(2024, 1, 5), date(2024, 1, 6)}
    assert rejected(tables) == {("tickets.csv", 2): "no text (column 'body' missing or empty)"}


def test_unparseable_file_is_reported_and_others_still_load(tables, landing):
    (landing / "broken.parquet").write_bytes(b"this is not parquet")
    (landing / "fine.jsonl").write_text(json.dumps(good(1)) + "\n")
    report = bronze.ingest_landing(landing, tables, parser())
    statuses = {f.path: f.status for f in report.files}
    assert statuses == {"broken.parquet": "unparseable", "fine.jsonl": "loaded"}
    assert loaded_ids(tables) == {"d1"}
    assert "unparseable file" in rejected(tables)[("broken.parquet", None)]
    landed = tables.scan(LANDED_TABLE, LANDED_FILES).collect()
    assert set(landed["status"]) == {"unparseable", "loaded"}


def test_unchanged_file_is_not_read_again_and_changed_file_replaces_its_rows(tables, landing):
    path = landing / "a.jsonl"
    path.write_text(json.dumps(good(1)) + "\n" + json.dumps(good(2)) + "\n")
    bronze.ingest_landing(landing, tables, parser())
    again = bronze.ingest_landing(landing, tables, parser())
    assert again.files == [] and again.unchanged == 1
    path.write_text(json.dumps(good(2)) + "\n" + json.dumps(good(3, day=4)) + "\n")
    changed = bronze.ingest_landing(landing, tables, parser())
    assert loaded_ids(tables) == {"d2", "d3"}
    # d1 and d2 were on Jan 2, d3 is now on Jan 4: both days need a re-run.
    assert changed.days == {date(2024, 1, 2), date(2024, 1, 4)}
    assert tables.scan(BRONZE_TABLE, DOCUMENTS).collect().height == 2


def test_missing_dates_take_the_configured_default(tables, landing):
    (landing / "undated.jsonl").write_text(json.dumps({"id": "u1", "text": "no date"}) + "\n")
    bronze.ingest_landing(landing, tables, parser("2024-02-01"))
    days = tables.scan(BRONZE_TABLE, DOCUMENTS).collect()["partition_date"].to_list()
    assert days == [date(2024, 2, 1)]


def test_latest_landed_version_of_a_document_wins_within_a_day(tables, landing):
    (landing / "1.jsonl").write_text(json.dumps(good(1, text_v="old")) + "\n")
    bronze.ingest_landing(landing, tables, parser())
    (landing / "2.jsonl").write_text(json.dumps(good(1) | {"text": "updated text"}) + "\n")
    bronze.ingest_landing(landing, tables, parser())
    day = bronze.read_day(tables, date(2024, 1, 2))
    assert day["text"].to_list() == ["updated text"]


def test_a_document_landed_again_under_another_date_moves_to_that_day(tables, landing):
    day_two, day_three = date(2024, 1, 2), date(2024, 1, 3)
    write_jsonl(landing / "1.jsonl", [good(1), good(2)])
    bronze.ingest_landing(landing, tables, parser())
    version = tables.version(BRONZE_TABLE)
    write_jsonl(landing / "2.jsonl", [good(1, day=3) | {"text": "re-dated"}])
    bronze.ingest_landing(landing, tables, parser())
    assert bronze.read_day(tables, day_two)["doc_id"].to_list() == ["d2"]
    assert bronze.read_day(tables, day_three)["text"].to_list() == ["re-dated"]
    # Both days changed, though only day three's files did.
    assert bronze.days_sharing_documents(tables, {day_three}, version) == {day_two}
    # Moved back (its file re-landed without it): day two holds it again, found through the
    # version before, when day three still held it.
    version = tables.version(BRONZE_TABLE)
    write_jsonl(landing / "2.jsonl", [good(3, day=3)])
    bronze.ingest_landing(landing, tables, parser())
    assert bronze.read_day(tables, day_two)["doc_id"].to_list() == ["d1", "d2"]
    assert bronze.days_sharing_documents(tables, {day_three}, version) == {day_two}
    assert bronze.days_sharing_documents(tables, {day_three}) == set()


def test_a_record_dated_after_today_is_rejected_with_the_reason_and_the_rest_land(tables, landing):
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    records = [good(1), good(2, created_at="2099-12-31T00:00:00Z")]
    records.append(good(3, created_at=f"{tomorrow}T00:30:00Z"))  # clock skew
    write_jsonl(landing / "future.jsonl", records)
    report = bronze.ingest_landing(landing, tables, parser())
    assert report.rows_loaded == 1 and report.days == {date(2024, 1, 2)}
    reasons = rejected(tables)
    assert "after the last partition" in reasons[("future.jsonl", 2)]
    assert "after the last partition" in reasons[("future.jsonl", 3)]


def test_symlinks_out_of_the_landing_folder_are_refused_and_recorded(tables, landing, tmp_path):
    secret = write_jsonl(tmp_path / "outside" / "secret.jsonl", [good(1, text="the root password")])
    (landing / "link.jsonl").symlink_to(secret)
    write_jsonl(landing / "real" / "inside.jsonl", [good(2)])
    (landing / "alias.jsonl").symlink_to(landing / "real" / "inside.jsonl")  # stays inside
    report = bronze.ingest_landing(landing, tables, parser())
    statuses = {f.path: f.status for f in report.files}
    assert statuses == {
        "link.jsonl": "skipped",
        "alias.jsonl": "loaded",
        "real/inside.jsonl": "loaded",
    }
    texts = tables.scan(BRONZE_TABLE, DOCUMENTS).collect()["text"].to_list()
    assert "the root password" not in texts
    assert "outside the landing folder" in rejected(tables)[("link.jsonl", None)]
    assert bronze.ingest_landing(landing, tables, parser()).unchanged == 3  # recorded once


def test_unknown_file_types_are_recorded_as_skipped_with_the_reason(tables, landing):
    (landing / "notes.txt").write_text("card not arrived\n")
    (landing / "tickets.xlsx").write_bytes(b"PK\x03\x04")
    (landing / ".partial.jsonl").write_text("{")  # hidden: an upload in progress
    report = bronze.ingest_landing(landing, tables, parser())
    assert {f.path: f.status for f in report.files} == {
        "notes.txt": "skipped",
        "tickets.xlsx": "skipped",
    }
    landed = tables.scan(LANDED_TABLE, LANDED_FILES).collect()
    assert set(landed["status"]) == {"skipped"}
    assert "unsupported file type .xlsx" in rejected(tables)[("tickets.xlsx", None)]


def test_a_document_over_the_size_ceiling_is_rejected_with_the_reason(tables, landing):
    huge = good(2, text="log line\n" * 20_000)  # 180,000 characters
    write_jsonl(landing / "paste.jsonl", [good(1), huge])
    narrow = RecordParser(ColumnMapping(), DatePolicy(), FIRST_DAY, max_text_chars=100_000)
    report = bronze.ingest_landing(landing, tables, narrow)
    assert report.rows_loaded == 1
    assert "180,000 characters, over the ceiling of 100,000" in rejected(tables)[("paste.jsonl", 2)]
