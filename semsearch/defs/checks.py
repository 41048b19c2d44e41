"""Asset checks, per day-partition, built from one declarative list of rules.

`RULES` says, for every asset, what is asserted, how bad a failure is and which pure function of
`semsearch.core.quality` evaluates it. Each asset gets one check op (one read of its partition,
one model load at most) that yields a result per rule. ERROR rules are blocking: when one fails,
the assets downstream of the checked one do not run in that run. WARN rules only report.
"""

import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import date

import numpy as np
import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    ConfigurableResource,
    MetadataValue,
    PartitionsDefinition,
    PreviewWarning,
    SupersessionWarning,
    build_time_partition_freshness_checks,
    multi_asset_check,
)

from semsearch.config import ENV_PREFIX, Settings
from semsearch.core import quality as q
from semsearch.core.chunking import effective_spec
from semsearch.core.quality import PartitionInputs, Rule, Severity, Thresholds
from semsearch.core.themes import OUTLIERS
from semsearch.defs.resources import EmbeddingResource, PipelineResource, StorageResource
from semsearch.storage import themes_store
from semsearch.storage.history import previous_partition
from semsearch.storage.schemas import (
    ASSIGNMENTS_TABLE,
    CHUNKS,
    CHUNKS_TABLE,
    DEAD_LETTER_TABLE,
    DOCUMENTS,
    EMBEDDING_DEAD_LETTER,
    EMBEDDINGS,
    EMBEDDINGS_TABLE,
    LANDED_FILES,
    LANDED_TABLE,
    RAW_TABLE,
    THEMES,
    THEMES_TABLE,
)
from semsearch.storage.vector_index import AnnParams, VectorIndex, ann_built_rows, day_filter

INDEX, THEMES_ASSET = "vector_index", THEMES_TABLE
ANN_QUERIES, ANN_K = 10, 10
# The recall probe's exact searches scan the whole index (~0.5 s each at 1M rows): it runs on
# one day in RECALL_PROBE_EVERY_DAYS (a weekly sample of the daily runs) and whenever the ANN
# index was (re)built over the table as it is now, so every new index is measured once.
RECALL_PROBE_EVERY_DAYS = 7
NO_WINDOW = "no documents on this day: no theme window to check"


class QualityResource(ConfigurableResource):
    """Check thresholds and the profiling switch (see the Operations block of `Settings`)."""

    # No defaults here: `from_settings` fills every field, so `Settings` stays the one place.
    min_documents: int
    max_rejected_share: float
    max_dead_letter_share: float
    probe_items: int
    min_ann_recall: float
    max_noise_share: float
    min_themes: int
    max_themes: int
    min_theme_stability: float
    theme_window_days: int
    min_v_measure: float
    profiling: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> "QualityResource":
        resource = cls(
            min_documents=settings.check_min_documents,
            max_rejected_share=settings.check_max_rejected_share,
            max_dead_letter_share=settings.check_max_dead_letter_share,
            probe_items=settings.check_probe_items,
            min_ann_recall=settings.check_min_ann_recall,
            max_noise_share=settings.check_max_noise_share,
            min_themes=settings.check_min_themes,
            max_themes=settings.check_max_themes,
            min_theme_stability=settings.check_min_theme_stability,
            theme_window_days=settings.theme_window_days,
            min_v_measure=settings.check_min_v_measure,
            profiling=bool(settings.profiling),
        )
        resource.thresholds()  # out-of-range settings fail here, when definitions load
        return resource

    def thresholds(self) -> Thresholds:
        names = set(Thresholds.__dataclass_fields__) & set(type(self).model_fields)
        return Thresholds(**{n: getattr(self, n) for n in names})


def _profile_rule(asset: str, columns: Sequence[str], frame_of: Callable) -> Rule:
    return Rule(
        asset,
        "profile",
        Severity.WARN,
        "Statistics, not a rule (always passes): null counts, text length distribution and, "
        "for documents, the most frequent values of each metadata key.",
        lambda p: q.Outcome(True, "profile", q.profile(frame_of(p), columns, "metadata")),
    )


