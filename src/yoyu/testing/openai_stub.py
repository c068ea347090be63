"""A minimal OpenAI-compatible server on 127.0.0.1 that records what it is asked.

It plays a remote API or a fast upstream in tests and benchmarks: fixed
answers (whole or streamed), a status to fail with, a stream that dies after
some chunks (the socket is shut, as when an engine is killed), a tool call
when the request offers tools (streamed as OpenAI does: the call's id and
name first, its arguments in pieces), an answer naming the tool's result when
the last message is one, and a log of every request so a test can assert
that *nothing* reached it, or exactly what did. Standard
library only; HTTP/1.1 keep-alive so a benchmark measures the gateway, not
connection setup.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

SHUTDOWN_POLL_S = 0.02  # how often serve_forever looks for shutdown(): a stop takes this long


@dataclass
class StubBehaviour:
    """What the stub answers; change fields between requests to change it."""

    models: tuple[str, ...] = ("stub-model",)
    reply: str = "Hello from the stub."
    stream_chunks: int = 4
    fail_status: int | None = None  # answer every generation with this status
    fail_every: int | None = None  # answer every Nth generation with a 500 (1-based)
    die_after_chunks: int | None = None  # shut the socket after this many chunks
    tool_call: tuple[str, str] = ("mul", '{"a": 6, "b": 7}')  # (name, arguments) when tools given
    # When set: every generation waits until this event is set (requests held in flight,
    # so a test can fill a model's slots and queue without timing anything).
    hold: threading.Event | None = None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)


class OpenAIStub:
    """``with OpenAIStub() as stub: ... stub.base_url ... stub.requests``."""

    def __init__(
        self, behaviour: StubBehaviour | None = None, *, record: bool = True, port: int = 0
    ) -> None:
        self.behaviour = behaviour or StubBehaviour()
        self.requests: list[RecordedRequest] = []
        self._record = record
        self._lock = threading.Lock()
        self._generations = 0
        self._server = _Server(("127.0.0.1", port), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SHUTDOWN_POLL_S,), daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def generation_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _remember(self, request: RecordedRequest) -> None:
        if self._record:
            with self._lock:
                self.requests.append(request)

    def _fails_next_generation(self) -> bool:
        """Count one generation; whether ``fail_every`` makes this one fail."""
        every = self.behaviour.fail_every
        with self._lock:
            self._generations += 1
            return every is not None and self._generations % every == 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early is normal here; no traceback on stderr."""


def _handler_for(stub: OpenAIStub) -> type[BaseHTTPRequestHandler]:
    class Handler(_StubHandler):
        owner = stub

    return Handler


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    owner: OpenAIStub

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self.owner._remember(RecordedRequest("GET", self.path, None, dict(self.headers)))
        if self.path.rstrip("/").endswith("/models"):
            models = [{"id": m, "object": "model"} for m in self.owner.behaviour.models]
            self._json(200, {"object": "list", "data": models})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.owner._remember(RecordedRequest("POST", self.path, body, dict(self.headers)))
        behaviour = self.owner.behaviour
        if behaviour.hold is not None:
            behaviour.hold.wait()
        failing = self.owner._fails_next_generation()
        if behaviour.fail_status is not None or failing:
            status = behaviour.fail_status or 500
            self._json(status, {"error": {"message": "stub told to fail"}})
            return
        kind = "chat" if self.path.endswith("/chat/completions") else "completion"
        if self.path.endswith("/embeddings"):
            self._embeddings(body)
        elif kind == "chat" and _wants_tool_call(body):
            self._tool_call(body, behaviour.tool_call)
        elif body.get("stream"):
            self._stream(body, kind)
        else:
            self._json(200, _whole(body, kind, _reply(body, behaviour.reply)))

    def _tool_call(self, body: dict[str, Any], call: tuple[str, str]) -> None:
        name, arguments = call
        if not body.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": name, "arguments": arguments}}
            ]}  # fmt: skip
            answer = _whole(body, "chat", "")
            answer["choices"][0] |= {"message": message, "finish_reason": "tool_calls"}
            self._json(200, answer)
            return
        self._start_stream()
        half = len(arguments) // 2
        deltas = [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": name, "arguments": ""}},
            {"index": 0, "function": {"arguments": arguments[:half]}},
            {"index": 0, "function": {"arguments": arguments[half:]}},
        ]  # fmt: skip
        for delta in deltas:
            event = _chunk(body, "chat", None, None)
            event["choices"][0]["delta"] = {"tool_calls": [delta]}
            self._event(event)
        self._event(_chunk(body, "chat", None, "tool_calls"))
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.5]}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        self._json(
            200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
        )

    def _stream(self, body: dict[str, Any], kind: str) -> None:
        behaviour = self.owner.behaviour
        self._start_stream()
        for index in range(behaviour.stream_chunks):
            if behaviour.die_after_chunks is not None and index >= behaviour.die_after_chunks:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self._event(_chunk(body, kind, f"tok{index} ", None))
        self._event(_chunk(body, kind, None, "stop"))
        usage = {"prompt_tokens": 3, "completion_tokens": behaviour.stream_chunks}
        self._event({"id": "stub", "choices": [], "usage": usage})
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")

    def _event(self, payload: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _wants_tool_call(body: dict[str, Any]) -> bool:
    """Tools offered and the last message is not a tool's result: call one."""
    messages = body.get("messages") or [{}]
    return bool(body.get("tools")) and messages[-1].get("role") != "tool"


def _reply(body: dict[str, Any], default: str) -> str:
    """After a tool's result, an answer that shows the result arrived whole."""
    messages = body.get("messages") or [{}]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    if last.get("role") == "tool":
        return f"The tool {last.get('tool_call_id')} said {last.get('content')}."
    return default


def _whole(body: dict[str, Any], kind: str, reply: str) -> dict[str, Any]:
    if kind == "chat":
        choice: dict[str, Any] = {"message": {"role": "assistant", "content": reply}}
    else:
        choice = {"text": reply, "logprobs": None}
    return {
        "id": "stub-1",
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": 0,
        "model": body.get("model"),
        "choices": [{"index": 0, "finish_reason": "stop", **choice}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


def _chunk(body: dict[str, Any], kind: str, text: str | None, finish: str | None) -> dict[str, Any]:
    if kind == "chat":
        choice: dict[str, Any] = {"delta": {"content": text} if text is not None else {}}
    else:
        choice = {"text": text or ""}
    return {
        "id": "stub-1",
        "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
        "created": 0,
        "model": body.get("model"),
        "choices": [{"index": 0, "finish_reason": finish, **choice}],
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m yoyu.testing.openai_stub --port N``: serve until killed (benchmarks)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=4)
    args = parser.parse_args(argv)
    stub = OpenAIStub(StubBehaviour(stream_chunks=args.chunks), record=False, port=args.port)
    stub._server.serve_forever()


if __name__ == "__main__":
    main()
