"""Data-quality rules over one day's tables, and optional profiling.

Each function here takes plain data (polars frames, lists, numbers) and returns an `Outcome`:
passed or not, the figures a person needs to judge it, and a one-line description. Which
function checks which asset, how severe a failure is and whether it blocks downstream assets is
declared once, in the rule list of `semsearch.defs.checks`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

import polars as pl

from semsearch.core.evaluation import ThemeScores

EXAMPLES = 5  # offending ids shown per failed rule


class Severity(StrEnum):
    ERROR = "ERROR"  # bad data: blocks downstream assets in the same run
    WARN = "WARN"  # worth a look: reported and alerted, nothing is stopped


@dataclass(frozen=True)
class Outcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Thresholds:
    """Limits the rules compare against; one place, built from `Settings`."""

    min_documents: int
    max_rejected_share: float
    max_dead_letter_share: float
    min_ann_recall: float
    max_noise_share: float
    min_themes: int
    max_themes: int
    min_theme_stability: float
    theme_window_days: int = 0  # the stability check judges sliding windows only
    min_v_measure: float = 0.0  # of the themes against the labelled evaluation set
    norm_tolerance: float = 1e-3  # float32 vectors of a normalising model

    def __post_init__(self) -> None:
        for name in (
            "max_rejected_share",
            "max_dead_letter_share",
            "min_ann_recall",
            "max_noise_share",
            "min_v_measure",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a share in [0, 1]")
        if not 0.0 <= self.min_theme_stability <= 1.0:
            raise ValueError(f"min_theme_stability={self.min_theme_stability!r} must be in [0, 1]")
        if self.min_themes > self.max_themes:
            raise ValueError("min_themes must not exceed max_themes")


@dataclass(frozen=True)
class ModelExpectation:
    """What the configured embedding backend promises about its vectors."""

    model_id: str
    dimension: int
    normalized: bool


@dataclass(frozen=True)
class Probe:
    """A stored chunk searched for by its own text, and the index's top hit."""

    chunk_id: str
    text: str
    top_chunk_id: str | None
    top_text: str | None


@dataclass
class PartitionInputs:
    """What the rules of one asset read for one day; a loader fills the fields its rules use."""

    day: date
    limits: Thresholds
    documents: pl.DataFrame | None = None
    source_files: pl.DataFrame | None = None  # landed_files rows of the day's source files
    chunks: pl.DataFrame | None = None
    max_chunk_tokens: int = 0  # the size the chunker used (the setting clamped to the model)
    embeddings: pl.DataFrame | None = None
    dead_letter_ids: list[str] = field(default_factory=list)
    expected_model: ModelExpectation | None = None
    index_rows: int = 0
    probes: list[Probe] = field(default_factory=list)
    ann_results: list[list[str]] | None = None  # per query, ANN top-k ids; None: no ANN index
    exact_results: list[list[str]] = field(default_factory=list)
    themes: pl.DataFrame | None = None
    assignments: pl.DataFrame | None = None
    previous_assignments: pl.DataFrame | None = None  # the previous window (or run of this one)
    previous_note: str = ""
    window_chunks: int = 0  # embedded chunks in the theme window
    theme_documents: pl.DataFrame | None = None  # one assignment row per document
    label_scores: ThemeScores | None = None  # the window's themes against the evaluation labels
    label_error: str = ""  # why there are no label scores (the label key is missing)
    nothing_to_check: str = ""  # set by a loader: every rule passes, saying why


@dataclass(frozen=True)
class Rule:
    """One check: which asset, what it asserts, how bad a failure is, and how to evaluate it."""

    asset: str
    name: str
    severity: Severity
    description: str
    evaluate: Callable[[PartitionInputs], Outcome]

    @property
    def blocking(self) -> bool:
        # Only bad data stops downstream assets; a warning never does.
        return self.severity is Severity.ERROR


def _examples(values: Sequence[Any]) -> list[str]:
    return [str(v) for v in list(values)[:EXAMPLES]]


def min_rows(frame: pl.DataFrame, minimum: int, what: str = "rows") -> Outcome:
    passed = frame.height >= minimum
    return Outcome(
        passed,
        f"{frame.height} {what} (at least {minimum} expected)",
        {"rows": frame.height, "minimum": minimum},
    )


def unique(frame: pl.DataFrame, column: str) -> Outcome:
    duplicated = (
        frame.group_by(column).len().filter(pl.col("len") > 1).sort(column)[column].to_list()
    )
    return Outcome(
        not duplicated,
        f"{len(duplicated)} duplicated {column} values" if duplicated else f"{column} is unique",
        {
            "rows": frame.height,
            "duplicated_values": len(duplicated),
            "examples": _examples(duplicated),
        },
    )


