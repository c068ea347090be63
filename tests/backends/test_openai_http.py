"""The shared OpenAI-compatible client: SSE parsing on streams recorded from the
real llama-cpp-python server, and error translation against real sockets on
127.0.0.1 (a stdlib HTTP server that replays those recordings)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from yoyu.backends.openai_http import (
    HttpTimeouts,
    Kind,
    OpenAIHttpClient,
    SseEvent,
    chat_body,
    iter_sse_events,
    stream_chunks,
)
from yoyu.backends.ports import free_loopback_port
from yoyu.backends.protocol import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    summarize_stream,
)
from yoyu.errors import (
    BackendCrashedError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
)
from yoyu.testing.openai_stub import OpenAIStub

FIXTURES = Path(__file__).parent / "fixtures"
CHAT_STREAM = FIXTURES / "llama_cpp_python_chat_stream.sse"
COMPLETION_STREAM = FIXTURES / "llama_cpp_python_completion_stream.sse"
ERROR_STREAM = FIXTURES / "llama_cpp_python_chat_stream_error.sse"
HELLO = ChatRequest(model="tiny", messages=(ChatMessage("user", "Say hi"),), max_tokens=6)


def recorded_payloads(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a recording, read with plain string handling (not the parser)."""
    payloads = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            payloads.append(json.loads(line[len("data: ") :]))
    return payloads


def parse_file(path: Path, kind: Kind = "chat") -> list[ChatChunk]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return list(stream_chunks(iter_sse_events(lines), kind, time.perf_counter()))


def test_recorded_chat_stream_gives_one_chunk_per_token_and_a_closing_usage() -> None:
    payloads = recorded_payloads(CHAT_STREAM)
    deltas = [payload["choices"][0]["delta"] for payload in payloads]
    token_deltas = [delta for delta in deltas if "content" in delta]

    chunks = parse_file(CHAT_STREAM)

    token_chunks = [chunk for chunk in chunks if chunk.content is not None]
    assert len(token_chunks) == len(token_deltas) == 6
    assert "".join(c.content or "" for c in token_chunks) == "".join(
        d["content"] for d in token_deltas
    )
    closing = chunks[-1]
    assert closing.content is None
    assert closing.usage is not None
    assert closing.usage.completion_tokens == 6
    assert closing.usage.prompt_tokens is None  # llama-cpp-python does not report it in streams
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["length"]
    arrival_times = [chunk.t_s for chunk in chunks]
    assert arrival_times == sorted(arrival_times)


def test_recorded_completion_stream_does_not_count_the_closing_empty_text() -> None:
    payloads = recorded_payloads(COMPLETION_STREAM)
    generated = [p for p in payloads if p["choices"][0]["finish_reason"] is None]

    chunks = parse_file(COMPLETION_STREAM, kind="completion")

    summary = summarize_stream(chunks)
    assert summary.token_chunks == len(generated)
    assert summary.usage is not None
    assert summary.usage.completion_tokens == len(generated)
    assert summary.text == "".join(p["choices"][0]["text"] for p in generated)
    assert summary.finish_reason == "length"


def test_error_event_mid_stream_raises_after_the_tokens_before_it() -> None:
    lines = ERROR_STREAM.read_text(encoding="utf-8").splitlines()
    stream = stream_chunks(iter_sse_events(lines), "chat", time.perf_counter(), "tiny engine")
    received = []
    with pytest.raises(BackendRequestError) as raised:
        for chunk in stream:
            received.append(chunk)
    assert [c.content is not None for c in received] == [False, True, True, True]
    assert "llama_decode returned -3" in str(raised.value)
    assert "tiny engine" in str(raised.value)
    assert raised.value.status_code == 500


def test_a_stream_that_stops_before_done_is_a_crash() -> None:
    lines = CHAT_STREAM.read_text(encoding="utf-8").splitlines()
    cut = [line for line in lines if "[DONE]" not in line]
    with pytest.raises(BackendCrashedError, match=r"before \[DONE\]"):
        list(stream_chunks(iter_sse_events(cut), "chat", time.perf_counter()))


def test_sse_events_join_data_lines_and_skip_comments() -> None:
    lines = [": ping", "event: error", 'data: {"message":', 'data: "boom"}', "", "data: 1", ""]
    assert list(iter_sse_events(lines)) == [
        SseEvent("error", '{"message":\n"boom"}'),
        SseEvent("message", "1"),
    ]
    assert list(iter_sse_events(['error: {"message": "x"}'])) == [
        SseEvent("error", '{"message": "x"}')
    ]


def test_an_error_named_event_raises_even_without_an_error_key() -> None:
    events = [SseEvent("error", '{"message": "out of memory", "code": 503}')]
    with pytest.raises(BackendRequestError, match="out of memory") as raised:
        list(stream_chunks(events, "chat", time.perf_counter()))
    assert raised.value.status_code == 503


def test_chat_body_sends_only_what_was_set_and_passes_extra_through() -> None:
    request = ChatRequest(
        model="m",
        messages=(ChatMessage("user", "hi"),),
        temperature=0.0,
        stop=("\n",),
        extra={"logit_bias": {"2": -100}},
    )
    body = chat_body(request, stream=False)
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.0,
        "stop": ["\n"],
        "stream": False,
        "logit_bias": {"2": -100},
    }
    assert chat_body(request, stream=True)["stream_options"] == {"include_usage": True}


