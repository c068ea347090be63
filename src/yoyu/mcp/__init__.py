"""yoyu as an MCP server: local models and the machine's state as tools for agents.

The tools call the gateway's service layer (``GatewayService``) and the
planner, nothing else, so an agent gets the same routing, fallbacks, privacy
and memory admission as an OpenAI client. Two transports: stdio
(``yoyu mcp``, ``serve_stdio``) and streamable HTTP (``create_mcp_http_app``,
mounted at ``/mcp`` by ``yoyu serve``).

``import mcp`` in this package is the official SDK: imports are absolute, and
this package is ``yoyu.mcp``.
"""

from yoyu.mcp.http_app import McpHttpApp, create_mcp_http_app
from yoyu.mcp.server import create_mcp_server, serve_stdio
from yoyu.mcp.tools import YoyuTools

__all__ = ["McpHttpApp", "YoyuTools", "create_mcp_http_app", "create_mcp_server", "serve_stdio"]
