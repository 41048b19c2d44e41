"""`semsearch serve`: the HTTP API and the search and themes pages, on one FastAPI app."""

from semsearch.serve.app import create_app, is_loopback

__all__ = ["create_app", "is_loopback"]