RULES: tuple[Rule, ...] = (
    # raw_documents
    Rule(
        RAW_TABLE,
        "partition_not_empty",
        Severity.WARN,
        "The day holds at least SEMSEARCH_CHECK_MIN_DOCUMENTS documents (0 accepts empty days).",
        lambda p: q.min_rows(p.documents, p.limits.min_documents, "documents"),
    ),
    Rule(
        RAW_TABLE,
        "doc_ids_unique",
        Severity.ERROR,
        "One row per doc_id.",
        lambda p: q.unique(p.documents, "doc_id"),
    ),
    Rule(
        RAW_TABLE,
        "text_present",
        Severity.ERROR,
        "Every document has non-blank text.",
        lambda p: q.no_blank(p.documents, "text", "doc_id"),
    ),
    Rule(
        RAW_TABLE,
        "dates_in_partition",
        Severity.ERROR,
        "Every document's created_at (UTC) falls on the partition's day.",
        lambda p: q.dated_within(p.documents, p.day, "doc_id"),
    ),
    Rule(
        RAW_TABLE,
        "rejected_share",
        Severity.ERROR,
        "Rejected records of the day's source files stay at or below "
        "SEMSEARCH_CHECK_MAX_REJECTED_SHARE of their records.",
        lambda p: q.rejected_share(p.source_files, p.limits.max_rejected_share),
    ),
    # chunks
    Rule(
        CHUNKS_TABLE,
        "every_document_chunked",
        Severity.ERROR,
        "Every document has at least one chunk.",
        lambda p: q.covered(p.documents["doc_id"], p.chunks["doc_id"], "documents without chunks"),
    ),
    Rule(
        CHUNKS_TABLE,
        "token_counts_in_bounds",
        Severity.ERROR,
        "Every chunk has 1..N tokens, N the size the chunker used: SEMSEARCH_CHUNK_SIZE_TOKENS "
        "clamped to the model's input limit.",
        lambda p: q.within_range(p.chunks, "token_count", 1, p.max_chunk_tokens, "chunk_id"),
    ),
    Rule(
        CHUNKS_TABLE,
        "chunk_ids_unique",
        Severity.ERROR,
        "One row per chunk_id.",
        lambda p: q.unique(p.chunks, "chunk_id"),
    ),
    # embeddings
    Rule(
        EMBEDDINGS_TABLE,
        "one_vector_per_chunk",
        Severity.ERROR,
        "Exactly one vector per chunk, dead letters excepted.",
        lambda p: q.one_vector_per_chunk(p.embeddings, p.chunks["chunk_id"], p.dead_letter_ids),
    ),
    Rule(
        EMBEDDINGS_TABLE,
        "expected_dimension",
        Severity.ERROR,
        "Every vector has the configured model's dimension.",
        lambda p: q.has_dimension(p.embeddings, p.expected_model.dimension),
    ),
    Rule(
        EMBEDDINGS_TABLE,
        "finite_vectors",
        Severity.ERROR,
        "No NaN or infinite values.",
        lambda p: q.finite_vectors(p.embeddings),
    ),
    Rule(
        EMBEDDINGS_TABLE,
        "normalised_vectors",
        Severity.WARN,
        "Unit-length vectors where the model normalises (cosine search does not need it, a "
        "change means another model or a broken backend).",
        lambda p: q.normalised_vectors(
            p.embeddings, p.expected_model.normalized, p.limits.norm_tolerance
        ),
    ),
    Rule(
        EMBEDDINGS_TABLE,
        "single_model",
        Severity.ERROR,
        "All vectors come from the configured model.",
        lambda p: q.single_value(p.embeddings, "model_id", p.expected_model.model_id),
    ),
    Rule(
        EMBEDDINGS_TABLE,
        "dead_letter_share",
        Severity.ERROR,
        "At most SEMSEARCH_CHECK_MAX_DEAD_LETTER_SHARE of the day's chunks failed to embed: a "
        "day mostly missing from the index must not look done (the endpoint is down or refusing).",
        lambda p: q.share_at_most(
            len(p.dead_letter_ids), p.chunks.height, p.limits.max_dead_letter_share, "dead letters"
        ),
    ),
    Rule(
        EMBEDDINGS_TABLE,
        "no_dead_letters",
        Severity.WARN,
        "No chunk of the day waits in embedding_dead_letter (re-materialize the day to retry).",
        lambda p: q.counts_equal(len(p.dead_letter_ids), 0, "dead letters"),
    ),
    # vector_index
    Rule(
        INDEX,
        "rows_match_embeddings",
        Severity.ERROR,
        "The index holds as many rows for the day as the day has embeddings.",
        lambda p: q.counts_equal(p.index_rows, p.embeddings.height, "index rows"),
    ),
    Rule(
        INDEX,
        "known_item_probe",
        Severity.ERROR,
        "A few stored chunks, searched for with their stored vectors, rank first.",
        lambda p: q.known_items_found(p.probes),
    ),
    Rule(
        INDEX,
        "ann_recall",
        Severity.WARN,
        "Where an ANN index exists, its recall@10 against exact search stays at or above "
        "SEMSEARCH_CHECK_MIN_ANN_RECALL (measured weekly and after every index build).",
        lambda p: q.ann_recall(p.ann_results, p.exact_results, p.limits.min_ann_recall),
    ),
    # themes
    Rule(
        THEMES_ASSET,
        "noise_share",
        Severity.WARN,
        "The window's outlier share (of documents) stays at or below "
        "SEMSEARCH_CHECK_MAX_NOISE_SHARE.",
        lambda p: q.noise_share(p.theme_documents, OUTLIERS, p.limits.max_noise_share),
    ),
    Rule(
        THEMES_ASSET,
        "theme_count",
        Severity.WARN,
        "SEMSEARCH_CHECK_MIN_THEMES..SEMSEARCH_CHECK_MAX_THEMES themes in the window.",
        lambda p: q.count_between(
            p.themes.filter(pl.col("theme_id") != OUTLIERS).height,
            p.limits.min_themes,
            p.limits.max_themes,
            "themes",
        ),
    ),
    Rule(
        THEMES_ASSET,
        "stability",
        Severity.WARN,
        "Of the documents in both this window and the previous one, at least "
        "SEMSEARCH_CHECK_MIN_THEME_STABILITY keep their theme id (the ARI between the two "
        "windows is in the metadata); the first window is compared with its previous run. "
        "Judged once the window slides (at most 1.5 days' worth of it new, and at most a tenth): "
        "a window still filling is a new population.",
        lambda p: q.assignments_kept(
            p.theme_documents,
            p.previous_assignments,
            p.limits.min_theme_stability,
            p.previous_note,
            key="doc_id",
            min_overlap=q.stability_min_overlap(p.limits.theme_window_days),
        ),
    ),
    # theme_assignments
    Rule(
        ASSIGNMENTS_TABLE,
        "assignments_unique",
        Severity.ERROR,
        "Each chunk of the window is assigned to exactly one theme.",
        lambda p: q.unique(p.assignments, "chunk_id"),
    ),
    Rule(
        ASSIGNMENTS_TABLE,
        "every_chunk_assigned",
        Severity.WARN,
        "Every embedded chunk of the window has an assignment (a day of the window embedded "
        "after the themes ran shows here as missing: materialize the themes again).",
        lambda p: q.counts_equal(p.assignments.height, p.window_chunks, "assigned chunks"),
    ),
)

