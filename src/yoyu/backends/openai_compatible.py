"""Any OpenAI-compatible server yoyu does not run itself: vLLM, LM Studio,
LocalAI, exo (``http://127.0.0.1:52415/v1``), or a remote API such as
Moonshot/Kimi, OpenAI or OpenRouter.

The server owns its models and their memory, so ``load``/``unload`` only
check that the model exists and ``pids`` is empty. The API key is never in
the configuration itself: ``api_key_env`` names the environment variable
that holds it, read once when the backend is made and sent only as a Bearer
header (``OpenAIHttpClient`` masks it should an upstream echo it in an
error).

``remote`` tells the gateway whether a request sent here leaves the machine;
unless configured, it is true for any host that is not loopback, so a
private request is never sent to a server on another machine by accident.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence

import httpx

from yoyu.backends.openai_http import HttpTimeouts, OpenAIHttpClient, is_loopback_url
from yoyu.backends.protocol import (
    BackendHealth,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingResponse,
    LoadedModel,
    LoopStream,
    ModelInfo,
    ModelRef,
)
from yoyu.errors import BackendError, BackendStartError, ConfigError


class OpenAICompatibleBackend:
    """One OpenAI-compatible base URL. Thread-safe; implements ``Backend``."""

    engine_kind = "openai-compatible"

    def __init__(
        self,
        *,
        base_url: str,
        name: str = "openai",
        api_key_env: str | None = None,
        models: Sequence[str] | None = None,
        remote: bool | None = None,
        connect_timeout_s: float | None = None,
        read_timeout_s: float | None = None,
        timeouts: HttpTimeouts | None = None,
        environ: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.remote = (not is_loopback_url(self.base_url)) if remote is None else remote
        self._models = tuple(models) if models is not None else None
        self._client = OpenAIHttpClient(
            self.base_url,
            label=f"{name} ({self.base_url})",
            api_key=_api_key(name, api_key_env, environ),
            timeouts=_timeouts(timeouts, connect_timeout_s, read_timeout_s),
            transport=transport,
        )

    # -- models ------------------------------------------------------------

    def health(self) -> BackendHealth:
        started = time.perf_counter()
        try:
            count = len(self._client.list_model_ids())
        except BackendError as exc:
            return BackendHealth(False, str(exc))
        return BackendHealth(True, f"{count} model(s) listed", time.perf_counter() - started)

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(model_id, self.name, loaded=True) for model_id in self._model_ids()]

    def loaded_models(self) -> list[LoadedModel]:
        """Everything the server lists is ready to answer; its memory is not ours to count.

        The server is asked even when a models list is configured: a configured
        name is ready only while its server is up (a BackendError says it is not).
        """
        listed = self._client.list_model_ids()
        ids = list(self._models) if self._models is not None else listed
        return [self._loaded(model_id) for model_id in ids]

    def load(self, model: ModelRef, settings: Mapping[str, object]) -> LoadedModel:
        """Nothing to start: only check that the server has the model."""
        known = self._model_ids()
        if model.id not in known:
            listed = ", ".join(known[:20]) or "none"
            raise BackendStartError(
                f"{self.name} at {self.base_url} has no model {model.id!r} (it lists: {listed}); "
                "check the model name or the backend's models list"
            )
        return self._loaded(model.id)

    def unload(self, model_id: str) -> None:
        """The server decides what stays in memory; nothing to do."""

    def pids(self) -> list[int]:
        return []

    def close(self) -> None:
        self._client.close()

    # -- requests ----------------------------------------------------------

    def chat(self, request: ChatRequest) -> ChatResponse:
        return self._client.chat(request)

    def stream_chat(self, request: ChatRequest) -> Iterator[ChatChunk]:
        return self._client.stream_chat(request)

    def complete(self, request: CompletionRequest) -> ChatResponse:
        return self._client.complete(request)

    def stream_complete(self, request: CompletionRequest) -> Iterator[ChatChunk]:
        return self._client.stream_complete(request)

    def embed(self, model: str, inputs: Sequence[str]) -> EmbeddingResponse:
        return self._client.embed(model, inputs)

    # -- on the gateway's event loop (a server on loopback) -------------------------

    def answers_on_loop(self, request: ChatRequest | CompletionRequest) -> bool:
        return self._client.answers_on_loop

    async def answer_on_loop(self, request: ChatRequest | CompletionRequest) -> ChatResponse:
        if isinstance(request, ChatRequest):
            return await self._client.chat_on_loop(request)
        return await self._client.complete_on_loop(request)

    def stream_on_loop(self, request: ChatRequest | CompletionRequest) -> LoopStream:
        if isinstance(request, ChatRequest):
            return self._client.stream_chat_on_loop(request)
        return self._client.stream_complete_on_loop(request)

    # -- internals ---------------------------------------------------------

    def _model_ids(self) -> list[str]:
        """The configured list when there is one (remote APIs list thousands)."""
        if self._models is not None:
            return list(self._models)
        return self._client.list_model_ids()

    def _loaded(self, model_id: str) -> LoadedModel:
        return LoadedModel(id=model_id, backend=self.name, base_url=self.base_url)


def _api_key(name: str, api_key_env: str | None, environ: Mapping[str, str] | None) -> str | None:
    """The key from the variable ``api_key_env`` names; its value is never in a message."""
    if not api_key_env:
        return None
    source = os.environ if environ is None else environ
    key = source.get(api_key_env, "").strip()
    if not key:
        raise ConfigError(
            f"backend {name!r}: api_key_env names {api_key_env}, which is not set; "
            f"export {api_key_env} or remove api_key_env"
        )
    return key


def _timeouts(
    timeouts: HttpTimeouts | None, connect_s: float | None, read_s: float | None
) -> HttpTimeouts:
    base = timeouts or HttpTimeouts()
    return HttpTimeouts(
        connect_s=base.connect_s if connect_s is None else connect_s,
        read_s=base.read_s if read_s is None else read_s,
        write_s=base.write_s,
        pool_s=base.pool_s,
    )
