"""The OpenAI-compatible HTTP face of ``GatewayService``: a Starlette app on uvicorn.

``create_app(service)`` is the only way in. Handlers parse, call the service
in a worker thread (backends block), and write OpenAI shapes; every
YoyuError becomes an OpenAI error object with a status that says whose fault
it was. Logs carry the endpoint, the names of models and the status, never a
prompt or a key.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from yoyu.errors import (
    AdmissionError,
    BackendError,
    BackendRequestError,
    BackendTimeoutError,
    BadRequestError,
    ConfigError,
    NoRouteError,
    PrivacyError,
    UnknownModelError,
    YoyuError,
)
from yoyu.gateway import wire
from yoyu.gateway.relay import Emit, Offload
from yoyu.gateway.service import Answer, GatewayService, StreamAnswer

log = logging.getLogger(__name__)
ROUTE_HEADER = "X-Yoyu-Route"
PRIVACY_HEADER = "x-yoyu-privacy"
WORKER_THREADS = 256  # blocking backend calls in flight (Starlette's default pool: 40)


class _HttpError(Exception):
    def __init__(self, status: int, message: str, error_type: str, code: str | None) -> None:
        super().__init__(message)
        self.status, self.error_type, self.code = status, error_type, code


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
) -> Starlette:
    """The ASGI app for ``service``; with ``api_key`` every route but /health needs it."""
    handlers = _Handlers(service, api_key)

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
            await asyncio.get_running_loop().run_in_executor(None, service.close)
            handlers.offload.close()

    routes = [
        Route("/v1/chat/completions", handlers.chat, methods=["POST"]),
        Route("/v1/completions", handlers.completions, methods=["POST"]),
        Route("/v1/embeddings", handlers.embeddings, methods=["POST"]),
        Route("/v1/models", handlers.models, methods=["GET"]),
        Route("/health", handlers.health, methods=["GET"]),
        Route("/yoyu/models", handlers.served_models, methods=["GET"]),
        Route("/yoyu/memory", handlers.memory, methods=["GET"]),
        Route("/yoyu/aliases/{alias}", handlers.switch_alias, methods=["PUT"]),
        Route("/metrics", handlers.metrics, methods=["GET"]),
        *(route for extension in extensions for route in extension.routes),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


class _Handlers:
    def __init__(self, service: GatewayService, api_key: str | None) -> None:
        self.service = service
        self.offload = Offload(WORKER_THREADS)
        self.api_key = api_key
        self.max_body = service.config.server.max_body_bytes

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, "chat", wire.chat_request)

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "completion", wire.completion_request)

    async def embeddings(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            self._authorize(request)
            payload = wire.parse_json(await self._body(request))
            model, inputs = wire.embedding_inputs(payload)
            private = _private(request)
            answer = await self.offload.run(
                lambda: self.service.embeddings(model, inputs, private=private)
            )
        except (YoyuError, _HttpError) as error:
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
        try:
            self._authorize(request)
        except _HttpError as error:
            return self._error(request, error, time.perf_counter())
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
                raise BadRequestError('send {"target": "a served model or route"}')
            return asdict(self.service.switch_alias(request.path_params["alias"], target))

        return await self._admin(request, switch)

    async def _admin(
        self, request: Request, operation: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Response:
        started = time.perf_counter()
        try:
            self._authorize(request)
            body = await self._body(request)
            payload = wire.parse_json(body) if body else {}
            result = await self.offload.run(lambda: operation(payload))
        except (YoyuError, _HttpError) as error:  # not counted: the path holds client names
            return self._error(request, error, started, count=False)
        return JSONResponse(result)

    async def health(self, request: Request) -> Response:
        backends = [
            {"name": s.name, "ok": s.ok, "detail": s.detail, "cooling_down": s.cooling_down}
            for s in self.service.health(refresh=False)
        ]
        return JSONResponse({"status": "ok", "backends": backends})

    async def metrics(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except _HttpError as error:
            return self._error(request, error, time.perf_counter())
        text = await self.offload.run(lambda: self.service.metrics.render(self.service.gauges()))
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # -- generation ------------------------------------------------------------

    async def _generate(self, request: Request, kind: str, parse: Callable[[Any], Any]) -> Response:
        started = time.perf_counter()
        model = "-"
        try:
            self._authorize(request)
            payload = wire.parse_json(await self._body(request))
            parsed = parse(payload)
            model = parsed.model
            private = _private(request)
            if wire.wants_stream(payload):
                return await self._stream_response(request, kind, parsed, payload, started)
            answer = await self.offload.run(lambda: self._answer(kind, parsed, private))
        except (YoyuError, _HttpError) as error:
            return self._error(request, error, started, model)
        self._count(request, model, answer.route, 200, started)
        body = wire.response_body(answer.response, answer.route, kind)
        return JSONResponse(body, headers={ROUTE_HEADER: answer.route})

    def _answer(self, kind: str, parsed: Any, private: bool) -> Answer:
        if kind == "chat":
            return self.service.chat(parsed, private=private)
        return self.service.complete(parsed, private=private)

    def _open_stream(self, kind: str, parsed: Any, private: bool) -> StreamAnswer:
        if kind == "chat":
            return self.service.stream_chat(parsed, private=private)
        return self.service.stream_complete(parsed, private=private)

    async def _stream_response(
        self,
        request: Request,
        kind: str,
        parsed: Any,
        payload: dict[str, Any],
        started: float,
    ) -> Response:
        """Open the stream (its errors still get a status), then relay it as SSE."""
        include_usage = wire.wants_usage(payload)
        private = _private(request)

        def pump(stream: StreamAnswer, emit: Emit, cancelled: threading.Event) -> None:
            writer = wire.ChunkWriter(stream.route, kind, include_usage)
            status = 200
            try:
                for chunk in stream:
                    if cancelled.is_set():  # the client left: stop reading the engine
                        status = 499
                        break
                    data = writer.chunk(chunk)
                    if data:
                        emit(data)
                else:
                    emit(writer.done())
            except YoyuError as error:
                # Headers are gone: the client gets an error event, and the stream ends.
                status, error_type, code = _classify(error)
                log.warning("stream from %s broke: %s", stream.route, error)
                emit(wire.sse_error(str(error), error_type, code))
            finally:
                stream.close()  # frees the model even when the client left
                self._count(request, stream.requested, stream.route, status, started)

        stream, body = await self.offload.stream(
            lambda: self._open_stream(kind, parsed, private), pump
        )
        headers = {ROUTE_HEADER: stream.route, "Cache-Control": "no-cache"}
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    # -- plumbing ----------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        given = token.strip().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, self.api_key.encode()):
            raise _HttpError(
                401, "missing or wrong API key", "authentication_error", "invalid_api_key"
            )

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

    def _too_large(self) -> _HttpError:
        return _HttpError(
            413,
            f"the request body is over the {self.max_body}-byte limit; send less or raise "
            "[server] max_body_bytes",
            "invalid_request_error",
            "request_too_large",
        )

    def _error(
        self,
        request: Request,
        error: Exception,
        started: float,
        model: str = "-",
        *,
        count: bool = True,
    ) -> Response:
        if isinstance(error, _HttpError):
            status, error_type, code = error.status, error.error_type, error.code
        else:
            status, error_type, code = _classify(error)
        if status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.url.path, status, error)
        if count:
            self._count(request, model, "-", status, started)
        return JSONResponse(wire.error_body(str(error), error_type, code), status_code=status)

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


def _classify(error: Exception) -> tuple[int, str, str | None]:
    """HTTP status, OpenAI error type and code for a YoyuError: whose fault, in a word."""
    if isinstance(error, BadRequestError):
        return 400, "invalid_request_error", "invalid_request"
    if isinstance(error, UnknownModelError):
        return 404, "invalid_request_error", "model_not_found"
    if isinstance(error, PrivacyError):
        return 403, "privacy_error", "no_local_route"
    if isinstance(error, AdmissionError):
        return 503, "insufficient_memory", "model_does_not_fit"
    if isinstance(error, NoRouteError):
        return 502, "upstream_error", "no_route"
    status = error.status_code if isinstance(error, BackendRequestError) else None
    if status in (401, 403):  # the upstream refused *our* key: the operator's to fix
        return 502, "upstream_error", "upstream_auth"
    if status is not None and 400 <= status < 500:
        return status, "invalid_request_error", "upstream_refused"
    if isinstance(error, BackendTimeoutError):
        return 504, "upstream_error", "upstream_timeout"
    if isinstance(error, BackendError):
        return 502, "upstream_error", "upstream_failed"
    if isinstance(error, ConfigError):
        return 400, "invalid_request_error", "bad_config"
    return 500, "server_error", None