def no_blank(frame: pl.DataFrame, column: str, id_column: str) -> Outcome:
    blank = frame.filter(
        pl.col(column).is_null() | (pl.col(column).str.strip_chars().str.len_chars() == 0)
    )
    return Outcome(
        blank.height == 0,
        f"{blank.height} rows with no {column}",
        {"rows": frame.height, "blank": blank.height, "examples": _examples(blank[id_column])},
    )


def dated_within(frame: pl.DataFrame, day: date, id_column: str) -> Outcome:
    """Every row's created_at (UTC) and partition_date fall on `day`."""
    outside = frame.filter(
        (pl.col("created_at").dt.date() != day) | (pl.col("partition_date") != day)
    )
    return Outcome(
        outside.height == 0,
        f"{outside.height} rows dated outside {day}",
        {
            "rows": frame.height,
            "outside": outside.height,
            "examples": _examples(outside[id_column]),
        },
    )


def share_at_most(part: int, whole: int, maximum: float, what: str) -> Outcome:
    share = part / whole if whole else 0.0
    return Outcome(
        share <= maximum,
        f"{what}: {part} of {whole} ({share:.1%}, at most {maximum:.1%})",
        {"count": part, "total": whole, "share": round(share, 4), "maximum": maximum},
    )


def rejected_share(source_files: pl.DataFrame, maximum: float) -> Outcome:
    """Rejected records of the files the day's documents came from, against all their records."""
    rejected = int(source_files["rows_rejected"].sum() or 0)
    loaded = int(source_files["rows_loaded"].sum() or 0)
    outcome = share_at_most(rejected, rejected + loaded, maximum, "rejected records")
    worst = source_files.sort("rows_rejected", descending=True).head(EXAMPLES)
    by_file = dict(zip(worst["path"].to_list(), worst["rows_rejected"].to_list(), strict=True))
    return Outcome(outcome.passed, outcome.description, outcome.metadata | {"by_file": by_file})


def files_read(files: pl.DataFrame) -> Outcome:
    """Every landing file of an ingest was read: none unparseable, none skipped."""
    unread = files.filter(pl.col("status") != "loaded").sort("path")
    examples = [f"{p} ({s}: {e})" for p, s, e in unread.select("path", "status", "error").rows()]
    return Outcome(
        unread.is_empty(),
        f"{unread.height} of {files.height} files not read"
        + (f": {'; '.join(examples[:EXAMPLES])}" if examples else ""),
        {"files": files.height, "not_read": unread.height, "examples": examples[:EXAMPLES]},
    )


def covered(parent_ids: Sequence[str], child_ids: Sequence[str], what: str) -> Outcome:
    """Every parent id appears among the child ids (e.g. every document has a chunk)."""
    missing = sorted(set(parent_ids) - set(child_ids))
    return Outcome(
        not missing,
        f"{len(missing)} {what}" if missing else f"no {what}",
        {"expected": len(set(parent_ids)), "missing": len(missing), "examples": _examples(missing)},
    )


def within_range(frame: pl.DataFrame, column: str, low: int, high: int, id_column: str) -> Outcome:
    outside = frame.filter((pl.col(column) < low) | (pl.col(column) > high))
    values = frame[column]
    return Outcome(
        outside.height == 0,
        f"{outside.height} rows with {column} outside [{low}, {high}]",
        {
            "outside": outside.height,
            "min": int(values.min() or 0),
            "max": int(values.max() or 0),
            "bounds": [low, high],
            "examples": _examples(outside[id_column]),
        },
    )


def one_vector_per_chunk(
    embeddings: pl.DataFrame, chunk_ids: Sequence[str], dead_letter_ids: Sequence[str]
) -> Outcome:
    """Exactly one vector for every chunk that is not a dead letter, and nothing else."""
    expected = set(chunk_ids) - set(dead_letter_ids)
    present = embeddings["chunk_id"].to_list()
    missing = sorted(expected - set(present))
    extra = sorted(set(present) - expected)
    duplicated = len(present) - len(set(present))
    passed = not (missing or extra or duplicated)
    return Outcome(
        passed,
        f"{len(present)} vectors for {len(expected)} chunks "
        f"({len(missing)} missing, {len(extra)} extra, {duplicated} duplicated)",
        {
            "vectors": len(present),
            "expected": len(expected),
            "dead_letters": len(set(dead_letter_ids)),
            "missing": len(missing),
            "extra": len(extra),
            "duplicated": duplicated,
            "examples": _examples(missing + extra),
        },
    )


