"""Run the app on uvicorn: loopback by default; any other address only with an API token."""

from __future__ import annotations

import logging
from collections.abc import Callable

import uvicorn

from semsearch.config import Settings
from semsearch.errors import ConfigurationError
from semsearch.serve.app import create_app, is_loopback

log = logging.getLogger(__name__)


def check_bind(settings: Settings) -> None:
    if not is_loopback(settings.serve_host) and not settings.api_token:
        raise ConfigurationError(
            f"serving on {settings.serve_host} (not 127.0.0.1) requires SEMSEARCH_API_TOKEN; "
            "set it, or bind 127.0.0.1"
        )


def one_thread_per_query() -> None:
    """Embed each query on one CPU thread: requests already run in parallel on uvicorn's pool,
    and torch's own threads on top oversubscribe the cores (measured on 2 busy cores: one query
    embedded in ~25 ms on 1 thread, ~400 ms on 2; see benchmarks/bench_serve.py)."""
    import torch

    torch.set_num_threads(1)


def serve(settings: Settings, say: Callable[[str], None]) -> int:
    """Serve until stopped; `say` tells the person who started it where (the CLI prints it)."""
    check_bind(settings)
    one_thread_per_query()
    app = create_app(settings)
    say(f"semsearch serve: http://{settings.serve_host}:{settings.serve_port}/")
    uvicorn.run(
        app,
        host=settings.serve_host,
        port=settings.serve_port,
        log_level="warning",
        access_log=False,  # requests may carry the token; errors are logged by the app
    )
    return 0