def test_summary_times_the_first_token_and_the_decode_after_it() -> None:
    chunks = [
        ChatChunk(None, 0.1),
        ChatChunk("a", 0.5),
        ChatChunk("b", 0.7),
        ChatChunk("c", 0.9),
        ChatChunk(None, 1.0, finish_reason="stop"),
    ]
    summary = summarize_stream(chunks)
    assert summary.first_token_s == 0.5
    assert summary.decode_tps == pytest.approx(2 / 0.4)
    assert summary.text == "abc"
    assert summary.finish_reason == "stop"


# -- against real sockets --------------------------------------------------

Handler = Callable[[BaseHTTPRequestHandler], None]
StartServer = Callable[[Handler], str]


@pytest.fixture
def loopback_server() -> Iterator[StartServer]:
    """Serve one handler function on 127.0.0.1; returns the base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(handle: Handler) -> str:
        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                handle(self)

            def do_GET(self) -> None:
                self.do_POST()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def replay(path: Path) -> Handler:
    body = path.read_bytes()

    def handle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return handle


def answer_json(status: int, payload: object) -> Handler:
    body = json.dumps(payload).encode()

    def handle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return handle


def test_client_streams_a_replayed_recording_over_http(loopback_server: StartServer) -> None:
    client = OpenAIHttpClient(loopback_server(replay(CHAT_STREAM)))
    try:
        chunks = list(client.stream_chat(HELLO))
    finally:
        client.close()
    assert summarize_stream(chunks).token_chunks == 6


def test_client_raises_the_error_event_of_a_replayed_stream(loopback_server: StartServer) -> None:
    client = OpenAIHttpClient(loopback_server(replay(ERROR_STREAM)))
    try:
        with pytest.raises(BackendRequestError, match="llama_decode returned -3"):
            list(client.stream_chat(HELLO))
    finally:
        client.close()


def test_error_status_carries_the_engines_message(loopback_server: StartServer) -> None:
    # The body llama-cpp-python's server sent for a prompt longer than n_ctx (recorded).
    error = {
        "error": {
            "message": "This model's maximum context length is 256 tokens, however you "
            "requested 606 tokens (602 in your prompt; 4 for the completion).",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    client = OpenAIHttpClient(loopback_server(answer_json(400, error)), label="tiny engine")
    try:
        with pytest.raises(BackendRequestError) as raised:
            client.complete(CompletionRequest(model="tiny", prompt="x"))
    finally:
        client.close()
    assert raised.value.status_code == 400
    assert "maximum context length is 256 tokens" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_nobody_listening_is_unavailable() -> None:
    port = free_loopback_port()
    client = OpenAIHttpClient(f"http://127.0.0.1:{port}/v1", label="gone engine")
    try:
        with pytest.raises(BackendUnavailableError, match=f"gone engine at .*:{port}"):
            client.chat(HELLO)
    finally:
        client.close()


def test_a_silent_engine_times_out(loopback_server: StartServer) -> None:
    test_over = threading.Event()

    def never_answer(handler: BaseHTTPRequestHandler) -> None:
        test_over.wait(timeout=30)

    url = loopback_server(never_answer)
    client = OpenAIHttpClient(url, timeouts=HttpTimeouts(read_s=0.2))
    try:
        with pytest.raises(BackendTimeoutError, match="timed out"):
            client.chat(HELLO)
    finally:
        test_over.set()
        client.close()


def test_a_connection_cut_mid_body_is_a_crash(loopback_server: StartServer) -> None:
    recording = CHAT_STREAM.read_bytes()

    def cut_short(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Content-Length", str(len(recording)))
        handler.end_headers()
        handler.wfile.write(recording[: len(recording) // 2])
        handler.close_connection = True

    client = OpenAIHttpClient(loopback_server(cut_short))
    try:
        with pytest.raises(BackendCrashedError):
            list(client.stream_chat(HELLO))
    finally:
        client.close()


def test_a_finished_stream_gives_its_connection_back_for_the_next_request() -> None:
    """Reading to the body's end after [DONE] lets the pool reuse the connection;
    leaving it unread costs a new TCP connection (and a reset) per stream."""
    accepted: list[object] = []
    with OpenAIStub() as stub:
        server = stub._server
        serve_one = server.process_request

        def count_connection(request: Any, client_address: Any) -> None:
            accepted.append(client_address)
            serve_one(request, client_address)

        server.process_request = count_connection  # type: ignore[method-assign]
        client = OpenAIHttpClient(stub.base_url)
        try:
            texts = [summarize_stream(list(client.stream_chat(HELLO))).text for _ in range(3)]
        finally:
            client.close()
    assert texts == ["tok0 tok1 tok2 tok3 "] * 3
    assert len(accepted) == 1


def test_a_client_closed_under_its_caller_is_an_unavailable_backend() -> None:
    """Measured in a chaos run: a health probe met an engine unloaded meanwhile and
    httpx's RuntimeError killed the gateway's maintenance thread."""
    with OpenAIStub() as stub:
        client = OpenAIHttpClient(stub.base_url, label="engine (tiny)")
        client.close()
        body = chat_body(ChatRequest("m", (ChatMessage("user", "hi"),)), stream=True)
        calls: list[Callable[[], object]] = [
            lambda: client.get_json("/models"),
            lambda: client.post_json("/chat/completions", body),
            lambda: list(client.stream_lines("/chat/completions", body)),
        ]
        for call in calls:
            with pytest.raises(BackendUnavailableError, match="unloaded meanwhile"):
                call()
