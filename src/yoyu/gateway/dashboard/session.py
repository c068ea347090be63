"""Signing in to the dashboard when the gateway wants a key: a browser cannot add an
``Authorization`` header to a page it opens, so the login form trades the key for a
cookie the trust middleware accepts (``gateway.trust``: one door, one check).

The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page
sends it) and holds an HMAC of the key, never the key; it lasts the browser session.
"""

from __future__ import annotations

import asyncio
import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from yoyu.errors import BadRequestError
from yoyu.gateway import wire
from yoyu.gateway.trust import SESSION_COOKIE, TrustError, session_token

LOGIN_PAGE = "/login"
LOGIN_PATH = "/dashboard/login"
LOGOUT_PATH = "/dashboard/logout"
MAX_LOGIN_BYTES = 4096  # the login is open to all: read no more than a key needs
WRONG_KEY_DELAY_S = 1.0


def session_cookie(token: str, *, secure: bool, clear: bool = False) -> str:
    """The Set-Cookie value for ``token`` (or one that clears it)."""
    parts = [f"{SESSION_COOKIE}={'' if clear else token}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if clear:
        parts.append("Max-Age=0")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


async def login(request: Request, api_key: str | None) -> Response:
    """``POST /dashboard/login {"key": "..."}``: the cookie for the right key, 401 else."""
    try:
        payload = wire.parse_json(await read_body(request, MAX_LOGIN_BYTES))
    except BadRequestError as error:
        return _error(error)
    key = payload.get("key")
    if not isinstance(key, str):
        return _error(BadRequestError('send {"key": "the API key"}', param="key"))
    if api_key is None:  # no key wanted: nothing to sign in to
        return JSONResponse({"signed_in": True, "key_required": False})
    if not hmac.compare_digest(key.encode(), api_key.encode()):
        await asyncio.sleep(WRONG_KEY_DELAY_S)  # guessing one key after another goes slowly
        return _error(TrustError("wrong API key", 401, "invalid_api_key"))
    response = JSONResponse({"signed_in": True, "key_required": True})
    secure = request.url.scheme == "https"
    response.headers["set-cookie"] = session_cookie(session_token(api_key), secure=secure)
    return response


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused once it passes ``limit`` bytes (before reading the rest)."""
    body = b""
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise BadRequestError(f"the body is over {limit} bytes; send less")
    return body


async def logout(request: Request) -> Response:
    response = JSONResponse({"signed_in": False})
    secure = request.url.scheme == "https"
    response.headers["set-cookie"] = session_cookie("", secure=secure, clear=True)
    return response


def _error(error: BadRequestError | TrustError) -> Response:
    return JSONResponse(wire.error_body(error), status_code=error.http_status)
