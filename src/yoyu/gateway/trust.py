"""One door in front of every route: the Host, the Origin, the content type, the key.

Loopback is not a trust boundary for browsers. Any web page may send a
"simple" cross-origin POST (``Content-Type: text/plain``: no preflight) to
127.0.0.1 and make a model generate, and a DNS-rebinding page reaches the
gateway under its own host name (the class of Ollama's CVE-2024-28224). So
every request (``/v1``, ``/yoyu``, ``/mcp``, ``/metrics``, and any route added
later) passes one pure check (``check_request``) before it reaches a route:

- the ``Host`` must be a name this gateway answers to: localhost, 127.0.0.1,
  [::1], the address it is bound to, and ``[server] allowed_hosts``; else
  421. (Bound to every interface, where an API key is required anyway, any
  host is accepted unless ``allowed_hosts`` lists them.)
- an ``Origin`` (browsers send one on cross-origin requests) must be the
  gateway's own or in ``[server] cors_origins``; else 403. Allowed origins
  get CORS headers, and their preflights are answered here.
- a body must say it is JSON (``application/json``); else 415: a form or
  text body is exactly how a page slips a POST past the preflight.
- with an API key, every path but ``/health`` (and the dashboard's login page and
  its static files, which hold no data) needs ``Authorization: Bearer KEY``, or
  the dashboard's session cookie: an HMAC of the key that ``POST /dashboard/login``
  sets (HttpOnly, SameSite=Strict). A browser cannot put a header on a page it
  navigates to, so the cookie is how the dashboard's pages and event stream pass;
  it counts only on requests from the gateway's own pages (no foreign Origin).
  A browser refused for want of a key while it navigates is sent to the login page.

Nothing refused here reaches a handler, so nothing it would have done happens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from yoyu.errors import YoyuError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
OPEN_PATHS = frozenset({"/health"})
OLLAMA_PREFIX = "/api/"  # Ollama's API answers errors in its own shape
SESSION_COOKIE = "yoyu_session"
_SESSION_SALT = b"yoyu dashboard session v1"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CORS_HEADERS = "Authorization, Content-Type, X-Yoyu-Privacy, Mcp-Session-Id"
_CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"


class TrustError(YoyuError):
    """A request refused at the door; ``http_status`` says which rule."""

    error_type = "invalid_request_error"

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.http_status, self.error_code = status, code


@dataclass(frozen=True)
class TrustPolicy:
    """Who may call: host names, web origins, and the key (``None``: no key)."""

    bind_host: str = "127.0.0.1"
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    cors_origins: frozenset[str] = field(default_factory=frozenset)
    api_key: str | None = None
    open_paths: frozenset[str] = OPEN_PATHS  # served without the key: they hold no data
    open_prefixes: tuple[str, ...] = ()
    login_path: str | None = None  # where a browser refused for want of a key is sent

    def is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    def host_allowed(self, host: str) -> bool:
        if host in LOOPBACK_NAMES or host in self.allowed_hosts or host == self.bind_host:
            return True
        return self.bind_host in WILDCARD_BINDS and not self.allowed_hosts

    def origin_allowed(self, origin: str) -> bool:
        return origin in self.cors_origins or "*" in self.cors_origins


def check_request(
    policy: TrustPolicy, method: str, path: str, headers: Mapping[str, str]
) -> TrustError | None:
    """Why this request may not pass (the first rule it breaks), or None."""
    host = host_name(headers.get("host", ""))
    if not policy.host_allowed(host):
        return TrustError(
            f"this gateway does not answer to the host {host!r}; add it to [server] "
            "allowed_hosts if you reach it by that name",
            421,
            "host_not_allowed",
        )
    origin = headers.get("origin")
    if (
        origin is not None
        and not _same_origin(origin, headers)
        and not policy.origin_allowed(origin)
    ):
        return TrustError(
            f"requests from the web page at {origin} are refused; add it to [server] "
            "cors_origins to allow it",
            403,
            "origin_not_allowed",
        )
    if method in _BODY_METHODS and _has_body(headers) and not _is_json(headers):
        return TrustError(
            "the body must be JSON, sent with Content-Type: application/json",
            415,
            "unsupported_media_type",
        )
    if policy.api_key is not None and not policy.is_open(path) and method != "OPTIONS":
        own_page = origin is None or _same_origin(origin, headers)
        if not _bearer_ok(headers, policy.api_key) and not (
            own_page and _session_ok(headers, policy.api_key)
        ):
            return TrustError("missing or wrong API key", 401, "invalid_api_key")
    return None


def session_token(api_key: str) -> str:
    """What the dashboard's session cookie holds: an HMAC of the key, so the cookie never
    carries the key itself (it is no Bearer token) and is void once the key changes."""
    return hmac.new(api_key.encode(), _SESSION_SALT, hashlib.sha256).hexdigest()


def _bearer_ok(headers: Mapping[str, str], api_key: str) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), api_key.encode()
    )


def _session_ok(headers: Mapping[str, str], api_key: str) -> bool:
    sent = cookie_value(headers.get("cookie", ""), SESSION_COOKIE)
    return sent is not None and hmac.compare_digest(sent.encode(), session_token(api_key).encode())


def cookie_value(cookie_header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, or None."""
    for pair in cookie_header.split(";"):
        key, sep, value = pair.strip().partition("=")
        if sep and key == name:
            return value.strip()
    return None