def has_dimension(embeddings: pl.DataFrame, dimension: int) -> Outcome:
    wrong = embeddings.filter(
        (pl.col("vector").list.len() != dimension) | (pl.col("dimension") != dimension)
    )
    return Outcome(
        wrong.height == 0,
        f"{wrong.height} vectors not of dimension {dimension}",
        {"expected": dimension, "wrong": wrong.height, "examples": _examples(wrong["chunk_id"])},
    )


def finite_vectors(embeddings: pl.DataFrame) -> Outcome:
    bad = embeddings.filter(
        ~pl.col("vector").list.eval(pl.element().is_finite()).list.all()
        | pl.col("vector").is_null()
    )
    return Outcome(
        bad.height == 0,
        f"{bad.height} vectors with NaN, infinite or missing values",
        {"non_finite": bad.height, "examples": _examples(bad["chunk_id"])},
    )


def normalised_vectors(embeddings: pl.DataFrame, expected: bool, tolerance: float) -> Outcome:
    if not expected:
        return Outcome(True, "the model does not promise unit vectors", {"checked": False})
    norms = embeddings.select(
        "chunk_id", pl.col("vector").list.eval(pl.element().pow(2)).list.sum().sqrt().alias("n")
    )
    off = norms.filter((pl.col("n") - 1.0).abs() > tolerance)
    return Outcome(
        off.height == 0,
        f"{off.height} vectors whose norm differs from 1 by more than {tolerance}",
        {
            "not_unit": off.height,
            "norm_min": round(float(norms["n"].min() or 0), 6),
            "norm_max": round(float(norms["n"].max() or 0), 6),
            "examples": _examples(off["chunk_id"]),
        },
    )


def single_value(frame: pl.DataFrame, column: str, expected: str) -> Outcome:
    values = sorted(v for v in frame[column].unique().to_list() if v is not None)
    passed = values in ([], [expected])
    return Outcome(
        passed,
        f"{column}: {', '.join(values) or 'none'} (expected {expected})",
        {"values": values, "expected": expected},
    )


def counts_equal(actual: int, expected: int, what: str) -> Outcome:
    return Outcome(
        actual == expected,
        f"{what}: {actual}, expected {expected}",
        {"actual": actual, "expected": expected},
    )


def known_items_found(probes: Sequence[Probe]) -> Outcome:
    """Each probe's own chunk (or a chunk with identical text) ranks first."""
    missed = [p for p in probes if p.top_chunk_id != p.chunk_id and (p.top_text or None) != p.text]
    return Outcome(
        not missed,
        f"{len(probes) - len(missed)} of {len(probes)} stored chunks found themselves at rank 1",
        {
            "probes": len(probes),
            "missed": len(missed),
            "examples": [f"{p.chunk_id} -> {p.top_chunk_id}" for p in missed[:EXAMPLES]],
        },
    )


def recall_at_k(approximate: Sequence[Sequence[str]], exact: Sequence[Sequence[str]]) -> float:
    """Mean share of each exact top-k found by the approximate search."""
    shares = [len(set(a) & set(e)) / len(e) for a, e in zip(approximate, exact, strict=True) if e]
    return sum(shares) / len(shares) if shares else 1.0


def ann_recall(
    approximate: Sequence[Sequence[str]] | None, exact: Sequence[Sequence[str]], minimum: float
) -> Outcome:
    if approximate is None:
        return Outcome(True, "exact search (no ANN index yet): recall is 1", {"ann_index": False})
    if not exact:
        return Outcome(True, "recall probe not due for this day", {"ann_index": True})
    recall = recall_at_k(approximate, exact)
    return Outcome(
        recall >= minimum,
        f"ANN recall@10 {recall:.3f} against exact search (at least {minimum})",
        {"ann_index": True, "recall_at_10": round(recall, 4), "queries": len(exact)},
    )


def count_between(count: int, low: int, high: int, what: str) -> Outcome:
    return Outcome(
        low <= count <= high,
        f"{count} {what} (expected {low}..{high})",
        {"count": count, "bounds": [low, high]},
    )


def noise_share(documents: pl.DataFrame, outlier_id: str, maximum: float) -> Outcome:
    noise = documents.filter(pl.col("theme_id") == outlier_id).height
    return share_at_most(noise, documents.height, maximum, "documents left as outliers")


def label_agreement(scores: ThemeScores | None, minimum: float, error: str = "") -> Outcome:
    """The themes' V-measure against the evaluation labels is at least `minimum`."""
    if scores is None:
        return Outcome(False, error or "no label scores", {"minimum": minimum})
    return Outcome(
        scores.v_measure >= minimum,
        f"V-measure {scores.v_measure:.3f} against the labels of {scores.labelled} documents "
        f"(at least {minimum}; homogeneity {scores.homogeneity:.3f}, completeness "
        f"{scores.completeness:.3f}, ARI {scores.ari:.3f})",
        {**scores.as_dict(), "minimum": minimum},
    )


