"""The in-memory chunk -> theme lookup: the latest window wins, and a new table version is seen."""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from semsearch.query.chunk_themes import ChunkThemes
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import (
    ASSIGNMENTS_TABLE,
    THEME_ASSIGNMENTS,
    THEMES,
    THEMES_TABLE,
)

D1, D2 = date(2024, 1, 1), date(2024, 1, 2)


def write_window(tables: DeltaTables, day: date, members: dict[str, str], labels: dict) -> None:
    assignments = {
        "partition_date": [day] * len(members),
        "chunk_id": list(members),
        "doc_id": list(members),
        "theme_id": list(members.values()),
        "probability": [1.0] * len(members),
        "document_date": [day] * len(members),
    }
    tables.replace_partition(
        ASSIGNMENTS_TABLE, day, pa.table(assignments, THEME_ASSIGNMENTS), THEME_ASSIGNMENTS
    )
    themes = {name: [None] * len(labels) for name in THEMES.names}
    themes.update(partition_date=[day] * len(labels), theme_id=list(labels))
    themes["label"] = list(labels.values())
    tables.replace_partition(THEMES_TABLE, day, pa.table(themes, THEMES), THEMES)


def test_the_latest_window_labels_a_chunk_and_a_new_window_is_seen_without_a_restart(tmp_path):
    tables = DeltaTables(tmp_path)
    lookup = ChunkThemes(tables, recheck_seconds=0)
    assert lookup.lookup(["a"]) == {}  # no theme tables yet
    write_window(tables, D1, {"a": "t1", "b": "t2"}, {"t1": "cards", "t2": "fees"})
    assert lookup.lookup(["a", "b", "zz"]) == {"a": ("t1", "cards"), "b": ("t2", "fees")}
    write_window(tables, D2, {"a": "t9"}, {"t9": "transfers"})
    assert lookup.lookup(["a", "b"]) == {"a": ("t9", "transfers"), "b": ("t2", "fees")}


def test_the_versions_are_checked_at_most_once_per_interval(tmp_path):
    tables, now = DeltaTables(tmp_path), [0.0]
    lookup = ChunkThemes(tables, recheck_seconds=1.0, clock=lambda: now[0])
    write_window(tables, D1, {"a": "t1"}, {"t1": "cards"})
    assert lookup.lookup(["a"]) == {"a": ("t1", "cards")}
    write_window(tables, D2, {"a": "t9"}, {"t9": "transfers"})
    now[0] = 0.5
    assert lookup.lookup(["a"]) == {"a": ("t1", "cards")}  # within the second: not re-checked
    now[0] = 1.0
    assert lookup.lookup(["a"]) == {"a": ("t9", "transfers")}