# Only where a labelled evaluation set is configured (SEMSEARCH_EVAL_LABEL_FIELD).
LABEL_RULES: tuple[Rule, ...] = (
    Rule(
        THEMES_ASSET,
        "label_agreement",
        Severity.WARN,
        "The window's themes agree with the labelled evaluation set (the metadata key "
        "SEMSEARCH_EVAL_LABEL_FIELD): V-measure at or above SEMSEARCH_CHECK_MIN_V_MEASURE.",
        lambda p: q.label_agreement(p.label_scores, p.limits.min_v_measure, p.label_error),
    ),
)

PROFILE_RULES: tuple[Rule, ...] = (
    _profile_rule(RAW_TABLE, ["text", "title"], lambda p: p.documents),
    _profile_rule(CHUNKS_TABLE, ["text"], lambda p: p.chunks),
)


# Loaders: read exactly the day's partition of what an asset's rules look at.


def _day(context: AssetCheckExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def _load_raw(inputs: PartitionInputs, storage: StorageResource, **_) -> None:
    tables = storage.tables()
    inputs.documents = tables.read_partition(RAW_TABLE, inputs.day, DOCUMENTS)
    files = inputs.documents["source_file"].unique().to_list()
    landed = tables.scan(LANDED_TABLE, LANDED_FILES)
    inputs.source_files = landed.filter(pl.col("path").is_in(files)).collect()


def _load_chunks(
    inputs: PartitionInputs,
    storage: StorageResource,
    embedder: EmbeddingResource,
    pipeline: PipelineResource,
    **_,
) -> None:
    tables = storage.tables()
    spec = effective_spec(pipeline.chunk_spec(), embedder.get_backend().max_input_tokens)
    inputs.max_chunk_tokens = spec.size
    inputs.documents = tables.read_partition(RAW_TABLE, inputs.day, DOCUMENTS)
    inputs.chunks = tables.read_partition(CHUNKS_TABLE, inputs.day, CHUNKS)


def _load_embeddings(
    inputs: PartitionInputs, storage: StorageResource, embedder: EmbeddingResource, **_
) -> None:
    tables = storage.tables()
    inputs.embeddings = tables.read_partition(EMBEDDINGS_TABLE, inputs.day, EMBEDDINGS)
    inputs.chunks = tables.read_partition(CHUNKS_TABLE, inputs.day, CHUNKS).select("chunk_id")
    dead = tables.read_partition(DEAD_LETTER_TABLE, inputs.day, EMBEDDING_DEAD_LETTER)
    inputs.dead_letter_ids = dead["chunk_id"].to_list()
    backend = embedder.get_backend()
    inputs.expected_model = q.ModelExpectation(
        backend.model_id, backend.dimension, bool(getattr(backend, "normalized", False))
    )


def _load_index(
    inputs: PartitionInputs,
    storage: StorageResource,
    pipeline: PipelineResource,
    quality: QualityResource,
    **_,
) -> None:
    tables, index = storage.tables(), storage.index()
    inputs.embeddings = tables.read_partition(EMBEDDINGS_TABLE, inputs.day, EMBEDDINGS).sort(
        "chunk_id"
    )
    inputs.index_rows = index.count_rows(day_filter(inputs.day))
    texts = tables.read_partition(CHUNKS_TABLE, inputs.day, CHUNKS).select("chunk_id", "text")
    sample = inputs.embeddings.select("chunk_id", "vector").join(texts, on="chunk_id")
    inputs.probes = _probes(index, pipeline, sample.sort("chunk_id").head(quality.probe_items))
    if index.has_ann_index():
        inputs.ann_results = []
        built = ann_built_rows(index.ann_index_names())
        due = inputs.day.toordinal() % RECALL_PROBE_EVERY_DAYS == 0 or built == index.count_rows()
        if not due:
            return
        queries = inputs.embeddings.head(ANN_QUERIES)["vector"].to_list()
        params = pipeline.ann_params()
        inputs.exact_results = [_top_ids(index, v, params, exact=True) for v in queries]
        inputs.ann_results = [_top_ids(index, v, params, exact=False) for v in queries]


def _top_ids(index: VectorIndex, vector: list[float], params: AnnParams, exact: bool) -> list[str]:
    hits = index.search(np.asarray(vector, np.float32), ANN_K, None, params, exact=exact)
    return hits.column("chunk_id").to_pylist() if hits.num_rows else []


def _probes(index: VectorIndex, pipeline: PipelineResource, sample: pl.DataFrame) -> list[q.Probe]:
    """Search the whole index, the way users do, with a few stored chunks' own vectors.

    The stored vectors, not the texts embedded again: with an API backend a check that embeds
    pays for every probe on every run, and the vectors are exactly what the embeddings stage
    produced (their model is the single_model check's business).
    """
    probes = []
    for chunk_id, vector, text in sample.select("chunk_id", "vector", "text").iter_rows():
        hits = index.search(np.asarray(vector, np.float32), 1, None, pipeline.ann_params())
        top = hits.to_pylist()[0] if hits.num_rows else {}
        probes.append(q.Probe(chunk_id, text, top.get("chunk_id"), top.get("text")))
    return probes


def _load_themes(
    inputs: PartitionInputs, storage: StorageResource, pipeline: PipelineResource, **_
) -> None:
    tables = storage.tables()
    inputs.themes = tables.read_partition(THEMES_TABLE, inputs.day, THEMES)
    if inputs.themes.height == 0:
        inputs.nothing_to_check = NO_WINDOW
        return
    if pipeline.eval_label_field:
        try:
            inputs.label_scores = themes_store.window_label_scores(
                tables, inputs.day, pipeline.eval_label_field
            )
        except ValueError as exc:  # no document has the key: say which keys there are
            inputs.label_error = str(exc)
    inputs.assignments = themes_store.window_assignments(tables, inputs.day)
    inputs.theme_documents = inputs.assignments.unique("doc_id").sort("doc_id")
    previous = themes_store.latest_window_before(tables, inputs.day)
    if previous is not None:
        inputs.previous_assignments = themes_store.window_assignments(tables, previous)
        inputs.previous_note = f"compared with the window ending {previous}"
    else:
        before, note = previous_partition(tables, ASSIGNMENTS_TABLE, inputs.day)
        inputs.previous_assignments, inputs.previous_note = before, note


def _load_theme_assignments(inputs: PartitionInputs, storage: StorageResource, **_) -> None:
    tables = storage.tables()
    inputs.assignments = themes_store.window_assignments(tables, inputs.day)
    themes = tables.read_partition(THEMES_TABLE, inputs.day, THEMES)
    if themes.height == 0:
        inputs.nothing_to_check = NO_WINDOW
        return
    inputs.window_chunks = themes_store.window_chunks(
        tables, themes["window_start"].min(), inputs.day
    )


LOADERS: dict[str, Callable[..., None]] = {
    RAW_TABLE: _load_raw,
    CHUNKS_TABLE: _load_chunks,
    EMBEDDINGS_TABLE: _load_embeddings,
    INDEX: _load_index,
    THEMES_ASSET: _load_themes,
    ASSIGNMENTS_TABLE: _load_theme_assignments,
}


def _metadata(outcome: q.Outcome) -> dict:
    return {
        k: MetadataValue.json(v) if isinstance(v, dict | list) else v
        for k, v in outcome.metadata.items()
    }


def check_result(asset: str, name: str, severity: Severity, outcome: q.Outcome) -> AssetCheckResult:
    """A check's result from a rule's outcome: what the UI shows for one evaluation."""
    return AssetCheckResult(
        asset_key=AssetKey(asset),
        check_name=name,
        passed=outcome.passed,
        severity=AssetCheckSeverity(severity.value),
        description=outcome.description,
        metadata=_metadata(outcome),
    )


def release_hint(check: str, settings: Settings) -> str:
    """How to let through a day that `check` (asset/name) blocked: the setting its threshold
    is, named in its rule's description, or else fixing the data."""
    asset, _, name = check.partition("/")
    rule = next((r for r in RULES if (r.asset, r.name) == (asset, name)), None)
    found = re.findall(rf"{ENV_PREFIX}[A-Z_]+", rule.description) if rule else []
    fix = "fix the records at the source and land the file again"
    current = [
        f"{variable} (now {getattr(settings, variable.removeprefix(ENV_PREFIX).lower())})"
        for variable in dict.fromkeys(found)
        if hasattr(settings, variable.removeprefix(ENV_PREFIX).lower())
    ]
    return f"{fix}, or change {' / '.join(current)}" if current else fix


def _spec(rule: Rule, partitions: PartitionsDefinition) -> AssetCheckSpec:
    return AssetCheckSpec(
        rule.name,
        asset=rule.asset,
        description=f"[{rule.severity.value}{', blocking' if rule.blocking else ''}] "
        + rule.description,
        blocking=rule.blocking,
        partitions_def=partitions,
        metadata={"severity": rule.severity.value},
    )


def _rule_check(
    asset: str, rules: Sequence[Rule], partitions: PartitionsDefinition
) -> AssetChecksDefinition:
    @multi_asset_check(
        name=f"{asset}_checks",
        specs=[_spec(rule, partitions) for rule in rules],
        description=f"The {asset} rules, evaluated on the run's partition only.",
    )
    def _check(
        context: AssetCheckExecutionContext,
        storage: StorageResource,
        pipeline: PipelineResource,
        embedder: EmbeddingResource,
        quality: QualityResource,
    ) -> Iterator[AssetCheckResult]:
        inputs = PartitionInputs(day=_day(context), limits=quality.thresholds())
        LOADERS[asset](
            inputs, storage=storage, embedder=embedder, pipeline=pipeline, quality=quality
        )
        for rule in rules:
            outcome = (
                q.Outcome(True, inputs.nothing_to_check)
                if inputs.nothing_to_check
                else (rule.evaluate(inputs))
            )
            if not outcome.passed:
                context.log.warning("%s.%s failed: %s", asset, rule.name, outcome.description)
            yield check_result(asset, rule.name, rule.severity, outcome)

    return _check


# Freshness is Dagster's own time-partition freshness check, run by its own sensor and after
# every run that writes the index. It is partition-aware: at each deadline it looks for the
# latest partition. (Dagster 1.13's newer FreshnessPolicy judges an asset by its latest
# materialization of *any* partition, so a backfill of an old day would make the index look
# fresh; hence the check it supersedes, with that supersession warning silenced here.)


def build_freshness_checks(deadline_hour: int) -> list[AssetChecksDefinition]:
    """`vector_index/freshness_check`: at `deadline_hour` UTC each day the latest day-partition
    (today's: the partitions reach today) is indexed. WARN and non-blocking, like every rule
    that blocks nothing; -1 switches it off."""
    if deadline_hour < 0:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupersessionWarning)
        return list(
            build_time_partition_freshness_checks(
                assets=[INDEX],
                deadline_cron=f"0 {deadline_hour} * * *",
                timezone="UTC",
                severity=AssetCheckSeverity.WARN,
                blocking=False,
            )
        )


def build_checks(
    partitions: PartitionsDefinition, profiling: bool = False, labelled: bool = False
) -> list[AssetChecksDefinition]:
    """One check op per asset from `RULES` (plus profiles and the label agreement when
    switched on)."""
    rules = RULES + (LABEL_RULES if labelled else ()) + (PROFILE_RULES if profiling else ())
    assets = list(dict.fromkeys(rule.asset for rule in rules))
    # Per-partition check specs are a preview API in dagster 1.13; we rely on them so each
    # day's check status and history is its own (and alerts name the day). Silenced here only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return [_rule_check(a, [r for r in rules if r.asset == a], partitions) for a in assets]
