"""One OpenAI-compatible endpoint for every local and remote model, memory-aware.

``config`` reads ``[server]``, ``[backends.*]``, ``[served.*]``, ``[aliases]``
and ``[routes]``; ``service.GatewayService`` holds the operations (the HTTP
app and the MCP server both call it); ``admission`` and ``routing`` decide on
plain values; ``residency`` carries out loads and unloads; ``app`` is the
Starlette front door and ``server`` runs it on uvicorn.
"""
