"""Stage 5: themes over a trailing window of days, as two assets: `themes` and `theme_assignments`.

A day's run keeps the themes fitted earlier and assigns only the window's new documents, unless
`refit_reason` says the model must be fitted again (no model, changed settings, the refit
schedule, or drift). A day with no documents of its own has no window: nothing is written for it
and `semsearch.themes()` keeps showing the latest day with data.
"""

from collections.abc import Iterator
from datetime import date

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    multi_asset,
)

from semsearch.core.numba_cache import use_persistent_cache
from semsearch.core.quality import assignments_kept
from semsearch.core.themes import (
    OUTLIERS,
    ThemeParams,
    ThemeResult,
    ThemeWindow,
    assign_themes,
    fit_themes,
    refit_reason,
)
from semsearch.defs.labels import ThemeLabelResource
from semsearch.defs.metadata import StageTimer, histogram, markdown_table, table_rows
from semsearch.defs.partitions import (
    DAILY_BACKFILL,
    PIPELINE,
    THEMES_POOL,
    partition_day,
    table_metadata,
)
from semsearch.defs.resources import PipelineResource, StorageResource
from semsearch.storage import themes_store
from semsearch.storage.delta import DeltaTables
from semsearch.storage.schemas import (
    ASSIGNMENTS_TABLE,
    CHUNKS_TABLE,
    EMBEDDINGS_TABLE,
    THEME_ASSIGNMENTS,
    THEMES,
    THEMES_TABLE,
)

PREVIOUS_DAY = TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)

# Bump when the stage writes something else for the same input, so the UI marks it stale.
CODE_VERSION = "2"
KINDS = {"deltalake", "scikitlearn"}


def build_themes(partitions: DailyPartitionsDefinition, theme_window_days: int) -> AssetsDefinition:
    theme_window = ThemeWindow(theme_window_days, partitions.start.date())
    window = TimeWindowPartitionMapping(start_offset=-theme_window.days_before())
    inputs = [
        AssetDep(EMBEDDINGS_TABLE, partition_mapping=window),
        AssetDep(CHUNKS_TABLE, partition_mapping=window),
    ]
    span = f"the {theme_window_days or 'all'}-day window ending at the partition"
    specs = [
        AssetSpec(
            THEMES_TABLE,
            # Theme ids carry over from the previous day's window, so a day's themes depend on
            # the day before's: a backfill then runs them in day order, one at a time.
            deps=[*inputs, AssetDep(THEMES_TABLE, partition_mapping=PREVIOUS_DAY)],
            description=f"Themes of the documents of {span}: fitted on a bounded sample (UMAP + "
            "HDBSCAN, similar themes merged), c-TF-IDF keywords, representative texts, an "
            "optional chat label and an outlier bucket; ids carry over from window to window.",
            partitions_def=partitions,
            group_name=PIPELINE,
            code_version=CODE_VERSION,
            kinds=KINDS,
        ),
        AssetSpec(
            ASSIGNMENTS_TABLE,
            deps=[*inputs, THEMES_TABLE],
            description=f"Each chunk of {span} with its document's theme and membership.",
            partitions_def=partitions,
            group_name=PIPELINE,
            code_version=CODE_VERSION,
            kinds={"deltalake"},
        ),
    ]

    @multi_asset(
        name="themes_stage",
        specs=specs,
        partitions_def=partitions,
        backfill_policy=DAILY_BACKFILL,
        pool=THEMES_POOL,
        description="Fits or updates the window's themes and writes both tables.",
    )
    def themes_stage(
        context: AssetExecutionContext,
        storage: StorageResource,
        pipeline: PipelineResource,
        theme_labels: ThemeLabelResource,
    ) -> Iterator[MaterializeResult]:
        day, tables, timer = partition_day(context), storage.tables(), StageTimer()
        first = theme_window.first_day(day)
        params = pipeline.theme_params()
        source = themes_store.WindowSource(
            tables, first, day, params.batch_documents, params.keyword_chars
        )
        if not themes_store.WindowSource(
            tables, day, day, params.batch_documents, 0
        ).documents_total():
            themes_store.clear_window(tables, day)
            yield from _no_window(day)
            return
        use_persistent_cache(pipeline.numba_cache_path())
        with timer.step("read"):
            previous = themes_store.previous_window(tables, day)
        with timer.step("cluster"):
            result, fitted_on, reason = _update(tables, source, params, previous, first, day)
        if result.fitted:
            with timer.step("label"):
                labelled = theme_labels.label(result.themes, tables, context.log)
        else:
            labelled = 0
        info = themes_store.WindowInfo(
            day=day,
            first=first,
            fitted_on=fitted_on,
            fingerprint=params.fingerprint(),
            fit_noise_share=float(
                result.stats.get("fit_noise_share", previous.fit_noise_share if previous else 0)
            ),
        )
        with timer.step("write"):
            assignments = themes_store.assignment_rows(tables, info, result)
            themes_store.write_window(tables, info, result, assignments)
        stability = _stability(previous, result)
        evaluation = _label_metadata(tables, day, pipeline.eval_label_field)
        yield MaterializeResult(
            asset_key=AssetKey(THEMES_TABLE),
            metadata={
                "window": f"{first} .. {day}",
                "documents": result.assignments.height,
                "chunks_clustered": assignments.height,
                "themes": sum(t.theme_id != OUTLIERS for t in result.themes),
                "refit": result.fitted,
                "refit_reason": reason or "kept the model: assigned the new documents",
                "fitted_on": str(fitted_on),
                **{k: v for k, v in result.stats.items()},
                "labels_requested": labelled,
                **table_rows(len(result.themes), THEMES),
                "theme_sizes": histogram(
                    pl.Series("size", [t.size for t in result.themes if t.theme_id != OUTLIERS]),
                    10,
                    "documents per theme",
                ),
                "noise_share": round(result.noise_share, 3),
                **stability,
                **evaluation,
                "theme_table": _theme_table(result),
                **table_metadata(storage, THEMES_TABLE),
                **timer.metadata(),
            },
        )
        yield MaterializeResult(
            asset_key=AssetKey(ASSIGNMENTS_TABLE),
            metadata={
                "window": f"{first} .. {day}",
                "documents": result.assignments.height,
                **table_rows(assignments.height, THEME_ASSIGNMENTS),
                **table_metadata(storage, ASSIGNMENTS_TABLE),
                **timer.metadata(),  # one step wrote both tables
            },
        )

    return themes_stage


