"""MCP over streamable HTTP, to mount at ``/mcp`` in the gateway (or serve alone).

The SDK's session manager needs a task group that lives as long as the
server, so it must be entered in the ASGI app's lifespan; a mounted
sub-app's lifespan is never run by Starlette. Hence two parts: ``routes``
to add to the gateway's routes, and ``lifespan()`` to enter inside the
gateway's own lifespan::

    mcp_http = create_mcp_http_app(service, api_key=key, host=config.server.host)
    async with mcp_http.lifespan():   # in the gateway's lifespan
        yield
    routes = [..., *mcp_http.routes]

The gateway's API key, when set, guards ``/mcp`` the same way as ``/v1``.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from mcp.server import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from yoyu.gateway.service import GatewayService
from yoyu.mcp.server import create_mcp_server
from yoyu.mcp.tools import YoyuTools

MCP_PATH = "/mcp"


class McpHttpApp:
    """The ASGI endpoint for MCP's streamable HTTP transport, its route and its lifespan."""

    def __init__(
        self,
        server: MCPServer,
        *,
        path: str = MCP_PATH,
        api_key: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.server = server
        self.path = path
        self._api_key = api_key
        # Builds the session manager (with DNS-rebinding protection on a loopback host);
        # the Starlette app it returns is not used: its lifespan would never run when mounted.
        server.streamable_http_app(streamable_http_path=path, host=host)
        self.session_manager: StreamableHTTPSessionManager = server.session_manager

    @property
    def routes(self) -> list[BaseRoute]:
        """One route, every method (POST messages, GET the event stream, DELETE the session)."""
        return [Route(self.path, endpoint=self)]

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """The session manager's task group; enter it once, in the hosting app's lifespan."""
        return self.session_manager.run()

    def starlette_app(self) -> Starlette:
        """A Starlette app serving only MCP (the caller owns the service's start and close)."""

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            async with self.lifespan():
                yield

        return Starlette(routes=self.routes, lifespan=lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._api_key is not None and not self._authorized(scope):
            refusal = JSONResponse(
                {"error": {"message": "missing or wrong API key", "type": "authentication_error"}},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await refusal(scope, receive, send)
            return
        await self.session_manager.handle_request(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), (self._api_key or "").encode()
        )


def create_mcp_http_app(
    service: GatewayService,
    *,
    path: str = MCP_PATH,
    api_key: str | None = None,
    host: str = "127.0.0.1",
    tools: YoyuTools | None = None,
) -> McpHttpApp:
    """MCP over streamable HTTP for ``service``: add ``.routes``, enter ``.lifespan()``."""
    return McpHttpApp(create_mcp_server(service, tools), path=path, api_key=api_key, host=host)
