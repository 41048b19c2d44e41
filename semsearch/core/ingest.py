"""Parse landing files (JSONL, CSV, Parquet) into documents and rejected records.

Parsing is per record: one bad record is rejected with its row number and reason, the rest of
the file loads. Records are yielded in batches so a large file never has to fit in memory.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from semsearch.core.ids import document_id_from_content

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
RAW_PREVIEW_CHARS = 1000


class UnparseableFileError(ValueError):
    """The file as a whole cannot be read (wrong format, corrupt, unsupported suffix)."""


@dataclass(frozen=True)
class ColumnMapping:
    id: str = "id"
    text: str = "text"
    title: str = "title"
    created_at: str = "created_at"

    @property
    def mapped(self) -> set[str]:
        return {self.id, self.text, self.title, self.created_at}


@dataclass(frozen=True)
class DatePolicy:
    """What to do with a record that has no created_at."""

    kind: str = "reject"  # "reject", "file_mtime" or "fixed"
    fixed: date | None = None

    @classmethod
    def parse(cls, value: str) -> DatePolicy:
        if value in ("reject", "file_mtime"):
            return cls(kind=value)
        return cls(kind="fixed", fixed=date.fromisoformat(value))


@dataclass
class ParsedBatch:
    documents: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


class RecordRejected(ValueError):
    pass


def is_landing_file(path: Path) -> bool:
    """A file someone dropped in the landing folder (hidden files, e.g. partial uploads, not)."""
    return path.is_file() and not path.name.startswith(".")


def landing_skip_reason(path: Path, landing_dir: Path) -> str | None:
    """Why a landing file is not read (recorded, never silent), or None to read it.

    A symlink may point anywhere on the machine; following one out of the landing folder would
    make any file the service can read searchable, so only links that stay inside are read.
    """
    target = path.resolve()
    if path.is_symlink() and not target.is_relative_to(landing_dir.resolve()):
        return f"refused: a symlink to {target}, outside the landing folder (copy the file in)"
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        kind = path.suffix or "(no extension)"
        return f"skipped: unsupported file type {kind}; use one of {', '.join(SUPPORTED_SUFFIXES)}"
    return None


def _has_invalid_utf8(value: Any) -> bool:
    # Undecodable bytes survive decoding as lone surrogates (errors="surrogateescape").
    if isinstance(value, str):
        return any("\udc80" <= ch <= "\udcff" for ch in value)
    if isinstance(value, dict):
        return any(_has_invalid_utf8(k) or _has_invalid_utf8(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_invalid_utf8(v) for v in value)
    return False


def _preview(raw: Any) -> str:
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:RAW_PREVIEW_CHARS]


def _records_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as handle:
        row = 0
        for line in handle:
            if not line.strip():
                continue
            row += 1
            decoded = line.decode("utf-8", "surrogateescape")
            if _has_invalid_utf8(decoded):
                yield row, RecordRejected("invalid UTF-8"), decoded
                continue
            try:
                record = json.loads(decoded)
            except json.JSONDecodeError as exc:
                yield row, RecordRejected(f"invalid JSON: {exc.msg}"), decoded
                continue
            if not isinstance(record, dict):
                yield row, RecordRejected("record is not a JSON object"), decoded
                continue
            yield row, record, decoded


def _records_csv(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as raw_handle:
        text = io.TextIOWrapper(raw_handle, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.DictReader(text)
        if not reader.fieldnames:
            raise UnparseableFileError("CSV file has no header row")
        for row, record in enumerate(reader, start=1):
            if None in record:
                yield row, RecordRejected("more fields than the header"), record
                continue
            if _has_invalid_utf8(record):
                yield row, RecordRejected("invalid UTF-8"), record
                continue
            # CSV has no null: an empty cell is a missing value.
            yield row, {k: (v if v != "" else None) for k, v in record.items()}, record


def _records_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise UnparseableFileError(f"not a readable Parquet file: {exc}") from exc
    row = 0
    for batch in parquet.iter_batches(batch_size=10_000):
        for record in batch.to_pylist():
            row += 1
            yield row, record, record


def iter_records(path: Path) -> Iterator[tuple[int, Any, Any]]:
    """Yield (row number, record dict or RecordRejected, raw) for every record of a file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _records_jsonl(path)
    if suffix == ".csv":
        return _records_csv(path)
    if suffix == ".parquet":
        return _records_parquet(path)
    raise UnparseableFileError(f"unsupported file type {suffix!r}; use one of {SUPPORTED_SUFFIXES}")