def _update(
    tables: DeltaTables,
    source: themes_store.WindowSource,
    params: ThemeParams,
    previous: themes_store.PreviousWindow | None,
    first: date,
    day: date,
) -> tuple[ThemeResult, date, str | None]:
    """Keep the model and assign the new documents, or refit; returns (result, fitted_on, why)."""
    fitted = [t for t in previous.themes if t.theme_id != OUTLIERS] if previous else []
    if previous is None or not fitted:
        reason = "no earlier model" if previous is None else "the earlier window had no themes"
        return fit_themes(source, params, previous.documents() if previous else None), day, reason
    if len(fitted[0].centroid) != source.dimension():
        return fit_themes(source, params), day, "the embedding model changed"
    known, new = themes_store.unchanged_documents(tables, first, day, previous)
    only_new = themes_store.WindowSource(
        tables, first, day, params.batch_documents, params.keyword_chars, only=new
    )
    kept = assign_themes(previous.themes, known, only_new.documents() if new else [])
    reason = refit_reason(
        has_model=True,
        same_params=previous.fingerprint == params.fingerprint(),
        days_since_fit=(day - previous.fitted_on).days,
        refit_days=params.refit_days,
        new_documents=int(kept.stats["new_documents"]),
        new_outliers=int(kept.stats["new_outliers"]),
        fit_noise_share=previous.fit_noise_share,
        drift_margin=params.drift_margin,
        min_cluster_size=params.clustering().cluster_size(kept.assignments.height),
    )
    if reason is None:
        return kept, previous.fitted_on, None
    return fit_themes(source, params, previous.documents(), previous.themes), day, reason


def _stability(previous: themes_store.PreviousWindow | None, result: ThemeResult) -> dict:
    """Documents of both windows that kept their theme, and the ARI between the two windows."""
    if previous is None:
        return {}
    outcome = assignments_kept(result.assignments, previous.documents(), 0.0, key="doc_id")
    return {
        "stability_kept": outcome.metadata.get("share_kept", 1.0),
        "stability_ari": outcome.metadata.get("ari", 1.0),
        "stability_compared": outcome.metadata.get("compared", 0),
    }


EVAL_FLOATS = ("v_measure", "homogeneity", "completeness", "ari")


def _label_metadata(tables: DeltaTables, day: date, label_field: str) -> dict:
    """eval_* metadata when a labelled evaluation set is configured: plotted per day in the UI."""
    if not label_field:
        return {}
    try:
        scores = themes_store.window_label_scores(tables, day, label_field)
    except ValueError as exc:
        return {"eval_label_field": label_field, "eval_error": str(exc)}
    return {
        "eval_label_field": label_field,
        **{f"eval_{name}": MetadataValue.float(getattr(scores, name)) for name in EVAL_FLOATS},
        "eval_labelled_documents": MetadataValue.int(scores.labelled),
    }


def _theme_table(result: ThemeResult):
    rows = [
        (
            t.theme_id,
            t.title,
            t.size,
            ", ".join(t.keywords),
            t.representatives[0] if t.representatives else "",
        )
        for t in result.themes
    ]
    return markdown_table(rows, ["theme", "label", "documents", "keywords", "example"])


def _no_window(day: date) -> Iterator[MaterializeResult]:
    note = (
        f"no documents on {day}: no theme window (the latest window stays the latest day with data)"
    )
    for key, schema in ((THEMES_TABLE, THEMES), (ASSIGNMENTS_TABLE, THEME_ASSIGNMENTS)):
        yield MaterializeResult(
            asset_key=AssetKey(key),
            metadata={"window": note, **table_rows(0, schema), "seconds_total": 0.0},
        )
