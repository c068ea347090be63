"""The OpenAI-compatible HTTP face of ``GatewayService``: a Starlette app on uvicorn.

``create_app(service)`` is the only way in. Every request first passes the
trust check (``gateway.trust``: host, origin, content type, key), then a
handler parses it (``gateway.wire``), calls the service and writes OpenAI
shapes. One request, one path::

    generate(kind): parse -> whole: service.answer_async, cancelled if the client leaves
                             stream: service.open_stream_async, relayed as SSE
    any YoyuError -> its own status, OpenAI error object (and Retry-After)

Generation runs on the event loop: an engine on loopback is called without a
worker thread, and the service hands only blocking work (a load, a remote or
Ollama backend) to its threads. Everything else a handler needs from the
service that may block runs in ``service.offload``.

Ollama's API (``/api/*``, ``gateway.ollama_routes``) shares this plumbing
(``edge()``): the body limit, the whole-answer cancellation, the stream relay
(in its writer's format) and the request metrics.

Logs carry the endpoint, the names of models and the status, never a prompt
or a key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from yoyu import __version__
from yoyu.backends.cancellation import Cancellation
from yoyu.errors import (
    BackendTimeoutError,
    BadRequestError,
    RequestCancelledError,
    ShuttingDownError,
    YoyuError,
)
from yoyu.gateway import wire
from yoyu.gateway.client_watch import ClientWatch, RelayResponse
from yoyu.gateway.ollama_routes import Edge, ollama_routes
from yoyu.gateway.service import Answer, GatewayService, Generation, OpenStream
from yoyu.gateway.trust import OPEN_PATHS, TrustMiddleware, TrustPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")
ROUTE_HEADER = "X-Yoyu-Route"
PRIVACY_HEADER = "x-yoyu-privacy"
CLIENT_GONE = "the client went away"


@dataclass(frozen=True)
class Extension:
    """Routes another package serves beside the OpenAI API (the MCP endpoint at /mcp),
    and the context its routes need for the server's life. The composition root
    (``yoyu serve``) builds it, so the gateway never imports the packages above it."""

    routes: Sequence[BaseRoute]
    lifespan: Callable[[], AbstractAsyncContextManager[None]] | None = None


def create_app(
    service: GatewayService,
    *,
    api_key: str | None = None,
    extensions: Sequence[Extension] = (),
    draining: threading.Event | None = None,
) -> ASGIApp:
    """The ASGI app for ``service``; with ``api_key`` every route but /health needs it.

    ``draining`` is set when the server begins to shut down: streams in flight
    then end with an error event instead of being cut. The dashboard
    (``gateway.dashboard``) is served at ``/`` behind the same door.
    """
    from yoyu.gateway import dashboard  # it imports this module (Extension)

    handlers = _Handlers(service, draining or threading.Event())
    extensions = [dashboard.dashboard_extension(service, api_key, handlers.draining), *extensions]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        service.start()
        try:
            async with AsyncExitStack() as stack:
                for extension in extensions:
                    if extension.lifespan is not None:
                        await stack.enter_async_context(extension.lifespan())
                yield
        finally:  # before uvicorn re-raises a SIGTERM: the engines stop with the gateway
            handlers.draining.set()
            await asyncio.get_running_loop().run_in_executor(None, service.close)

    routes = [
        Route("/v1/chat/completions", handlers.chat, methods=["POST"]),
        Route("/v1/completions", handlers.completions, methods=["POST"]),
        Route("/v1/embeddings", handlers.embeddings, methods=["POST"]),
        Route("/v1/models", handlers.models, methods=["GET"]),
        Route("/health", handlers.health, methods=["GET"]),
        Route("/yoyu/version", handlers.version, methods=["GET"]),
        Route("/yoyu/models", handlers.served_models, methods=["GET"]),
        Route("/yoyu/memory", handlers.memory, methods=["GET"]),
        Route("/yoyu/aliases/{alias}", handlers.switch_alias, methods=["PUT"]),
        Route("/metrics", handlers.metrics, methods=["GET"]),
        *ollama_routes(handlers.edge()),
        *(route for extension in extensions for route in extension.routes),
    ]
    server = service.config.server
    policy = TrustPolicy(
        bind_host=server.host,
        allowed_hosts=frozenset(host.lower() for host in server.allowed_hosts),
        cors_origins=frozenset(server.cors_origins),
        api_key=api_key,
        open_paths=OPEN_PATHS | dashboard.OPEN_PATHS,
        open_prefixes=dashboard.OPEN_PREFIXES,
        login_path=dashboard.LOGIN_PAGE,
    )
    return TrustMiddleware(Starlette(routes=routes, lifespan=lifespan), policy)


class _Handlers:
    def __init__(self, service: GatewayService, draining: threading.Event) -> None:
        self.service = service
        self.offload = service.offload
        self.draining = draining
        self.max_body = service.config.server.max_body_bytes
        self.timeout_s = service.config.server.request_timeout_s

    def edge(self) -> Edge:
        """The plumbing Ollama's API (``/api/*``) shares with this one."""
        return Edge(
            self.service, self.offload, self._body, self._whole, self._stream, self._count,
            _private, ROUTE_HEADER,
        )  # fmt: skip

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "completion")

    async def embeddings(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            payload = wire.parse_json(await self._body(request))
            model, inputs = wire.embedding_inputs(payload)
            private = _private(request)
            answer = await self.offload.run(
                lambda: self.service.embeddings(model, inputs, private=private)
            )
        except YoyuError as error:
            return self._error(request, error, started)
        tokens = answer.prompt_tokens or 0
        data = [
            {"object": "embedding", "index": i, "embedding": list(vector)}
            for i, vector in enumerate(answer.vectors)
        ]
        body = {
            "object": "list",
            "data": data,
            "model": answer.route,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        self._count(request, model, answer.route, 200, started)
        return JSONResponse(body, headers={ROUTE_HEADER: answer.route})

    async def models(self, request: Request) -> Response:
        data = [
            {"id": model_id, "object": "model", "created": 0, "owned_by": "yoyu"}
            for model_id in self.service.model_ids()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def served_models(self, request: Request) -> Response:
        """The service's own listing: sizes, plan verdicts, what is loaded (not OpenAI's shape)."""
        return await self._admin(request, lambda _: asdict(self.service.list_models()))

    async def memory(self, request: Request) -> Response:
        return await self._admin(request, lambda _: asdict(self.service.memory()))

    async def switch_alias(self, request: Request) -> Response:
        """``PUT /yoyu/aliases/NAME {"target": "model-or-route"}``: repoint an alias now."""

        def switch(payload: dict[str, Any]) -> dict[str, Any]:
            target = payload.get("target")
            if not isinstance(target, str):
                raise BadRequestError('send {"target": "a served model or route"}', param="target")
            return asdict(self.service.switch_alias(request.path_params["alias"], target))

        return await self._admin(request, switch)

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": __version__})

    async def _admin(
        self, request: Request, operation: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Response:
        started = time.perf_counter()
        try:
            body = await self._body(request)
            payload = wire.parse_json(body) if body else {}
            result = await self.offload.run(lambda: operation(payload))
        except YoyuError as error:  # not counted: the path holds client names
            return self._error(request, error, started, count=False)
        return JSONResponse(result)

    async def health(self, request: Request) -> Response:
        """Liveness, every backend's last check and every served model's state."""
        backends = [
            {"name": s.name, "ok": s.ok, "detail": s.detail, "cooling_down": s.cooling_down}
            for s in self.service.health(refresh=False)
        ]
        models = [asdict(state) for state in self.service.model_states()]
        return JSONResponse({"status": "ok", "backends": backends, "models": models})

    async def metrics(self, request: Request) -> Response:
        """Prometheus text, or OpenMetrics when the scraper's Accept header asks for it."""
        accept = request.headers.get("accept")
        body, content_type = await self.offload.run(lambda: self.service.metrics.render(accept))
        return Response(body, headers={"Content-Type": content_type})

    # -- generation ------------------------------------------------------------

    async def _generate(self, request: Request, kind: str) -> Response:
        started = time.perf_counter()
        model = "-"
        try:
            payload = wire.parse_json(await self._body(request))
            parsed: Generation = wire.PARSERS[kind](payload)
            model = parsed.model
            self.service.check_prompt(parsed)
            if wire.wants_stream(payload):
                usage = wire.wants_usage(payload)
                return await self._stream(
                    request, parsed, started, lambda s: wire.ChunkWriter(s.route, kind, usage)
                )
            answer = await self._whole(request, parsed)
        except YoyuError as error:
            return self._error(request, error, started, model)
        self._count(request, model, answer.route, 200, started)
        body = wire.response_body(answer.response, answer.route, kind)
        return JSONResponse(body, headers={ROUTE_HEADER: answer.route})

    async def _whole(self, request: Request, parsed: Generation) -> Answer:
        """The answer, or its cancellation the moment the client leaves or time runs out:
        the engine's connection is cut, so it stops generating for nobody."""
        cancel = Cancellation()
        request_with_cancel = dataclasses.replace(parsed, cancel=cancel)
        answering = self.service.answer_async(request_with_cancel, private=_private(request))
        return await self._while_connected(request, cancel, answering, parsed.model, self.timeout_s)

    async def _stream(
        self,
        request: Request,
        parsed: Generation,
        started: float,
        writer_for: Callable[[OpenStream], wire.StreamWriter],
        media_type: str = "text/event-stream",
        on_end: Callable[[OpenStream], None] | None = None,
    ) -> Response:
        """Open the stream (its errors still get a status), then relay what ``writer_for``
        makes of it (OpenAI's SSE, Ollama's NDJSON); ``on_end`` runs once it is closed
        (in a worker thread: it may unload a model)."""
        cancel = Cancellation()
        request_with_cancel = dataclasses.replace(parsed, cancel=cancel)
        opening = self.service.open_stream_async(request_with_cancel, private=_private(request))
        # Until the stream opens (in its model's line, or while the model loads); from then
        # on the response's own watch notices a client that left and cancels the relay.
        stream = await self._while_connected(request, cancel, opening, parsed.model)
        headers = {ROUTE_HEADER: stream.route, "Cache-Control": "no-cache"}
        body = self._relay(request, stream, writer_for(stream), started, on_end)
        return RelayResponse(body, media_type, headers)

    async def _relay(
        self,
        request: Request,
        stream: OpenStream,
        writer: wire.StreamWriter,
        started: float,
        on_end: Callable[[OpenStream], None] | None,
    ) -> AsyncIterator[bytes]:
        """The stream's chunks in the writer's format. Headers are gone once this runs: an
        error becomes an error event, and a client that leaves stops the engine."""
        status = 200
        held: list[bytes] = []  # written once nothing more is here already
        try:
            async for chunk in stream:
                if self.draining.is_set():
                    raise ShuttingDownError("the gateway is shutting down; ask again")
                if data := writer.chunk(chunk):
                    held.append(data)
                if held and not stream.ready():
                    yield b"".join(held)
                    held.clear()
            yield b"".join([*held, writer.done()])
        except YoyuError as error:
            status = error.http_status
            log.warning("stream from %s ended: %s", stream.route, error)
            yield b"".join([*held, writer.error(error)])
        except BaseException:  # the client left (cancelled, or the generator closed)
            status = 499
            raise
        finally:
            stream.close()  # frees the model even when the client left
            if on_end is not None:
                self.offload.run_detached(lambda: on_end(stream))
            self._count(request, stream.requested, stream.route, status, started)

    async def _while_connected(
        self,
        request: Request,
        cancel: Cancellation,
        pending: Awaitable[T],
        model: str,
        timeout_s: float | None = None,
    ) -> T:
        """``pending``'s result, or its cancellation the moment the client leaves or
        ``timeout_s`` runs out: a request still in its model's line leaves it, and one at
        the engine has its connection cut, so the engine stops generating for nobody."""
        with ClientWatch(request.receive, timeout_s) as watch:
            try:
                return await pending
            except asyncio.CancelledError:
                if not watch.fired:
                    raise
        reason = CLIENT_GONE if watch.left else f"no answer within {timeout_s:g} s"
        cancel.cancel(reason)  # what still runs in a worker thread
        if watch.left:
            raise RequestCancelledError(f"{model}: {reason}")
        raise BackendTimeoutError(f"{model}: {reason}; the request was cancelled")

    # -- plumbing ----------------------------------------------------------------

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise self._too_large()
        chunks, size = [], 0
        async for piece in request.stream():
            size += len(piece)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(piece)
        return b"".join(chunks)

    def _too_large(self) -> YoyuError:
        error = BadRequestError(
            f"the request body is over the {self.max_body}-byte limit; send less or raise "
            "[server] max_body_bytes"
        )
        error.http_status, error.error_code = 413, "request_too_large"
        return error

    def _error(
        self,
        request: Request,
        error: YoyuError,
        started: float,
        model: str = "-",
        *,
        count: bool = True,
    ) -> Response:
        status = error.http_status
        if status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.url.path, status, error)
        if count:
            self._count(request, model, "-", status, started)
        return JSONResponse(
            wire.error_body(error), status_code=status, headers=wire.error_headers(error)
        )

    def _count(self, request: Request, model: str, route: str, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        endpoint = request.url.path
        if not self.service.knows(model):  # clients pick names: keep label sets bounded
            model = "-"
        self.service.metrics.request(endpoint, model, route, status, elapsed)
        log.info(
            "%s model=%s route=%s status=%d %.1fms", endpoint, model, route, status, elapsed * 1e3
        )


def _private(request: Request) -> bool:
    return request.headers.get(PRIVACY_HEADER, "").strip().lower() == "local"
