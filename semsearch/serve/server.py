"""Run the app on uvicorn: loopback by default; any other address only with an API token."""

from __future__ import annotations

import logging
import os
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
    """Answer each query on one CPU thread: requests already run in parallel on uvicorn's pool
    (and in its worker processes), and thread pools inside a query oversubscribe the cores.
    Measured on 2 cores (benchmarks/bench_serve.py): torch on 2 threads took ~400 ms to embed a
    query that takes ~25 ms on 1; OpenBLAS's threads (numpy's matrix products) spin between
    calls, 25 ms of CPU a hybrid search instead of 15 ms."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)  # every BLAS and OpenMP pool loaded in this process, from now on


def serve(settings: Settings, say: Callable[[str], None]) -> int:
    """Serve until stopped; `say` tells the person who started it where (the CLI prints it).

    With `serve_workers` > 1, uvicorn runs that many worker processes on one socket, each
    building the app from the settings handed to it in `_SETTINGS_VARIABLE`.
    """
    check_bind(settings)
    say(
        f"semsearch serve: http://{settings.serve_host}:{settings.serve_port}/ "
        f"({settings.serve_workers} worker process{'es' if settings.serve_workers > 1 else ''})"
    )
    options = {
        "host": settings.serve_host,
        "port": settings.serve_port,
        "log_level": "warning",
        "access_log": False,  # requests may carry the token; errors are logged by the app
    }
    if settings.serve_workers == 1:
        uvicorn.run(worker_app(settings), **options)
    else:
        # The workers are new interpreters: they get the settings (the token included) through
        # their environment, as this process got them, never on a command line.
        os.environ[_SETTINGS_VARIABLE] = settings.to_json()
        uvicorn.run(
            f"{__name__}:app_from_environment",
            factory=True,
            workers=settings.serve_workers,
            **options,
        )
    return 0


# Not a setting (Settings.from_env ignores it): the parent's settings, for its workers only.
_SETTINGS_VARIABLE = "SEMSEARCH_SERVE_WORKER_SETTINGS"


def worker_app(settings: Settings):
    one_thread_per_query()
    return create_app(settings)


def app_from_environment():
    """A worker process's app (uvicorn imports it by name in each worker)."""
    return worker_app(Settings.from_json(os.environ[_SETTINGS_VARIABLE]))
