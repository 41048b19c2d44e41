"""The FastAPI app: JSON endpoints under /api, HTML pages at / and /themes, one `Searcher`.

Handlers are plain `def`s, so uvicorn runs them on its thread pool; the `Searcher` (model, index,
tables) is the process's one, opened at startup. LanceDB is re-opened at its latest version on
every query, so a new materialization is seen without a restart, and each query reads one
committed version (a day's re-materialization is one merge commit: old day or new day).

Errors: a bad parameter is a 4xx JSON `{"error": {"parameter", "message"}}`; anything else is
logged here and answered as a bare 500, never a stack trace.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import re
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from semsearch.config import Settings
from semsearch.core.filters import FilterError
from semsearch.core.search_options import DEFAULT_MODE, MAX_K, MODES, UNITS
from semsearch.query import browse
from semsearch.query.searcher import Searcher, searcher_for
from semsearch.serve import pages

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Which parameter an error message is about, from its first word(s).
_PARAMETER = re.compile(r"^(?:--)?(k|mode|unit|since|until|day|offset|limit|doc_id|theme_id)\b")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK


class ParameterError(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def _parameter_of(message: str) -> str:
    if "query" in message.split(" ", 3)[:3]:
        return "q"
    if "metadata key" in message or "filter" in message or "=" in message.split(" ")[0]:
        return "where"
    match = _PARAMETER.match(message)
    return match.group(1) if match else "q"


def _error(status: int, parameter: str | None, message: str) -> JSONResponse:
    return JSONResponse({"error": {"parameter": parameter, "message": message}}, status)


def create_app(settings: Settings, searcher: Searcher | None = None) -> FastAPI:
    """The app over `settings`' home; `settings.api_token` set: every request must carry it."""

    def get_searcher() -> Searcher:
        return searcher or searcher_for(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _ = get_searcher().query_embedder  # load the model now, not on the first request
        log.info("semsearch serve: model loaded, home %s", settings.home)
        yield

    app = FastAPI(
        title="semsearch",
        description="Semantic search and themes over the indexed documents.",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if settings.api_token:
            header = request.headers.get("authorization", "")
            given = header[7:] if header.lower().startswith("bearer ") else ""
            given = given or request.cookies.get("semsearch_token", "")
            if not hmac.compare_digest(given.encode(), settings.api_token.encode()):
                return _error(401, "Authorization", "send the API token as Authorization: Bearer")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        name = str(first["loc"][-1]) if first.get("loc") else None
        return _error(422, name, f"{name}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(ParameterError)
    async def bad_parameter(request: Request, exc: ParameterError):
        return _error(400, exc.parameter, str(exc))

    @app.exception_handler(browse.NotFoundError)
    async def not_found(request: Request, exc: browse.NotFoundError):
        return _error(404, None, str(exc))

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):
        log.exception("semsearch serve: %s %s failed", request.method, request.url.path)
        return _error(500, None, "internal error (see the server log)")

    def run_search(q, k, mode, unit, since, until, where, exact):
        try:
            return get_searcher().search(
                q, k, since, until, where or None, mode=mode, unit=unit, exact=exact
            )
        except (FilterError, ValueError) as exc:
            raise ParameterError(_parameter_of(str(exc)), str(exc)) from None

    def checked(call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except browse.NotFoundError:
            raise
        except ValueError as exc:
            raise ParameterError(_parameter_of(str(exc)), str(exc)) from None

    @app.get("/api/search", summary="Search documents by meaning")
    def api_search(
        q: Annotated[str, Query(description="what you are looking for, in your own words")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description=f"results, 1..{MAX_K}")] = 10,
        mode: Annotated[str, Query(description=f"one of: {', '.join(MODES)}")] = DEFAULT_MODE,
        unit: Annotated[str, Query(description=f"one of: {', '.join(UNITS)}")] = "document",
        since: Annotated[date | None, Query(description="first day, YYYY-MM-DD")] = None,
        until: Annotated[date | None, Query(description="last day, YYYY-MM-DD")] = None,
        where: Annotated[list[str] | None, Query(description="metadata key=value, repeat")] = None,
        exact: Annotated[bool, Query(description="exact search, bypassing the ANN index")] = False,
    ):
        hits = run_search(q, k, mode, unit, since, until, where, exact)
        return {"query": q, "mode": mode, "unit": unit, "hits": [_jsonable(h) for h in hits]}

    @app.get("/api/themes", summary="The themes of a window (default: the latest)")
    def api_themes(day: str | None = Query(None, description="the window's last day")):
        searcher = get_searcher()
        window = checked(browse.resolve_window, searcher, day)
        return {
            "day": window.isoformat(),
            "windows": [d.isoformat() for d in browse.window_days(searcher)],
            "themes": [_jsonable(t) for t in searcher.themes(window)],
        }

    @app.get("/api/themes/{theme_id}", summary="One theme: members paged, volume per day")
    def api_theme(
        theme_id: str,
        day: str | None = Query(None, description="the window's last day"),
        offset: int = Query(0, ge=0),
        limit: int = Query(20, ge=1, le=browse.MAX_PAGE_SIZE),
    ):
        view = checked(browse.theme, get_searcher(), theme_id, day, offset, limit)
        return _jsonable(view)

    @app.get("/api/documents/{doc_id}", summary="One document: chunks, theme, versions")
    def api_document(doc_id: str):
        return _jsonable(checked(browse.document, get_searcher(), doc_id))

    @app.get("/api/health", summary="Index version, rows, last materialized day, model id")
    def api_health():
        return browse.health(get_searcher())

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def search_page(
        q: str = "",
        mode: str = DEFAULT_MODE,
        since: str = "",
        until: str = "",
        where: str = "",
        k: int = Query(10, ge=1, le=MAX_K),
    ):
        form = {"q": q, "mode": mode, "since": since, "until": until, "where": where, "k": k}
        hits, error = [], None
        if q.strip():
            try:
                hits = run_search(
                    q, k, mode, "document", since or None, until or None, where.split(), False
                )
            except ParameterError as exc:
                error = str(exc)
        return pages.search_page(form, MODES, hits, error)

    @app.get("/themes", response_class=HTMLResponse, include_in_schema=False)
    def themes_page(day: str | None = None):
        searcher = get_searcher()
        try:
            window = browse.resolve_window(searcher, day)
        except (browse.NotFoundError, ValueError) as exc:
            return HTMLResponse(pages.message_page("Themes", str(exc)), 404)
        themes = searcher.themes(window)
        return pages.themes_page(
            window,
            browse.window_days(searcher),
            themes,
            browse.volume(searcher, window, _first(themes, window)),
        )

    @app.get("/themes/{theme_id}", response_class=HTMLResponse, include_in_schema=False)
    def theme_page(theme_id: str, day: str | None = None, offset: int = 0):
        try:
            view = browse.theme(get_searcher(), theme_id, day, max(offset, 0), 50)
        except (browse.NotFoundError, ValueError) as exc:
            return HTMLResponse(pages.message_page("Theme", str(exc)), 404)
        return pages.theme_page(view)

    @app.get("/documents/{doc_id}", response_class=HTMLResponse, include_in_schema=False)
    def document_page(doc_id: str):
        try:
            view = browse.document(get_searcher(), doc_id)
        except browse.NotFoundError as exc:
            return HTMLResponse(pages.message_page("Document", str(exc)), 404)
        return pages.document_page(view)

    return app


def _first(themes, window: date) -> date:
    return min((t.window[0] for t in themes), default=window)


def _jsonable(value):
    """Dataclasses, dates and tuples as JSON-ready values."""
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value
