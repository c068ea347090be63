"""The MCP server over ``GatewayService``: tool registration and the stdio transport.

``create_mcp_server(service)`` registers ``YoyuTools``' methods as MCP tools
with the official SDK's ``MCPServer``. A YoyuError (a model that does not
fit, an engine that is down, a name nobody serves) becomes a tool result with
``isError`` and the error's one-line message, so the agent reads why and the
server keeps serving; anything else is a bug and the SDK reports it as such.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from yoyu import __version__
from yoyu.errors import YoyuError
from yoyu.gateway.service import GatewayService
from yoyu.mcp.tools import YoyuTools

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

SERVER_NAME = "yoyu"
INSTRUCTIONS = (
    "yoyu serves local LLMs with room to spare. Use generate or chat to hand private or "
    "cheap work to a model on this machine (private=true keeps it here), list_models to see "
    "what is served and loaded, memory_status and health_check before heavy work, plan_model "
    "to ask whether a model would fit, fit_models to find the models that run well here, and "
    "switch_model to point an alias at another model."
)
_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_GENERATES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
_SWITCHES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)


def create_mcp_server(service: GatewayService, tools: YoyuTools | None = None) -> MCPServer:
    """An MCP server whose tools call ``service`` (``tools`` to inject a machine or reader)."""
    operations = tools or YoyuTools(service)
    server: MCPServer = MCPServer(
        SERVER_NAME,
        title="yoyu: local LLMs with room to spare",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    registry: list[tuple[Callable[..., Any], str, ToolAnnotations]] = [
        (operations.generate, "Generate text", _GENERATES),
        (operations.chat, "Chat", _GENERATES),
        (operations.list_models, "List models", _READ_ONLY),
        (operations.switch_model, "Switch an alias to another model", _SWITCHES),
        (operations.health_check, "Check backends", _READ_ONLY),
        (operations.plan_model, "Plan a model", _READ_ONLY),
        (operations.fit_models, "Models that fit", _READ_ONLY),
        (operations.memory_status, "Memory status", _READ_ONLY),
    ]
    for method, title, hints in registry:
        server.add_tool(tool_errors(method), name=method.__name__, title=title, annotations=hints)
    return server


def tool_errors(operation: Callable[P, R]) -> Callable[P, R | CallToolResult]:
    """``operation`` with user errors turned into an ``isError`` result that carries
    the error's own message (the SDK's ToolError would prefix it)."""

    @functools.wraps(operation)
    def call(*args: P.args, **kwargs: P.kwargs) -> R | CallToolResult:
        try:
            return operation(*args, **kwargs)
        except YoyuError as error:
            log.info("tool %s: %s", operation.__name__, error)
            message = TextContent(type="text", text=str(error))
            return CallToolResult(content=[message], is_error=True)

    return call


def serve_stdio(service: GatewayService) -> None:
    """Serve MCP over stdin/stdout until the client hangs up; the engines yoyu started
    stop with it."""
    server = create_mcp_server(service)
    service.start()
    try:
        server.run("stdio")
    finally:
        service.close()
