"""The pipeline's stages, one module each: the asset, its metadata and its wiring.

landing files → bronze_documents (+ rejected_records, landed_files) → raw_documents → chunks →
embeddings (+ embedding_dead_letter, embedding_cache) → vector_index
                                     embeddings → themes, theme_assignments → theme_trends
"""

from collections.abc import Sequence

from dagster import AssetsDefinition, DailyPartitionsDefinition

from semsearch.defs.stages.chunks import build_chunks
from semsearch.defs.stages.documents import build_raw_documents
from semsearch.defs.stages.embeddings import build_embeddings
from semsearch.defs.stages.index import build_vector_index
from semsearch.defs.stages.ingest import ingest_landing_files
from semsearch.defs.stages.themes import build_themes
from semsearch.defs.stages.trends import build_theme_trends

__all__ = ["build_pipeline_assets", "ingest_landing_files"]


def build_pipeline_assets(
    partitions: DailyPartitionsDefinition,
    theme_window_days: int,
    sources: Sequence[AssetsDefinition] = (),
    engine: str = "local",
) -> list[AssetsDefinition]:
    """The date-partitioned assets, in pipeline order; the theme window shapes the themes' deps.

    `engine` ("local" or "spark") runs raw_documents, chunks and embeddings in this process or
    as Spark jobs; the assets, ids and tables are the same either way.
    """
    return [
        build_raw_documents(partitions, sources, engine),
        build_chunks(partitions, engine),
        build_embeddings(partitions, engine),
        build_vector_index(partitions),
        build_themes(partitions, theme_window_days),
        build_theme_trends(partitions),
    ]
