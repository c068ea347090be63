"""The head reading its workers' ``/status`` before it plans or starts an engine."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from yoyu.errors import BackendUnavailableError
from yoyu.node.status import STATUS_PATH, LiveNode, NodeStatus, parse_node_address

READ_TIMEOUT_S = 5.0


def read_node(address: str, api_key: str | None = None) -> LiveNode:
    """The node at ``HOST:PORT`` (its status port), or a one-line error naming it."""
    host, port = parse_node_address(address)
    url = f"http://{_url_host(host)}:{port}{STATUS_PATH}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=READ_TIMEOUT_S)
    except httpx.HTTPError as error:
        raise BackendUnavailableError(
            f"node {address} did not answer ({type(error).__name__}); is `yoyu node` running "
            "there, and is this its status port (the RPC port + 1)?"
        ) from None
    if response.status_code == 401:
        raise BackendUnavailableError(f"node {address} refused the API key; set YOYU_API_KEY")
    if response.status_code != 200:
        raise BackendUnavailableError(f"node {address} answered {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BackendUnavailableError(f"node {address} did not answer with a JSON status")
    return LiveNode(host, NodeStatus.from_dict(body, f"node {address}"))


def read_nodes(addresses: Sequence[str], api_key: str | None = None) -> list[LiveNode]:
    nodes = [read_node(address, api_key) for address in addresses]
    endpoints = [node.rpc_endpoint for node in nodes]
    duplicates = sorted({e for e in endpoints if endpoints.count(e) > 1})
    if duplicates:
        raise BackendUnavailableError(f"the same node is given twice: {', '.join(duplicates)}")
    return nodes


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
