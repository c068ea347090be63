"""Real web pages in headless Chromium against a real ``yoyu serve``.

A page from an origin the user configured (``[server] cors_origins``) calls the
API as a browser app would: the preflight passes and the answer is readable.
A page from any other origin is refused: its JSON call fails in the browser
(the preflight gets 403), and its "simple" text/plain POST, which a browser
sends without a preflight, is refused at the gateway's door and never reaches
the model (the stub behind it counts what arrives).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from yoyu.testing.browser import CHROMIUM, CHROMIUM_FLAGS
from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour
from yoyu.testing.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)"),
]

PAGE_SCRIPT = """
const gateway = %(gateway)s;
const body = JSON.stringify({model: "cloud", messages: [{role: "user", content: "hi"}]});
async function call(options) {
  try {
    const url = gateway + "/v1/chat/completions";
    const answer = await fetch(url, {method: "POST", body, ...options});
    if (answer.type === "opaque") return {opaque: true};
    return {status: answer.status, object: (await answer.json()).object};
  } catch (error) {
    return {failed: String(error)};
  }
}
(async () => {
  const json = await call({headers: {"Content-Type": "application/json"}});
  const simple = await call({mode: "no-cors", headers: {"Content-Type": "text/plain"}});
  await fetch("/report", {method: "POST", body: JSON.stringify({json, simple})});
})();
"""


class PageServer:
    """Serves one page on its own port (its own origin) and keeps what the page reports."""

    def __init__(self) -> None:
        self.gateway_url = ""  # set once the gateway runs: its config needs this origin first
        self.reports: list[dict[str, dict[str, object]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                script = PAGE_SCRIPT % {"gateway": json.dumps(owner.gateway_url)}
                self._answer(200, f"<!doctype html><script>{script}</script>".encode(), "text/html")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                owner.reports.append(json.loads(self.rfile.read(length)))
                self._answer(204, b"", "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def visit(page: PageServer, profile: Path) -> dict[str, dict[str, object]]:
    """Open the page in headless Chromium; what its script reported."""
    assert CHROMIUM is not None
    browser = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"{page.origin}/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: page.reports, 60, f"the page at {page.origin} to report")
    finally:
        browser.terminate()
        browser.wait(30)
    return page.reports[0]


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(StubBehaviour(models=("stub-model",))) as server:
        yield server


@pytest.fixture
def pages() -> Iterator[tuple[PageServer, PageServer]]:
    allowed, foreign = PageServer(), PageServer()
    yield allowed, foreign
    allowed.close()
    foreign.close()


def serve(tmp_path: Path, stub: OpenAIStub, origins: list[str]) -> GatewayProcess:
    config = tmp_path / "yoyu.toml"
    config.write_text(
        f"""
[server]
cors_origins = {json.dumps(origins)}

[backends.cloud]
kind = "openai"
base_url = "{stub.base_url}"
models = ["stub-model"]
remote = false

[served.cloud]
backend = "cloud"
upstream = "stub-model"
""",
        encoding="utf-8",
    )
    return GatewayProcess(["--config", str(config)], log_path=tmp_path / "serve.log")


def test_a_page_from_a_configured_origin_calls_the_api_and_others_are_refused(
    tmp_path: Path, stub: OpenAIStub, pages: tuple[PageServer, PageServer]
) -> None:
    allowed, foreign = pages
    with serve(tmp_path, stub, [allowed.origin]) as gateway:
        allowed.gateway_url = foreign.gateway_url = gateway.url
        from_allowed = visit(allowed, tmp_path / "profile-allowed")
        reached_after_allowed = len(stub.generation_requests())
        from_foreign = visit(foreign, tmp_path / "profile-foreign")
    # The configured origin: the preflight passed and the page read the answer.
    assert from_allowed["json"] == {"status": 200, "object": "chat.completion"}
    # Its text/plain POST was refused (415) before the model: one generation only.
    assert from_allowed["simple"] == {"opaque": True}
    assert reached_after_allowed == 1
    # Any other origin: the browser blocks the JSON call, and the gateway the simple one.
    assert "Failed to fetch" in str(from_foreign["json"]["failed"])
    assert from_foreign["simple"] == {"opaque": True}
    assert len(stub.generation_requests()) == reached_after_allowed
