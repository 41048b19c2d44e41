"""semsearch: semantic search and themes over free text, as a date-partitioned Dagster pipeline.

`semsearch.search`, `semsearch.themes` and `semsearch.theme_assignments` are the Python API (the
query path lives in `semsearch.query`, which needs no Dagster); they are imported lazily so that
importing `semsearch.core` stays light.
"""

_API = ("SearchHit", "ThemeSummary", "search", "theme_assignments", "themes")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from semsearch import query

        return getattr(query, name)
    raise AttributeError(f"module 'semsearch' has no attribute {name!r}")
