"""Ollama's API (``/api/*``) on the gateway: the same service, another wire format.

Clients that speak only Ollama (Open WebUI, Continue, the ``ollama`` Python and
JS libraries, scripts calling ``/api/generate``) reach the served models with
the same routing, fallback, privacy (``X-Yoyu-Privacy: local``) and memory
admission as ``/v1``: each handler translates (``ollama_wire``), calls the
service, and writes Ollama's shape. The requests pass the same door
(``trust``) and share the OpenAI app's plumbing (``Edge``): the body limit,
cancellation when a client leaves or time runs out, the request metrics::

    /api/chat, /api/generate  parse -> nothing to generate: load, or unload (keep_alive 0)
                                      -> whole: edge.whole; stream: NDJSON lines
                              then keep_alive sets the model's TTL (0: unload now)
    /api/embed(dings)         service.embeddings (an empty input loads the model)
    /api/tags, /ps, /show     service.list_models / memory, the file's header
    any YoyuError             its status, {"error": "..."}; mid-stream, one such line

``keep_alive`` maps onto the residency's TTL of the served model that
answered: a duration sets it, a negative value keeps the model loaded (no
TTL), 0 unloads it once idle, and a request without one goes back to the
configured TTL (as each Ollama request without one goes back to the default).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from yoyu import __version__
from yoyu.errors import PrivacyError, UnknownModelError, YoyuError
from yoyu.gateway import ollama_listing as listing
from yoyu.gateway import ollama_wire as ollama
from yoyu.gateway import wire
from yoyu.gateway.relay import Offload
from yoyu.gateway.service import Answer, GatewayService, Generation, ModelEntry, OpenStream
from yoyu.models.resolve import read_model_path
from yoyu.models.spec import ModelSpec

log = logging.getLogger(__name__)
UNLOAD_NOW_S = 1e-3  # keep_alive 0: a TTL the reaper's next tick finds run out
NDJSON = "application/x-ndjson"
WriterFor = Callable[[OpenStream], wire.StreamWriter]
_BODIES = {"chat": ollama.chat_body, "generate": ollama.generate_body}
_PARSERS = {"chat": ollama.chat_call, "generate": ollama.generate_call}


@dataclass(frozen=True)
class Edge:
    """What the OpenAI app lends these routes, so both APIs share one set of plumbing."""

    service: GatewayService
    offload: Offload
    read_body: Callable[[Request], Awaitable[bytes]]
    whole: Callable[[Request, Generation], Awaitable[Answer]]
    stream: Callable[
        [Request, Generation, float, WriterFor, str, Callable[[OpenStream], None] | None],
        Awaitable[Response],
    ]  # relays a stream in the writer's format
    count: Callable[[Request, str, str, int, float], None]
    private: Callable[[Request], bool]
    route_header: str


def ollama_routes(edge: Edge) -> list[Route]:
    api = _OllamaApi(edge)
    return [
        Route("/api/version", api.version, methods=["GET"]),
        Route("/api/tags", api.tags, methods=["GET"]),
        Route("/api/ps", api.ps, methods=["GET"]),
        Route("/api/show", api.show, methods=["POST"]),
        Route("/api/chat", api.chat, methods=["POST"]),
        Route("/api/generate", api.generate, methods=["POST"]),
        Route("/api/embed", api.embed, methods=["POST"]),
        Route("/api/embeddings", api.embeddings, methods=["POST"]),
    ]


class _OllamaApi:
    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.service = edge.service
        self._specs: dict[tuple[str, int], ModelSpec | None] = {}
        self._specs_lock = threading.Lock()

    # -- listing -------------------------------------------------------------

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": ollama.OLLAMA_VERSION, "yoyu": __version__})

    async def tags(self, request: Request) -> Response:
        def listed() -> dict[str, Any]:
            entries = self._entries()
            return {"models": [listing.tag_entry(self._facts(n, entries)) for n in entries]}

        return await self._listing(request, listed)

    async def ps(self, request: Request) -> Response:
        def running() -> dict[str, Any]:
            entries, now_ns = self._entries(), time.time_ns()
            models = [
                listing.process_entry(self._facts(resident.id, entries), resident, now_ns)
                for resident in self.service.memory().loaded
                if resident.id in entries
            ]
            return {"models": models}

        return await self._listing(request, running)

    async def show(self, request: Request) -> Response:
        started = time.perf_counter()
        name = "-"
        try:
            body = wire.parse_json(await self.edge.read_body(request))
            name = self._name(ollama.requested_model(body))
            shown = await self.edge.offload.run(lambda: self._show(name))
        except YoyuError as error:
            return self._error(request, error, started, name)
        return JSONResponse(shown)

    def _show(self, name: str) -> dict[str, Any]:
        entries = self._entries()
        if name not in entries:
            raise UnknownModelError(f"model {name!r} is not served here")
        return listing.show_body(self._facts(name, entries), entries[name].targets)

    async def _listing(self, request: Request, build: Callable[[], dict[str, Any]]) -> Response:
        started = time.perf_counter()
        try:
            body = await self.edge.offload.run(build)
        except YoyuError as error:
            return self._error(request, error, started)
        return JSONResponse(body)

    def _entries(self) -> dict[str, ModelEntry]:
        return {entry.id: entry for entry in self.service.list_models().served}

    def _facts(self, name: str, entries: Mapping[str, ModelEntry]) -> listing.ModelFacts:
        entry = listing.served_entry(name, entries)
        served = self.service.config.served.get(entry.id)
        path = served.path if served is not None else None
        spec, modified_ns = self._spec(path)
        settings = served.settings if served is not None else None
        where = str(path) if path else None
        return listing.ModelFacts(name, entry, spec, where, modified_ns, settings)

    def _spec(self, path: Path | None) -> tuple[ModelSpec | None, int]:
        """The file's header, read once per version of the file (its mtime)."""
        if path is None or not path.exists():
            return None, 0
        modified_ns = path.stat().st_mtime_ns
        key = (str(path), modified_ns)
        with self._specs_lock:
            if key in self._specs:
                return self._specs[key], modified_ns
        try:
            spec: ModelSpec | None = read_model_path(path)
        except YoyuError as error:
            log.warning("cannot read %s for the Ollama API: %s", path, error)
            spec = None
        with self._specs_lock:
            self._specs[key] = spec
        return spec, modified_ns

    # -- generation ------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, "chat")

    async def generate(self, request: Request) -> Response:
        return await self._generate(request, "generate")

    async def _generate(self, request: Request, kind: str) -> Response:
        started, started_ns = time.perf_counter(), time.perf_counter_ns()
        model = "-"
        try:
            body = wire.parse_json(await self.edge.read_body(request))
            model = body["model"] if isinstance(body.get("model"), str) else model
            call = _PARSERS[kind](body)
            if call.request is None:
                return await self._load_or_unload(request, kind, call, started)
            parsed = dataclasses.replace(call.request, model=self._name(call.model))
            self.service.check_prompt(parsed)
            if call.stream:
                return await self.edge.stream(
                    request, parsed, started,
                    lambda _: ollama.NdjsonWriter(kind, call.model, started_ns),
                    NDJSON, lambda stream: self._keep_alive([stream.route], call.keep_alive_s),
                )  # fmt: skip
            answer = await self.edge.whole(request, parsed)
        except YoyuError as error:
            return self._error(request, error, started, model)
        await self.edge.offload.run(lambda: self._keep_alive([answer.route], call.keep_alive_s))
        durations = ollama.response_durations(answer.response, time.perf_counter_ns() - started_ns)
        self.edge.count(request, parsed.model, answer.route, 200, started)
        body = _BODIES[kind](answer.response, call.model, durations)
        return JSONResponse(body, headers={self.edge.route_header: answer.route})

    async def _load_or_unload(
        self, request: Request, kind: str, call: ollama.OllamaCall, started: float
    ) -> Response:
        """Nothing to generate: load the model (Ollama's warm-up), or unload it with
        ``keep_alive`` 0; either way through the routing, privacy and admission."""
        name, private = self._name(call.model), self.edge.private(request)
        if call.keep_alive_s == 0:
            route = "-"
            await self.edge.offload.run(lambda: self._unload(name, private))
        else:
            route = await self.edge.offload.run(lambda: self.service.preload(name, private=private))
            await self.edge.offload.run(lambda: self._keep_alive([route], call.keep_alive_s))
        self.edge.count(request, name, route, 200, started)
        reason = "unload" if call.keep_alive_s == 0 else "load"
        return JSONResponse(ollama.action_body(kind, call.model, reason))

    def _unload(self, name: str, private: bool) -> None:
        try:
            members = self.service.served_ids(name, private=private)
        except PrivacyError:
            return  # every member is remote: nothing of it is loaded here
        self._keep_alive(members, 0.0)

    def _keep_alive(self, served_ids: list[str], seconds: float | None) -> None:
        """The TTL a client asked for: a duration, forever (no TTL), 0 (unload once idle,
        now if it already is), or back to the configured one (None)."""
        residency = self.service.residency
        for served_id in served_ids:
            if seconds == 0:
                residency.set_ttl(served_id, UNLOAD_NOW_S)
                residency.unload(served_id)
            elif seconds is not None and seconds == ollama.FOREVER_S:
                residency.set_ttl(served_id, 0.0)
            else:
                residency.set_ttl(served_id, seconds)

    # -- embeddings ----------------------------------------------------------

    async def embed(self, request: Request) -> Response:
        return await self._embed(request, legacy=False)

    async def embeddings(self, request: Request) -> Response:
        return await self._embed(request, legacy=True)

    async def _embed(self, request: Request, *, legacy: bool) -> Response:
        """``/api/embed`` (vectors scaled to length 1, ``dimensions`` cuts them) and the
        legacy ``/api/embeddings`` (one prompt, the vector as the engine gave it)."""
        started, started_ns = time.perf_counter(), time.perf_counter_ns()
        model = "-"
        try:
            body = wire.parse_json(await self.edge.read_body(request))
            if legacy:
                body = {**body, "input": body.get("prompt") or ""}
            model, inputs = ollama.embed_inputs(body)
            dimensions = ollama.embed_dimensions(body)
            keep_alive = ollama.keep_alive_seconds(body.get("keep_alive"))
            route, vectors, tokens = await self._vectors(request, self._name(model), inputs)
            await self.edge.offload.run(lambda: self._keep_alive([route], keep_alive))
        except YoyuError as error:
            return self._error(request, error, started, model)
        self.edge.count(request, self._name(model), route, 200, started)
        if legacy:
            return JSONResponse({"embedding": list(vectors[0]) if vectors else []})
        answer: dict[str, Any] = {
            "model": model,
            "embeddings": [ollama.normalized(vector, dimensions) for vector in vectors],
            "total_duration": time.perf_counter_ns() - started_ns,
        }
        if tokens:
            answer["prompt_eval_count"] = tokens
        return JSONResponse(answer, headers={self.edge.route_header: route})

    async def _vectors(
        self, request: Request, name: str, inputs: list[str]
    ) -> tuple[str, tuple[tuple[float, ...], ...], int]:
        private = self.edge.private(request)
        if not inputs:  # Ollama loads the model for an empty input
            route = await self.edge.offload.run(lambda: self.service.preload(name, private=private))
            return route, (), 0
        answer = await self.edge.offload.run(
            lambda: self.service.embeddings(name, inputs, private=private)
        )
        return answer.route, answer.vectors, answer.prompt_tokens or 0

    # -- plumbing --------------------------------------------------------------

    def _name(self, name: str) -> str:
        return ollama.model_name(name, self.service.knows)

    def _error(
        self, request: Request, error: YoyuError, started: float, model: str = "-"
    ) -> Response:
        status = error.http_status
        if status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.url.path, status, error)
        self.edge.count(request, model, "-", status, started)
        body = ollama.error_body(error, model if model != "-" else None)
        return JSONResponse(body, status_code=status, headers=wire.error_headers(error))
