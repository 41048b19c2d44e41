"""Search filters as LanceDB SQL, built only from validated, quoted values.

User input never reaches the SQL text raw: keys must be plain identifiers, dates must parse as
ISO dates, and values are quoted as string literals with embedded quotes doubled.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
MAX_VALUE_CHARS = 512


class FilterError(ValueError):
    """A filter the user gave is malformed; the message says which and why."""


def sql_literal(value: str) -> str:
    """`value` as a SQL string literal (quotes doubled): for LanceDB and Delta predicates."""
    if "\x00" in value:
        raise FilterError("filter values cannot contain NUL characters")
    return "'" + value.replace("'", "''") + "'"


def metadata_tag(key: str, value: object) -> str:
    """The `key=value` string stored per metadata entry, which equality filters match."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"{key}={text}"


def metadata_tags(metadata_json: str | None) -> list[str]:
    metadata = json.loads(metadata_json) if metadata_json else {}
    return sorted(metadata_tag(k, v) for k, v in metadata.items() if v is not None)


@dataclass(frozen=True)
class SearchFilter:
    since: date | None = None
    until: date | None = None
    where: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(
        cls,
        since: str | date | None = None,
        until: str | date | None = None,
        where: list[str] | dict[str, str] | None = None,
    ) -> SearchFilter:
        pairs = where.items() if isinstance(where, dict) else [_split_pair(p) for p in where or []]
        for key, value in pairs:
            _check_pair(key, value)
        result = cls(_parse_date("since", since), _parse_date("until", until), dict(pairs))
        if result.since and result.until and result.since > result.until:
            raise FilterError(f"--since {result.since} is after --until {result.until}")
        return result

    def to_sql(self) -> str | None:
        clauses = []
        if self.since:
            clauses.append(f"partition_date >= date {sql_literal(self.since.isoformat())}")
        if self.until:
            clauses.append(f"partition_date <= date {sql_literal(self.until.isoformat())}")
        for key, value in sorted(self.where.items()):
            clauses.append(f"array_has(metadata_tags, {sql_literal(metadata_tag(key, value))})")
        return " AND ".join(clauses) or None


def _split_pair(pair: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep:
        raise FilterError(f"filter {pair!r} is not of the form key=value")
    return key.strip(), value.strip()


def _check_pair(key: object, value: object) -> None:
    if not isinstance(key, str) or not _KEY.match(key):
        raise FilterError(
            f"filter key {key!r} is not a plain name "
            "(letters, digits, _ . -; starting with a letter)"
        )
    if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
        raise FilterError(
            f"filter value for {key!r} must be a string of at most {MAX_VALUE_CHARS} characters"
        )
    sql_literal(value)


def _parse_date(name: str, value: str | date | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise FilterError(f"--{name} {value!r} is not a date (YYYY-MM-DD)") from None
