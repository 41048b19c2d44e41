"""The raw_documents stage of one day as a Spark job: the same rows as `bronze.read_day`.

Executors read the day's bronze files, keep each document's most recently landed version
(a window over doc_id in landing order), drop the documents landed later on another day (a join
against the other days' bronze rows of the same ids), and write the day's `raw_documents`
files; the driver commits them as the day's replace. What the driver receives: file actions,
the day's source file names, counts and a five-row preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from semsearch.spark.delta_files import commit
from semsearch.spark.jobs import read_table, write_files
from semsearch.storage.bronze import LANDING_ORDER
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import (
    BRONZE_TABLE,
    DOCUMENTS,
    PARTITION_COLUMN,
    RAW_TABLE,
    REJECTED_RECORDS,
    REJECTED_TABLE,
)


@dataclass
class DocumentsDay:
    """What the raw_documents stage reports, from either engine."""

    rows: int
    source_files: list[str]
    rejected_in_source_files: int
    preview: pl.DataFrame


def _landed_after(suffix: str):
    """Rows whose `<column><suffix>` values come after their `<column>` values, in landing
    order (as `bronze._landed_after`; a null compares as not after)."""
    from pyspark.sql import functions as F

    later = F.lit(False)
    for column in reversed(LANDING_ORDER):
        there, here = F.col(column + suffix), F.col(column)
        later = (there > here) | ((there == here) & later)
    return F.coalesce(later, F.lit(False))


def documents_day(spark, tables: DeltaTables, day: date) -> DocumentsDay:
    """The day's documents, one row per doc id, committed as the day's replace of raw_documents."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    bronze = read_table(spark, tables, BRONZE_TABLE, DOCUMENTS, day)
    newest_first = Window.partitionBy("doc_id").orderBy(*[F.desc(c) for c in LANDING_ORDER])
    latest = (
        bronze.withColumn("_version", F.row_number().over(newest_first))
        .filter(F.col("_version") == 1)
        .drop("_version")
    )
    every_day = read_table(spark, tables, BRONZE_TABLE, DOCUMENTS, None)
    elsewhere = every_day.filter(F.col(PARTITION_COLUMN) != F.lit(day)).select(
        "doc_id", *[F.col(c).alias(f"{c}_there") for c in LANDING_ORDER]
    )
    moved = (
        latest.select("doc_id", *LANDING_ORDER)
        .join(elsewhere, "doc_id")
        .filter(_landed_after("_there"))
        .select("doc_id")
    )
    documents = latest.join(moved, "doc_id", "left_anti").select(*DOCUMENTS.names)
    documents = documents.sortWithinPartitions("doc_id")
    parts = write_files(spark, documents, tables, RAW_TABLE, DOCUMENTS, day, "raw")
    commit(tables, RAW_TABLE, DOCUMENTS, parts, day)

    written = read_table(spark, tables, RAW_TABLE, DOCUMENTS, day)
    files = written.select("source_file").distinct()
    rejected = read_table(spark, tables, REJECTED_TABLE, REJECTED_RECORDS, None)
    return DocumentsDay(
        rows=sum(p["rows"] for p in parts),
        source_files=sorted(r["source_file"] for r in files.collect()),
        rejected_in_source_files=rejected.join(files, "source_file", "left_semi").count(),
        preview=pl.from_arrow(written.orderBy("doc_id").limit(5).toArrow()),
    )
