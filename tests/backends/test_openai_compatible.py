"""OpenAICompatibleBackend against a real OpenAI-compatible server on loopback (the
managed llama.cpp engine, llama-cpp-python's server on a tiny GGUF), and a small
stub for what a healthy engine never does: 401s, 500s, dying mid-stream."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from yoyu.backends.llamacpp_server import LlamaCppServerBackend, python_engine
from yoyu.backends.openai_compatible import OpenAICompatibleBackend
from yoyu.backends.openai_http import HttpTimeouts, is_loopback_url
from yoyu.backends.ports import free_loopback_port
from yoyu.backends.protocol import (
    Backend,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    LoadedModel,
    ModelRef,
    summarize_stream,
)
from yoyu.backends.registry import create_backend
from yoyu.errors import (
    BackendCrashedError,
    BackendRequestError,
    BackendStartError,
    BackendUnavailableError,
    ConfigError,
)
from yoyu.testing.tiny_models import write_tiny_model

SETTINGS = {"n_ctx": 256, "n_batch": 64, "n_ubatch": 64, "seed": 1}
TIMEOUTS = HttpTimeouts(connect_s=2, read_s=20)
HELLO = (ChatMessage("user", "Say hello."),)
GOOD_KEY = "sk-test-GOOD-0123456789"
BAD_KEY = "sk-test-WRONG-9876543210"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedModel]:
    tiny = write_tiny_model(tmp_path_factory.mktemp("models") / "tiny.gguf")
    managed = LlamaCppServerBackend(
        engine=python_engine(), log_dir=tmp_path_factory.mktemp("logs"), timeouts=TIMEOUTS
    )
    yield managed.load(ModelRef("tiny", tiny.path), SETTINGS)
    managed.close()


@pytest.fixture
def backend(engine: LoadedModel) -> Iterator[OpenAICompatibleBackend]:
    made = OpenAICompatibleBackend(name="vllm-ish", base_url=engine.base_url, timeouts=TIMEOUTS)
    yield made
    made.close()


# -- a real server -----------------------------------------------------------


@pytest.mark.slow
def test_made_by_the_registry_as_a_local_backend(engine: LoadedModel) -> None:
    made = create_backend("openai", name="local", base_url=engine.base_url)
    try:
        checked: Backend = made
        assert isinstance(checked, Backend) and isinstance(made, OpenAICompatibleBackend)
        assert made.name == "local" and made.remote is False
        assert made.health().ok
        assert [(m.id, m.loaded) for m in made.list_models()] == [("tiny", True)]
        assert made.pids() == []
    finally:
        made.close()


def test_load_only_checks_the_model_exists(backend: OpenAICompatibleBackend) -> None:
    loaded = backend.load(ModelRef("tiny"), {})
    assert loaded.id == "tiny" and loaded.backend == "vllm-ish" and loaded.pid is None
    assert [m.id for m in backend.loaded_models()] == ["tiny"]
    backend.unload("tiny")
    assert backend.health().ok  # unload left the server alone
    with pytest.raises(BackendStartError, match=r"no model 'gpt-9'.*lists: tiny"):
        backend.load(ModelRef("gpt-9"), {})


def test_chat_stream_and_completion_through_the_real_server(
    backend: OpenAICompatibleBackend,
) -> None:
    request = ChatRequest("tiny", HELLO, max_tokens=4, temperature=0.0, seed=3)
    whole = backend.chat(request)
    streamed = summarize_stream(list(backend.stream_chat(request)))
    completion = backend.complete(CompletionRequest("tiny", "Once", max_tokens=3))

    assert whole.usage.completion_tokens <= 4 and whole.usage.prompt_tokens
    assert streamed.text == whole.text  # greedy: same answer either way
    assert streamed.usage is not None
    assert completion.usage.completion_tokens <= 3
    assert summarize_stream(list(backend.stream_complete(CompletionRequest("tiny", "x", 2)))).usage


def test_a_configured_model_list_is_used_without_asking(engine: LoadedModel) -> None:
    made = OpenAICompatibleBackend(base_url=engine.base_url, models=["kimi-k2", "tiny"])
    try:
        assert [m.id for m in made.list_models()] == ["kimi-k2", "tiny"]
        assert [m.id for m in made.loaded_models()] == ["kimi-k2", "tiny"]
    finally:
        made.close()


def test_configured_models_are_not_loaded_while_their_server_is_down() -> None:
    port = free_loopback_port()
    made = OpenAICompatibleBackend(base_url=f"http://127.0.0.1:{port}/v1", models=["exo-model"])
    try:
        assert [m.id for m in made.list_models()] == ["exo-model"]  # what it serves
        with pytest.raises(BackendUnavailableError, match="refused the connection"):
            made.loaded_models()  # but nothing is ready while nobody listens
    finally:
        made.close()


def test_remote_is_derived_from_the_host_unless_given() -> None:
    assert is_loopback_url("http://127.0.0.1:8080/v1") and is_loopback_url("http://[::1]:1/v1")
    assert is_loopback_url("http://localhost:52415/v1")
    assert not is_loopback_url("https://api.moonshot.ai/v1")
    made = [
        OpenAICompatibleBackend(base_url="https://openrouter.ai/api/v1"),
        OpenAICompatibleBackend(base_url="http://192.168.1.20:8000/v1"),
        OpenAICompatibleBackend(base_url="http://192.168.1.20:8000/v1", remote=False),
    ]
    assert [backend.remote for backend in made] == [True, True, False]
    for backend in made:
        backend.close()


# -- a stub for failures ---------------------------------------------------------


class StubState:
    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []


class StubHandler(BaseHTTPRequestHandler):
    """OpenAI's wire format: 401 for a wrong key (echoing it, as some servers do),
    500 for the model "boom", and for "dies" a stream cut after one event."""

    protocol_version = "HTTP/1.1"
    state: StubState

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._record()
        self._json(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})

    def do_POST(self) -> None:
        self._record()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        given = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if given != GOOD_KEY:
            message = f"Incorrect API key provided: {given}"
            self._json(401, {"error": {"message": message, "type": "invalid_request_error"}})
        elif body["model"] == "boom":
            self._json(500, {"error": {"message": "upstream exploded", "type": "server_error"}})
        elif body["model"] == "dies":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            event = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
        else:
            choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}}
            usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
            self._json(
                200, {"id": "c1", "model": body["model"], "choices": [choice], "usage": usage}
            )

    def _record(self) -> None:
        self.state.headers.append(dict(self.headers.items()))

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def stub() -> Iterator[tuple[str, StubState]]:
    state = StubState()
    handler = type("Handler", (StubHandler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    server.shutdown()
    server.server_close()


def stub_backend(base_url: str, key: str) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        name="kimi", base_url=base_url, api_key_env="KIMI_KEY", environ={"KIMI_KEY": key}
    )


def test_the_key_goes_out_as_a_bearer_header(stub: tuple[str, StubState]) -> None:
    base_url, state = stub
    backend = stub_backend(base_url, GOOD_KEY)
    try:
        assert backend.chat(ChatRequest("stub-model", HELLO)).text == "ok"
    finally:
        backend.close()
    assert state.headers[-1]["Authorization"] == f"Bearer {GOOD_KEY}"


def test_a_wrong_key_is_a_401_whose_message_never_shows_the_key(
    stub: tuple[str, StubState], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = stub_backend(stub[0], BAD_KEY)
    try:
        with pytest.raises(BackendRequestError) as raised:
            backend.chat(ChatRequest("stub-model", HELLO))
        with pytest.raises(BackendRequestError) as raised_in_stream:
            list(backend.stream_chat(ChatRequest("stub-model", HELLO)))
    finally:
        backend.close()
    for error in (raised.value, raised_in_stream.value):
        assert error.status_code == 401
        assert "Incorrect API key provided: ***" in str(error)
        assert BAD_KEY not in str(error) and BAD_KEY not in repr(error.args)
    assert stub[1].headers[-1]["Authorization"] == f"Bearer {BAD_KEY}"  # it was sent...
    assert BAD_KEY not in caplog.text  # ...and never logged
    assert caplog.records  # the requests were logged (httpx, or the loopback path at DEBUG)


def test_a_missing_key_variable_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="api_key_env names MOONSHOT_API_KEY, which is not set"):
        OpenAICompatibleBackend(
            name="kimi",
            base_url="https://api.moonshot.ai/v1",
            api_key_env="MOONSHOT_API_KEY",
            environ={},
        )


def test_server_errors_keep_status_and_message(stub: tuple[str, StubState]) -> None:
    backend = stub_backend(stub[0], GOOD_KEY)
    try:
        with pytest.raises(BackendRequestError, match="upstream exploded") as raised:
            backend.chat(ChatRequest("boom", HELLO))
    finally:
        backend.close()
    assert raised.value.status_code == 500


def test_a_server_dying_mid_stream_raises_after_what_it_sent(stub: tuple[str, StubState]) -> None:
    backend = stub_backend(stub[0], GOOD_KEY)
    received: list[str | None] = []
    try:
        with pytest.raises(BackendCrashedError):
            for chunk in backend.stream_chat(ChatRequest("dies", HELLO)):
                received.append(chunk.content)
    finally:
        backend.close()
    assert received == ["Hi"]


def test_connection_refused_is_unavailable_and_unhealthy() -> None:
    backend = OpenAICompatibleBackend(
        base_url="http://127.0.0.1:9/v1", timeouts=HttpTimeouts(connect_s=1)
    )
    try:
        with pytest.raises(BackendUnavailableError, match="refused"):
            backend.chat(ChatRequest("x", HELLO))
        assert not backend.health().ok
    finally:
        backend.close()
