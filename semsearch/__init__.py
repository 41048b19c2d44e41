"""semsearch: semantic search and themes over free text, as a date-partitioned Dagster pipeline.

`semsearch.search`, `semsearch.themes` and `semsearch.theme_assignments` are the Python API; they
are imported lazily so that `semsearch.core` stays free of Dagster.
"""

_API = ("SearchHit", "ThemeSummary", "search", "theme_assignments", "themes")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from semsearch import api

        return getattr(api, name)
    raise AttributeError(f"module 'semsearch' has no attribute {name!r}")