def stability_min_overlap(window_days: int) -> float:
    """The share of a window's items that must have been in the previous window for its
    stability to be judged.

    The promise is about a sliding window: a W-day window takes in about 1/W new documents a
    day. A window with at most 1.5 days' worth new (volume varies day to day), and never more
    than a tenth new, is sliding and is judged. One taking in more is a different population:
    the data's first W days, while the window fills (day d of them is 1/d new), or a backlog
    arriving at once; a refit there is right to move documents.
    """
    if window_days <= 0:  # all history: the window only grows, by a tenth at most to judge it
        return 0.9
    return max(0.0, min(0.9, 1.0 - 1.5 / window_days))


def assignments_kept(
    current: pl.DataFrame,
    previous: pl.DataFrame | None,
    minimum: float,
    note: str = "",
    key: str = "chunk_id",
    min_overlap: float = 0.0,
) -> Outcome:
    """Share of the items (`key`) in both assignments that kept their theme, and the ARI;
    judged only when at least `min_overlap` of the current items were in the previous run
    (see `stability_min_overlap`)."""
    if previous is None or previous.height == 0:
        return Outcome(True, note or "first run of this window: nothing to compare", {})
    both = (
        current.select(key, "theme_id")
        .unique(key)
        .join(previous.select(key, pl.col("theme_id").alias("before")).unique(key), on=key)
    )
    kept = both.filter(pl.col("theme_id") == pl.col("before")).height
    share = kept / both.height if both.height else 1.0
    ari = _adjusted_rand(both["before"], both["theme_id"]) if both.height else 1.0
    moved = both.filter(pl.col("theme_id") != pl.col("before"))
    transitions = moved.group_by("before", "theme_id").len().sort("len", descending=True)
    prefix = f"{note}: " if note else ""
    items = current[key].n_unique()
    judged = both.height >= min_overlap * items
    why = (
        ""
        if judged
        else f"; not judged: only {both.height} of the window's {items} were in the previous "
        f"one (filling or mostly replaced; judged from {min_overlap:.0%})"
    )
    return Outcome(
        share >= minimum or not judged,
        f"{prefix}{kept} of {both.height} {key.removesuffix('_id')}s kept their theme "
        f"({share:.1%}, at least {minimum:.0%}; ARI {ari:.3f}){why}",
        {
            "compared": both.height,
            "kept": kept,
            "share_kept": round(share, 4),
            "ari": round(ari, 4),
            "top_moves": [f"{b} -> {t}: {n}" for b, t, n in transitions.head(EXAMPLES).rows()],
        },
    )


def _adjusted_rand(before: pl.Series, after: pl.Series) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(before.to_list(), after.to_list()))


# Profiling: figures about a day's data, not rules; shown only when switched on.


def length_distribution(values: pl.Series) -> dict[str, float]:
    lengths = values.drop_nulls().str.len_chars()
    if lengths.is_empty():
        return {}
    quantiles = {f"p{q}": float(lengths.quantile(q / 100, "nearest") or 0) for q in (50, 90, 99)}
    return {"min": int(lengths.min() or 0), **quantiles, "max": int(lengths.max() or 0)}


def metadata_breakdown(metadata: pl.Series, top: int = 5, keys: int = 10) -> dict[str, dict]:
    """The most frequent values of each metadata key (the JSON object column)."""
    counts: dict[str, dict[str, int]] = {}
    for raw in metadata.drop_nulls().to_list():
        for key, value in json.loads(raw).items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            bucket = counts.setdefault(key, {})
            bucket[text[:60]] = bucket.get(text[:60], 0) + 1
    ranked = sorted(counts, key=lambda k: -sum(counts[k].values()))[:keys]
    return {
        key: dict(sorted(counts[key].items(), key=lambda kv: (-kv[1], kv[0]))[:top])
        for key in ranked
    }


def profile(
    frame: pl.DataFrame, text_columns: Sequence[str], metadata_column: str | None = None
) -> dict[str, Any]:
    """Null counts per column, length distributions of text columns, metadata breakdowns."""
    nulls = {name: int(count) for name, count in frame.null_count().row(0, named=True).items()}
    result: dict[str, Any] = {
        "rows": frame.height,
        "null_counts": {k: v for k, v in nulls.items() if v} or {"(none)": 0},
        "lengths": {c: length_distribution(frame[c]) for c in text_columns if c in frame.columns},
    }
    if metadata_column and metadata_column in frame.columns:
        result["metadata"] = metadata_breakdown(frame[metadata_column])
    return result
