"""The dashboard's HTTP face: the page, its static files, its JSON, its event stream.

Every route sits behind the gateway's trust middleware like ``/v1`` (only the
login page, the login call and the static files, which hold no data, are open).
Blocking reads (the run store, the audit log, plans, loads) run in worker threads.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from yoyu.errors import GatewayError, RunStoreError, YoyuError
from yoyu.gateway import wire
from yoyu.gateway.dashboard import guardlog, models, runs, session
from yoyu.gateway.dashboard.feed import Feed
from yoyu.gateway.dashboard.fitting import fit_report, parse_fit_query
from yoyu.gateway.dashboard.language import localized_page, page_language
from yoyu.gateway.dashboard.planning import Planner, plan_choices
from yoyu.gateway.service import GatewayService
from yoyu.monitor.store import RunStore

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/dashboard/static/"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
# No script, style or connection but the gateway's own: a value shown on a page can
# never load or run anything (uPlot sets inline styles, hence 'unsafe-inline' for style).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MAX_BODY_BYTES = 64 * 1024
Json = dict[str, Any]


class RunNotFoundError(GatewayError):
    """A run id the store does not hold."""

    http_status = 404
    error_code = "run_not_found"


class DashboardRoutes:
    """Handlers over one service, its feed and a planner."""

    def __init__(
        self,
        service: GatewayService,
        feed: Feed,
        planner: Planner,
        api_key: str | None,
        draining: threading.Event,
    ) -> None:
        self.service, self.feed, self.planner = service, feed, planner
        self.api_key = api_key
        self.draining = draining

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route(session.LOGIN_PAGE, self.login_page, methods=["GET"]),
            Route(session.LOGIN_PATH, self.login, methods=["POST"]),
            Route(session.LOGOUT_PATH, session.logout, methods=["POST"]),
            Route(STATIC_PREFIX + "{name}", self.static, methods=["GET"]),
            Route("/dashboard/events", self.events, methods=["GET"]),
            Route("/dashboard/api/models", self.models, methods=["GET"]),
            Route("/dashboard/api/models/{model}/load", self.load, methods=["POST"]),
            Route("/dashboard/api/models/{model}/unload", self.unload, methods=["POST"]),
            Route("/dashboard/api/runs", self.runs, methods=["GET"]),
            Route("/dashboard/api/runs/{run_id:int}", self.run, methods=["GET"]),
            Route("/dashboard/api/plan/choices", self.plan_choices, methods=["GET"]),
            Route("/dashboard/api/plan", self.plan, methods=["POST"]),
            Route("/dashboard/api/fit", self.fit, methods=["GET"]),
            Route("/dashboard/api/guard", self.guard, methods=["GET"]),
        ]

    # -- pages -------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return _page("index.html", request)

    async def login_page(self, request: Request) -> Response:
        return _page("login.html", request)

    async def static(self, request: Request) -> Response:
        return _file(request.path_params["name"])

    async def login(self, request: Request) -> Response:
        return await session.login(request, self.api_key)

    # -- live ----------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """Server-sent events: everything kept at first, then what is new each second."""
        return StreamingResponse(
            self._stream(), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )  # fmt: skip

    async def _stream(self) -> AsyncIterator[str]:
        update = self.feed.since(0, 0)
        yield _event("hello", {**asdict(update), "key_required": self.api_key is not None})
        seq, guard_seq = update.seq, update.guard_seq
        while not self.draining.is_set():
            await asyncio.sleep(self.feed.tick_s)
            update = self.feed.since(seq, guard_seq)
            if update.seq == seq and update.guard_seq == guard_seq:
                yield ": idle\n\n"  # a comment: finds a client that left
                continue
            seq, guard_seq = update.seq, update.guard_seq
            yield _event("tick", asdict(update))

    # -- JSON ----------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        return await _json(lambda: models.models_view(self.service))

    async def load(self, request: Request) -> Response:
        model_id = request.path_params["model"]

        def load() -> Json:
            with self.feed.loading():  # the timeline reads fast while memory moves
                return models.load_model(self.service, model_id)

        return await _json(load)

    async def unload(self, request: Request) -> Response:
        model_id = request.path_params["model"]
        return await _json(lambda: models.unload_model(self.service, model_id))

    async def runs(self, request: Request) -> Response:
        def listed() -> Json:
            with RunStore() as store:
                return {"runs": [runs.run_summary(record) for record in store.list_runs(200)]}

        return await _json(listed)

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]

        def detail() -> Json:
            with RunStore() as store:
                try:
                    record = store.get_run(run_id)
                except RunStoreError as error:
                    raise RunNotFoundError(str(error)) from None
                return runs.run_detail(record, store.samples(run_id), store.events(run_id))

        return await _json(detail)

    async def plan_choices(self, request: Request) -> Response:
        return await _json(lambda: plan_choices(self.service))

    async def plan(self, request: Request) -> Response:
        try:
            payload = wire.parse_json(await session.read_body(request, MAX_BODY_BYTES))
        except YoyuError as error:
            return _error(error)
        return await _json(lambda: self.planner.plan(payload))

    async def fit(self, request: Request) -> Response:
        """What fits here: ``yoyu fit --json`` for the query string's filters."""
        items = request.query_params.multi_items()
        return await _json(lambda: fit_report(parse_fit_query(items), self.planner.here))

    async def guard(self, request: Request) -> Response:
        return await _json(lambda: {"records": guardlog.guard_log()})


def _file(name: str) -> Response:
    """A file of the package's ``static`` folder, by its bare name (no path gets out)."""
    path = STATIC_DIR / name
    kind = _TYPES.get(path.suffix)
    if "/" in name or name.startswith(".") or kind is None or not path.is_file():
        return JSONResponse({"error": {"message": f"no file {name!r}"}}, status_code=404)
    return Response(path.read_bytes(), media_type=kind, headers=PAGE_HEADERS)


def _page(name: str, request: Request) -> Response:
    """A page in the reader's language (``language.page_language``), read as the file is."""
    language = page_language(request.headers.get("accept-language"), os.environ)
    page = localized_page((STATIC_DIR / name).read_text(encoding="utf-8"), language)
    headers = {**PAGE_HEADERS, "Content-Language": language, "Vary": "Accept-Language"}
    return Response(page, media_type=_TYPES[".html"], headers=headers)


async def _json(operation: Callable[[], Json]) -> Response:
    try:
        return JSONResponse(await run_in_threadpool(operation))
    except YoyuError as error:
        return _error(error)


def _error(error: YoyuError) -> Response:
    return JSONResponse(
        wire.error_body(error), status_code=error.http_status, headers=wire.error_headers(error)
    )


def _event(name: str, data: Json) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