def host_name(host_header: str) -> str:
    """The name in a Host header, without the port ("[::1]:8040" -> "::1")."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same_origin(origin: str, headers: Mapping[str, str]) -> bool:
    host = headers.get("host", "").strip().lower()
    return origin.lower() in (f"http://{host}", f"https://{host}")


def _has_body(headers: Mapping[str, str]) -> bool:
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (length is not None and length.strip() != "0")


def _is_json(headers: Mapping[str, str]) -> bool:
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type == "application/json"


class TrustMiddleware:
    """ASGI middleware applying ``check_request`` to every HTTP request, and CORS."""

    def __init__(self, app: ASGIApp, policy: TrustPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", [])
        }
        refusal = check_request(self.policy, scope["method"], scope["path"], headers)
        if refusal is not None:
            login = self.policy.login_path
            if login is not None and _navigating(scope["method"], headers, refusal):
                await _redirect(send, login)
            else:
                await _refuse(send, refusal, scope["path"])
            return
        origin = headers.get("origin")
        cross = origin if origin is not None and not _same_origin(origin, headers) else None
        if cross is not None and scope["method"] == "OPTIONS":
            await _preflight(send, cross)
            return
        await self.app(scope, receive, _with_cors(send, cross) if cross else send)


async def _refuse(send: Send, error: TrustError, path: str) -> None:
    """OpenAI's error object; Ollama's ``{"error": "..."}`` on its API's paths."""
    fields = {"message": str(error), "type": error.error_type, "code": error.error_code}
    shaped = str(error) if path.startswith(OLLAMA_PREFIX) else {**fields, "param": None}
    body = json.dumps({"error": shaped}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _navigating(method: str, headers: Mapping[str, str], refusal: TrustError) -> bool:
    """A browser opening a page (not a script's call) that only lacks the key."""
    wants_page = "text/html" in headers.get("accept", "")
    return refusal.error_code == "invalid_api_key" and method == "GET" and wants_page


async def _redirect(send: Send, location: str) -> None:
    headers = [(b"location", location.encode()), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _preflight(send: Send, origin: str) -> None:
    headers = [
        *_cors_headers(origin),
        (b"access-control-allow-methods", _CORS_METHODS.encode()),
        (b"access-control-allow-headers", _CORS_HEADERS.encode()),
        (b"access-control-max-age", b"600"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin")]


def _with_cors(send: Send, origin: str) -> Send:
    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *_cors_headers(origin)]
        await send(message)

    return send_with_cors
