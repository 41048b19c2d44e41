"""DeltaTables under concurrent writers: separate processes, as Dagster runs them."""

import subprocess
import sys
import time
from datetime import date, timedelta

import polars as pl
import pyarrow as pa
import pytest
from deltalake.exceptions import DeltaError

from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import PARTITION_COLUMN

SCHEMA = pa.schema([("id", pa.string()), (PARTITION_COLUMN, pa.date32())])
WRITERS = 4
ROWS_PER_DAY = 5

# Each writer waits for the go file so that all of them hit the missing table at the same moment:
# a write that decided "the table does not exist, overwrite it whole" used to erase the others.
WRITER = """
import sys, time
from datetime import date
from pathlib import Path
import pyarrow as pa
import pytest
from deltalake.exceptions import DeltaError
from semsearch.storage.delta import DeltaTables
from semsearch_tests.test_delta_tables import SCHEMA, day_rows
root, mode, day, go = sys.argv[1], sys.argv[2], date.fromisoformat(sys.argv[3]), Path(sys.argv[4])
tables = DeltaTables(root)
(go.parent / f"ready-{day}").touch()
while not go.exists():
    time.sleep(0.001)
if mode == "replace":
    tables.replace_partition("docs", day, day_rows(day), SCHEMA)
else:
    tables.append("docs", day_rows(day), SCHEMA, partitioned=True)
"""


def day_rows(day: date) -> pa.Table:
    ids = [f"{day}-{i}" for i in range(ROWS_PER_DAY)]
    return pa.table({"id": ids, PARTITION_COLUMN: [day] * ROWS_PER_DAY}, schema=SCHEMA)


def _race(tmp_path, mode: str) -> pl.DataFrame:
    tmp_path.mkdir()
    go = tmp_path / "go"
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(WRITERS)]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "tables"), mode, day.isoformat(), str(go)]
        )
        for day in days
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < WRITERS and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    assert [w.wait(timeout=120) for w in writers] == [0] * WRITERS
    return DeltaTables(tmp_path / "tables").scan("docs", SCHEMA).collect()


def test_writers_racing_to_create_a_table_all_keep_their_partition(tmp_path):
    for mode in ("replace", "append"):
        rows = _race(tmp_path / mode, mode)
        assert rows.height == WRITERS * ROWS_PER_DAY, mode
        assert rows["id"].n_unique() == rows.height, mode


def test_replacing_a_partition_touches_no_other_and_refuses_rows_outside_it(tmp_path):
    tables, first, second = DeltaTables(tmp_path), date(2026, 11, 1), date(2026, 11, 2)
    tables.replace_partition("docs", first, day_rows(first), SCHEMA)  # creates the table
    tables.replace_partition("docs", second, day_rows(second), SCHEMA)
    tables.replace_partition("docs", first, day_rows(first).slice(0, 2), SCHEMA)
    assert tables.read_partition("docs", first, SCHEMA).height == 2
    assert tables.read_partition("docs", second, SCHEMA).height == ROWS_PER_DAY
    assert tables.table("docs").metadata().partition_columns == [PARTITION_COLUMN]
    with pytest.raises(DeltaError, match="failed validation"):
        tables.replace_partition("docs", first, day_rows(second), SCHEMA)
    assert tables.scan("docs", SCHEMA).collect().height == 2 + ROWS_PER_DAY


def test_an_empty_append_still_creates_the_table(tmp_path):
    tables = DeltaTables(tmp_path)
    tables.append("docs", SCHEMA.empty_table(), SCHEMA, partitioned=True)
    assert tables.exists("docs")
    assert tables.scan("docs", SCHEMA).collect().height == 0