def parse_created_at(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise RecordRejected(f"unparseable created_at {value[:40]!r}") from None
    else:
        raise RecordRejected(
            f"created_at must be an ISO-8601 string or timestamp, got {type(value).__name__}"
        )
    # A date without a zone is taken as UTC, the zone partitions are cut in.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _optional_string(record: dict, column: str) -> str | None:
    value = record.get(column)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordRejected(f"{column} must be a string, got {type(value).__name__}")
    return value


def _doc_id(record: dict, column: str, text: str, title: str | None) -> str:
    value = record.get(column)
    if value is None or value == "":
        return document_id_from_content(text, title)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RecordRejected(f"{column} must be a string or integer, got {type(value).__name__}")
    return str(value)


def _metadata(record: dict, mapping: ColumnMapping) -> str:
    extra = {k: v for k, v in record.items() if k not in mapping.mapped}
    return json.dumps(extra, default=str, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class RecordParser:
    mapping: ColumnMapping
    date_policy: DatePolicy
    first_day: date
    # The last day a record may carry: the last daily partition, today in UTC (None: the clock's
    # today at parse time). A later date is upstream clock skew or a wrong date; such a record
    # has no partition to go to and is rejected with the reason, never held silently.
    last_day: date | None = None
    # Longest text a document may have. One pasted 5 MiB log became 26,215 chunks (99% of the
    # index) and made the run 5x slower; such a record is rejected with the reason instead.
    max_text_chars: int = 100_000

    def parse(self, record: dict, file_mtime: datetime) -> dict[str, Any]:
        text = record.get(self.mapping.text)
        if text is None or (isinstance(text, str) and not text.strip()):
            raise RecordRejected(f"no text (column {self.mapping.text!r} missing or empty)")
        if not isinstance(text, str):
            raise RecordRejected(f"{self.mapping.text} must be a string, got {type(text).__name__}")
        if len(text) > self.max_text_chars:
            raise RecordRejected(
                f"{self.mapping.text} is {len(text):,} characters, over the ceiling of "
                f"{self.max_text_chars:,} (SEMSEARCH_MAX_DOCUMENT_CHARS): split the document or "
                "raise the ceiling"
            )
        title = _optional_string(record, self.mapping.title)
        created_at = self._created_at(record.get(self.mapping.created_at), file_mtime)
        if created_at.date() < self.first_day:
            raise RecordRejected(
                f"created_at {created_at.date()} is before the first partition {self.first_day}"
            )
        last_day = self.last_day or datetime.now(UTC).date()
        if created_at.date() > last_day:
            raise RecordRejected(
                f"created_at {created_at.isoformat()} is after the last partition {last_day} "
                "(today, UTC): a future date from clock skew or a wrong value; fix the record "
                "and land the file again"
            )
        return {
            "doc_id": _doc_id(record, self.mapping.id, text, title),
            "title": title,
            "text": text,
            "created_at": created_at,
            "partition_date": created_at.date(),
            "metadata": _metadata(record, self.mapping),
        }

    def _created_at(self, value: Any, file_mtime: datetime) -> datetime:
        if value is not None and value != "":
            return parse_created_at(value)
        if self.date_policy.kind == "file_mtime":
            return file_mtime
        if self.date_policy.kind == "fixed" and self.date_policy.fixed is not None:
            return datetime.combine(self.date_policy.fixed, time(), tzinfo=UTC)
        raise RecordRejected(
            f"no created_at (column {self.mapping.created_at!r}); set "
            "SEMSEARCH_MISSING_DATE_POLICY to accept undated records"
        )


def parse_file(path: Path, parser: RecordParser, batch_rows: int = 50_000) -> Iterator[ParsedBatch]:
    """Parse one landing file in batches; raises UnparseableFileError if it cannot be read."""
    mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    seen_ids: dict[str, int] = {}
    batch = ParsedBatch()
    for row, record, raw in iter_records(path):
        try:
            if isinstance(record, RecordRejected):
                raise record
            document = parser.parse(record, mtime)
            first_row = seen_ids.setdefault(document["doc_id"], row)
            if first_row != row:
                raise RecordRejected(
                    f"duplicate id {document['doc_id']!r} (first at row {first_row})"
                )
        except RecordRejected as exc:
            batch.rejected.append({"source_row": row, "reason": str(exc), "raw": _preview(raw)})
        else:
            document["source_row"] = row
            batch.documents.append(document)
        if len(batch.documents) + len(batch.rejected) >= batch_rows:
            yield batch
            batch = ParsedBatch()
    yield batch
