"""The LanceDB index: one row per chunk, cosine distance on the vector and a native full-text
(BM25) index on the text, replaced a partition at a time."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, timedelta

import lance
import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lance.fragment import write_fragments
from lancedb.index import FTS, BTree, IvfHnswSq, LabelList

from semsearch.core.filters import sql_literal
from semsearch.core.theme_clustering import unit_rows
from semsearch.storage.schemas import INDEX_TABLE

log = logging.getLogger(__name__)

METRIC = "cosine"


class IndexModelMismatchError(RuntimeError):
    """The index holds vectors of another model; mixing them would make distances meaningless."""


@dataclass(frozen=True)
class AnnParams:
    """IVF-HNSW-SQ parameters chosen for recall (see benchmarks/bench_ann_recall.py)."""

    min_rows: int  # exact search below this many rows (SEMSEARCH_ANN_MIN_ROWS)
    # One HNSW graph per million rows, Lance's own target for IVF-HNSW indexes (LanceDB: "for
    # HNSW, we recommend a small number of partitions"): a graph's search cost grows with the
    # log of its size, and a query never misses neighbours across partition borders. Measured
    # side by side (bench_ann_partitions.py, 1M rows, 200 real queries, recall@10 against brute
    # force): 245 graphs of 4k rows, 32 probed, 6.5 ms and 0.951 at ef 512; one graph 7.0 ms
    # and 0.977.
    rows_per_partition: int = 1 << 20
    nprobes: int = 32
    # HNSW candidates per probed graph: what bounds recall at scale (one graph of 1M rows:
    # recall 0.913 at 128, 0.939 at 256, 0.977 at 512, 7.0 ms at both 256 and 512). 512 keeps
    # recall above 0.95 at 1M; a day filter of 10% costs ~4 ms more at 512 than at 256.
    ef: int = 512
    refine_factor: int = 5
    # A filter matching at most this many rows is answered by exact search over exactly those
    # rows (found through the scalar indexes), held in memory or not: IVF probes the partitions
    # nearest the query, and a selective filter's rows may lie in none of them. A broader filter
    # is answered exactly too while its rows' vectors fit `VectorIndex`'s resident budget.
    exact_filter_rows: int = 50_000
    # Rebuild (re-partition) the ANN index once the table has this many times its rows at build.
    rebuild_growth: float = 2.0

    def num_partitions(self, rows: int) -> int:
        return max(1, min(256, math.ceil(rows / self.rows_per_partition)))


@dataclass(frozen=True)
class WriteStats:
    inserted: int
    updated: int
    deleted: int
    total_rows: int


def day_filter(day: date) -> str:
    return f"partition_date = date {sql_literal(day.isoformat())}"


# Scalar indexes: the day and the tags make filters cheap to evaluate and count; the key makes
# the day's merge look rows up instead of joining the whole table.
# The full-text index on `text` (LanceDB's native inverted index, BM25; English stemming and
# stop words) answers keyword search. A chunk's text already starts with its document's title
# (`document_text`), so the title is searchable without a second index.
SCALAR_INDEXES = {
    "partition_date": BTree,
    "metadata_tags": LabelList,
    "chunk_id": BTree,
    "text": lambda: FTS(language="English", stem=True, remove_stop_words=True, ascii_folding=True),
}
# What a search returns of each row (plus its `_distance` or `_score`): not the vector, which
# would be most of the bytes and of the conversion to Python.
RESULT_COLUMNS = ["chunk_id", "doc_id", "partition_date", "title", "text", "metadata"]
# chunk_ids per IN (...) lookup of rows that moved day (the chunk_id BTree answers each).
_IDS_PER_LOOKUP = 5000
# Exact search reads its rows' vectors from memory, held per process and table version within
# this many bytes: the whole table when it fits (256 MiB is 174k chunks of MiniLM's 384
# dimensions, 43k of OpenAI's 1536), else the rows of the filters last searched. Any filter
# whose rows fit is answered from memory: a scan costs its bytes (2 cores: ~4.5 ms per 100k
# MiniLM rows, ~8 ms for the whole budget), while HNSW under a filter of 10% of 1M rows costs
# ~14 ms (bench_search_scale.py).
RESIDENT_VECTOR_BYTES = 256 * 2**20
# Row sets remembered per version, held or judged too large to hold (bounds the verdicts kept).
_RESIDENT_SETS = 64
# The ANN index's name records how it was built: the row count, then the partition count
# (`vector_ivf_<rows>_p<partitions>`; an index of earlier versions has no partition count).
ANN_PREFIX = "vector_ivf_"
_ANN_NAME = re.compile(rf"^{ANN_PREFIX}(\d+)(?:_p(\d+))?$")


def ann_name(rows: int, partitions: int) -> str:
    return f"{ANN_PREFIX}{rows}_p{partitions}"


def ann_built(index_names: list[str]) -> tuple[int, int | None] | None:
    """(rows, partitions) when the current ANN index was built, from its name; None without
    one. Partitions are None for an index named by an earlier version."""
    name = _current_ann(index_names)
    if name is None:
        return None
    rows, partitions = _ANN_NAME.match(name).groups()
    return int(rows), None if partitions is None else int(partitions)


def _current_ann(index_names: list[str]) -> str | None:
    """The name of the ANN index searches use (the last built), None without one."""
    built = [n for n in index_names if _ANN_NAME.match(n)]
    return built[-1] if built else None


def _segment_rows(dataset: lance.LanceDataset, ann: str) -> list[int]:
    return dataset.stats.index_stats(ann)["num_indexed_rows_per_delta"]


def segments_to_merge(delta_rows: list[int], new_rows: int) -> int:
    """How many of the newest index segments (`delta_rows`, oldest first, the build's own
    excluded) to merge with `new_rows` rows (a newer segment): each one no larger than what is
    merged so far, as a binary counter carries. A day's rows are then re-indexed about
    log2(days since the build) times, and about that many segments (plus the build's) are
    searched, instead of one more segment a day (LanceDB's `optimize`) or a re-index of every
    row since the build every day (always merging all)."""
    merged, count = new_rows, 0
    for rows in reversed(delta_rows):
        if rows > merged:
            break
        merged += rows
        count += 1
    return count


def ann_built_rows(index_names: list[str]) -> int | None:
    """The row count when the current ANN index was built (from its name), None without one."""
    built = ann_built(index_names)
    return None if built is None else built[0]


class VectorIndex:
    """One connection and one open table per instance, kept warm across queries.

    Every read checks the table's latest version (`read_consistency_interval=0`: a manifest
    look-up, not a re-open), so a day written by another process is searched at once, while the
    index and metadata caches of the open table stay warm.
    """

    def __init__(
        self,
        uri: str,
        table_name: str = INDEX_TABLE,
        resident_bytes: int = RESIDENT_VECTOR_BYTES,
    ):
        self.uri = uri
        self.table_name = table_name
        self._db = lancedb.connect(uri, read_consistency_interval=timedelta(0))
        self._table = None
        self._lock = threading.Lock()
        self._model_checked: tuple[int, str] | None = None  # (table version, model id) passed
        # (version, the table checked out at it, its Lance dataset)
        self._snapshot: tuple[int, object, lance.LanceDataset] | None = None
        self._has_ann: tuple[int, bool] | None = None  # (table version, has an ANN index)
        self._resident = _ResidentSets(resident_bytes)

    def table(self):
        with self._lock:
            if self._table is None:
                if self.table_name not in self._db.list_tables().tables:
                    return None
                self._table = self._db.open_table(self.table_name)
            return self._table

    def snapshot(self):
        """The table fixed at its latest version: every read through it sees that one version
        (both legs of a hybrid query rank the same rows). One handle per version, reused."""
        table = self.table()
        if table is None:
            return None
        version = table.version
        with self._lock:
            if self._snapshot is None or self._snapshot[0] != version:
                pinned = self._db.open_table(self.table_name)
                pinned.checkout(version)
                self._snapshot = (version, pinned, pinned.to_lance())
            return self._snapshot[1]

    def _pinned(self, table) -> tuple[int, object, lance.LanceDataset] | None:
        """The cached snapshot if `table` is it (its version and dataset are known)."""
        with self._lock:
            pinned = self._snapshot
        return pinned if pinned is not None and pinned[1] is table else None

    def version_of(self, table) -> int:
        """`table`'s version: a snapshot's is known (asking LanceDB costs an event-loop trip)."""
        pinned = self._pinned(table)
        return table.version if pinned is None else pinned[0]

    def _dataset(self, table) -> lance.LanceDataset:
        """The Lance dataset behind `table`: queries run on it directly, one call each (through
        LanceDB's table they cost ~20 round trips to its event loop, ~6 ms of a hybrid query)."""
        pinned = self._pinned(table)
        return table.to_lance() if pinned is None else pinned[2]

    def count_rows(self, where: str | None = None) -> int:
        table = self.table()
        return 0 if table is None else table.count_rows(where)

    def other_model_ids(self, model_id: str) -> list[str]:
        table = self.table()
        if table is None:
            return []
        rows = (
            table.search()
            .where(f"model_id != {sql_literal(model_id)}")
            .select(["model_id"])
            .limit(10_000)
            .to_arrow()
        )
        return sorted(set(rows.column("model_id").to_pylist()))

    def check_model(self, model_id: str, table=None) -> None:
        """Refuse a table (latest, or the `snapshot()` given) holding another model's vectors;
        scanned once per table version."""
        table = self.table() if table is None else table
        if table is None:
            return
        version = self.version_of(table)
        if self._model_checked == (version, model_id):
            return
        others = table.count_rows(f"model_id != {sql_literal(model_id)}")
        if not others:
            self._model_checked = (version, model_id)
        else:
            raise IndexModelMismatchError(
                f"the vector index {self.uri}/{self.table_name} holds {others} vectors from "
                f"{', '.join(self.other_model_ids(model_id))}; this run embeds with "
                f"{model_id}. Re-embed every partition with one model, or point "
                "SEMSEARCH_LANCE_URI / SEMSEARCH_LANCE_TABLE at a new index."
            )

    def replace_partition(self, day: date, rows: pa.Table, model_id: str) -> WriteStats:
        """Make the index's rows for `day` exactly `rows`, in one commit."""
        table = self.table()
        if table is None:
            try:
                table = self._db.create_table(self.table_name, rows, mode="create")
                return WriteStats(rows.num_rows, 0, 0, table.count_rows())
            except ValueError:
                # Another writer created it first (the LanceDB pool normally prevents that):
                # merge into theirs.
                table = self.table()
                if table is None:
                    raise
        self.check_model(model_id)
        return self._swap_rows(table, rows, day_filter(day))

    def _swap_rows(self, table, rows: pa.Table, where: str) -> WriteStats:
        """Delete the rows matching `where` (and any row whose chunk_id arrives in `rows`, so a
        chunk that moved day is not left behind twice) and add `rows`, as ONE Lance commit.

        The rows to delete are found through the scalar indexes (partition_date, chunk_id), not
        by a join over the table: the cost is the day's rows, whatever the table's size. The
        commit is a single `Update` transaction (deletion vectors on the touched fragments plus
        the new fragments), so a reader sees the old day or the new day, never a mix. The
        existing indexes stay valid: deleted rows are masked out of them, and the new
        fragments are searched as unindexed rows until `maintain_ann_index` folds them in.
        """
        dataset = table.to_lance()
        new_ids = pc.unique(rows.column("chunk_id"))
        old = dataset.to_table(columns=["chunk_id"], filter=where, with_row_address=True)
        moved = self._rows_with_ids(dataset, new_ids, exclude=where)
        old_ids = pc.unique(old.column("chunk_id"))
        updated = int(pc.sum(pc.is_in(new_ids, old_ids)).as_py() or 0)
        doomed = np.concatenate(
            [old.column("_rowaddr").to_numpy(), moved.column("_rowaddr").to_numpy()]
        ).astype(np.uint64)
        removed, changed = [], []
        for fragment_id in np.unique(doomed >> np.uint64(32)):
            offsets = doomed[(doomed >> np.uint64(32)) == fragment_id] & np.uint64(0xFFFFFFFF)
            fragment = dataset.get_fragment(int(fragment_id))
            kept = fragment.delete_rows(sorted(int(o) for o in offsets))
            if kept is None:
                removed.append(int(fragment_id))
            else:
                changed.append(kept)
        added = write_fragments(rows, dataset, schema=dataset.schema) if rows.num_rows else []
        operation = lance.LanceOperation.Update(
            removed_fragment_ids=removed, updated_fragments=changed, new_fragments=added
        )
        lance.LanceDataset.commit(dataset, operation, read_version=dataset.version)
        table.checkout_latest()
        return WriteStats(
            inserted=rows.num_rows - updated - moved.num_rows,
            updated=updated + moved.num_rows,
            deleted=old.num_rows - updated,
            total_rows=table.count_rows(),
        )

    @staticmethod
    def _rows_with_ids(dataset, ids: pa.Array, exclude: str) -> pa.Table:
        """Rows outside `exclude` holding one of `ids` (the chunk_id BTree finds them)."""
        found = []
        values = ids.to_pylist()
        for start in range(0, len(values), _IDS_PER_LOOKUP):
            batch = ", ".join(sql_literal(v) for v in values[start : start + _IDS_PER_LOOKUP])
            found.append(
                dataset.to_table(
                    columns=["chunk_id"],
                    filter=f"chunk_id IN ({batch}) AND NOT ({exclude})",
                    with_row_address=True,
                )
            )
        if not found:
            return pa.table(
                {"chunk_id": pa.array([], pa.string()), "_rowaddr": pa.array([], pa.uint64())}
            )
        return pa.concat_tables(found)

    def delete_partition(self, day: date) -> int:
        table = self.table()
        if table is None:
            return 0
        before = table.count_rows()
        table.delete(day_filter(day))
        return before - table.count_rows()

    def optimize(self, cleanup_older_than: timedelta) -> tuple[int, int, int]:
        """Merge ANN segments, compact, fold new rows into the indices, drop older versions:
        versions before, after, and the ANN segments merged into one (0: none)."""
        table = self.table()
        if table is None:
            return 0, 0, 0
        before = len(table.list_versions())
        self.ensure_scalar_indexes()  # a home indexed before an index existed gets it here
        merged = self.merge_ann_segments()
        table.optimize(cleanup_older_than=cleanup_older_than)
        return before, len(table.list_versions()), merged

    def ann_index_names(self) -> list[str]:
        table = self.table()
        if table is None:
            return []
        return [i.name for i in table.list_indices() if i.index_type.upper().startswith("IVF")]

    def has_ann_index(self, table=None) -> bool:
        """Whether the table (latest, or the `snapshot()` given) has an ANN index; listed once
        per table version (every query asks)."""
        table = self.table() if table is None else table
        if table is None:
            return False
        version = self.version_of(table)
        if self._has_ann is None or self._has_ann[0] != version:
            found = any(i.index_type.upper().startswith("IVF") for i in table.list_indices())
            self._has_ann = (version, found)
        return self._has_ann[1]

    def ensure_scalar_indexes(self) -> list[str]:
        """Create the scalar and full-text indexes the table lacks (filters, counts, the day's
        merge, keyword search). Rows written after an index was last updated are still searched
        (LanceDB scans them flat) until `optimize` folds them in."""
        table = self.table()
        if table is None:
            return []
        have = {tuple(i.columns) for i in table.list_indices()}
        created = []
        for column, kind in SCALAR_INDEXES.items():
            if (column,) not in have:
                table.create_index(column, config=kind())
                created.append(column)
        return created

    def maintain_ann_index(self, params: AnnParams) -> str:
        """Build the ANN index once the table is big enough, fold new rows into it afterwards,
        and re-partition it (a new build) once the table has outgrown its build size or the
        index was partitioned otherwise than `params` partition its build size (an index of an
        earlier version, or of other parameters).

        A build commits atomically: searches use the old index until the new one replaces it.
        """
        table = self.table()
        rows = 0 if table is None else table.count_rows()
        if table is None:
            return f"exact (no ANN index below {params.min_rows} rows)"
        self.ensure_scalar_indexes()
        names = self.ann_index_names()
        built = ann_built(names)
        if rows < params.min_rows and not names:
            table.optimize()  # fold new rows into the scalar indexes
            return f"exact (no ANN index below {params.min_rows} rows)"
        if built is not None and self._ann_is_current(built, rows, params):
            # The day's rows become a segment of their own: a re-run of the day removes its
            # fragment, and with it the whole segment (a segment merged with other days would
            # keep the removed fragment listed, and Lance masks it out of every search, ~7 ms
            # at 1M rows). `optimize` (maintenance) merges the segments.
            table.optimize()
            return f"ann (index updated; built over {built[0]} rows, now {rows})"
        partitions = params.num_partitions(rows)
        name = ann_name(rows, partitions)
        table.create_index(
            "vector",
            config=IvfHnswSq(distance_type=METRIC, num_partitions=partitions),
            name=name,
        )
        for old in names:  # the old index served searches until now; the new one takes over
            if old != name:
                table.drop_index(old)
        table.optimize()  # the day's rows into the full-text index too (else scanned flat)
        log.info("ANN index %s built over %d rows (was %s)", name, rows, names or "none")
        what = "re-partitioned" if names else "built"
        return f"ann (IVF_HNSW_SQ {what} over {rows} rows, {partitions} partitions)"

    def ann_segment_rows(self) -> list[int]:
        """Rows indexed by each segment of the ANN index, oldest (the build's) first; [] without
        one."""
        table, ann = self.table(), _current_ann(self.ann_index_names())
        return [] if ann is None else _segment_rows(table.to_lance(), ann)

    def merge_ann_segments(self) -> int:
        """Merge the ANN index's newest segment with as many of the segments before it as
        `segments_to_merge` decides; returns how many segments became one (0: none merged).

        Each day's rows join the index as a segment of their own, a graph that every query
        searches: measured at 1M rows, one graph of 800k and ten of 20k: 16.1 ms a query; the
        ten merged into one: 7.1 ms (the merge 23 s). Rows under different segments are never
        compacted into one fragment either."""
        table, ann = self.table(), _current_ann(self.ann_index_names())
        if ann is None:
            return 0
        dataset = table.to_lance()
        deltas = _segment_rows(dataset, ann)[1:]  # not the build's own segment
        if len(deltas) < 2:
            return 0
        merge = 1 + segments_to_merge(deltas[:-1], deltas[-1])
        if merge < 2:
            return 0
        dataset.optimize.optimize_indices(index_names=[ann], num_indices_to_merge=merge)
        table.checkout_latest()
        log.info("ANN index %s: its %d newest segments merged into one", ann, merge)
        return merge

    @staticmethod
    def _ann_is_current(built: tuple[int, int | None], rows: int, params: AnnParams) -> bool:
        """Whether the index built over `built` = (rows, partitions) still serves a table of
        `rows`: not outgrown, and partitioned as `params` partition its build size."""
        built_rows, partitions = built
        outgrown = rows >= params.rebuild_growth * built_rows
        return not outgrown and partitions == params.num_partitions(built_rows)

    def plan(self, where: str | None, params: AnnParams, exact: bool = False, table=None) -> str:
        """How a query with this filter is answered: "exact" (flat over the matching rows) or
        "ann" (IVF with the filter applied before the probe)."""
        table = self.table() if table is None else table
        if exact or table is None or not self.has_ann_index(table):
            return "exact"
        if not where:
            return "ann"
        dataset = self._dataset(table)
        matches = dataset.count_rows(filter=where)  # the scalar indexes count without a scan
        if matches <= params.exact_filter_rows or self._resident.fits(dataset, matches):
            return "exact"
        return "ann"

    def search(
        self,
        vector: np.ndarray,
        k: int,
        where: str | None,
        params: AnnParams,
        exact: bool = False,
        table=None,
    ) -> pa.Table:
        """The k nearest rows among those matching `where`: the true top k for a selective
        filter (exact over its rows), ANN with the filter applied first otherwise. `table`: a
        `snapshot()` to read (default: the latest version)."""
        table = self.snapshot() if table is None else table
        if table is None:
            return pa.table({})
        vector = np.asarray(vector, np.float32)
        nearest = {"column": "vector", "q": vector, "k": k, "metric": METRIC}
        if self.plan(where, params, exact, table) == "exact":
            found = self._resident_search(table, vector, k, where)
            if found is not None:
                return found
            nearest["use_index"] = False
        else:
            # HNSW needs ef >= the candidates it hands to the refine step (k x refine_factor).
            nearest |= {
                "ef": max(params.ef, k * params.refine_factor),
                "refine_factor": params.refine_factor,
                "minimum_nprobes": params.nprobes,
            }
            if not where:  # with a filter, no maximum: probe on until k matching rows are found
                nearest["maximum_nprobes"] = params.nprobes
        return self._dataset(table).to_table(
            columns=[*RESULT_COLUMNS, "_distance"],
            filter=where or None,
            prefilter=bool(where),
            nearest=nearest,
        )

    def _resident_search(
        self, table, vector: np.ndarray, k: int, where: str | None
    ) -> pa.Table | None:
        """The exact top k by cosine among the rows matching `where`, from vectors held in
        memory: the whole table's if it fits, else the filter's own rows (read once per version,
        then ~1 ms a query). None when neither fits (Lance's flat scan answers). Lance's flat
        search re-reads and converts every matching vector per query: ~5 ms on 3k rows, ~80 ms
        for a filter's 9k rows scattered over a 1M-row table."""
        dataset = self._dataset(table)
        version = self.version_of(table)
        held = self._resident.rows(dataset, version, None)
        if where and held is None:
            held = self._resident.rows(dataset, version, where)
        elif where:  # the whole table is held: keep the rows that match
            found = dataset.to_table(columns=[], filter=where, with_row_id=True)
            keep = np.isin(held[0], found.column("_rowid").to_numpy())
            held = held[0][keep], held[1][keep]
        if held is None:
            return None
        row_ids, vectors = held
        similarity = vectors @ unit_rows(vector[None])[0]
        top = np.arange(len(similarity))
        if len(similarity) > k:  # the k best without sorting every row (174k at most)
            top = np.argpartition(-similarity, k - 1)[:k]
        top = top[np.argsort(-similarity[top], kind="stable")]
        # LanceDB's own take by row id (pylance is pinned); rows come in the order asked.
        rows = dataset._take_rows(row_ids[top].tolist(), columns=RESULT_COLUMNS)
        return rows.append_column("_distance", pa.array(1.0 - similarity[top], pa.float32()))

    def keyword_search(self, text: str, k: int, where: str | None, table=None) -> pa.Table:
        """The k rows whose text best matches `text` by BM25 (`_score`, higher is better) among
        those matching `where`, filtered before the top k is taken."""
        table = self.snapshot() if table is None else table
        if table is None:
            return pa.table({})
        return self._dataset(table).to_table(
            columns=[*RESULT_COLUMNS, "_score"],
            full_text_query={"query": text, "columns": ["text"]},
            filter=where or None,
            prefilter=bool(where),
            limit=k,
        )


class _ResidentSets:
    """Row ids and unit vectors of row sets (the whole table: `where` None; or the rows of one
    filter) of one table version, within a byte budget; the least recently used set goes first.
    A set too large for the budget is remembered as None, so it is counted once per version."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._version: int | None = None
        self._sets: OrderedDict[str | None, tuple[np.ndarray, np.ndarray] | None] = OrderedDict()

    def rows(
        self, dataset: lance.LanceDataset, version: int, where: str | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        with self._lock:
            if self._version != version:  # another version's rows are of no use
                self._version, self._sets = version, OrderedDict()
            if where in self._sets:
                self._sets.move_to_end(where)
                return self._sets[where]
        held = self._read(dataset, where)
        with self._lock:
            if self._version == version:
                self._keep(where, held)
        return held

    def fits(self, dataset: lance.LanceDataset, rows: int) -> bool:
        """Whether `rows` rows of `dataset` can be held: a float32 vector and an int64 row id
        each, as `_bytes` counts them."""
        dimension = dataset.schema.field("vector").type.list_size
        return rows * (dimension * 4 + 8) <= self.budget_bytes

    def _read(
        self, dataset: lance.LanceDataset, where: str | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.fits(dataset, dataset.count_rows(filter=where)):
            return None
        dimension = dataset.schema.field("vector").type.list_size
        rows = dataset.to_table(columns=["vector"], filter=where, with_row_id=True)
        column = rows.column("vector")
        matrix = column.combine_chunks().flatten().to_numpy().reshape(len(column), dimension)
        return rows.column("_rowid").to_numpy(), unit_rows(matrix)

    def _keep(self, where: str | None, held: tuple[np.ndarray, np.ndarray] | None) -> None:
        self._sets[where] = held
        self._sets.move_to_end(where)
        while len(self._sets) > _RESIDENT_SETS or self._bytes() > self.budget_bytes:
            self._sets.popitem(last=False)

    def _bytes(self) -> int:
        return sum(v.nbytes + ids.nbytes for ids, v in filter(None, self._sets.values()))
