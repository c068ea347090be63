"""Which local LLM runtimes are present: an Ollama server, ``llama-server``, llama-cpp-python.

Each check is cheap and bounded (a 0.3 s HTTP request, a 2 s ``--version``), and
"not found" is an answer, not an error. Only the standard library is used: the
machine package may not import an HTTP client.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import shutil
import urllib.request
from collections.abc import Callable, Mapping
from importlib import metadata

from yoyu.machine.commands import CommandError, CommandRunner, run_command
from yoyu.machine.types import RuntimeInfo

HttpGet = Callable[[str, float], bytes]
"""Fetch a URL with a timeout in seconds and return the body; raise OSError on failure."""

OLLAMA_DEFAULT_PORT = 11434
OLLAMA_TIMEOUT_S = 0.3
LLAMA_SERVER_TIMEOUT_S = 2.0


def probe_runtimes(
    env: Mapping[str, str] | None = None,
    *,
    http_get: HttpGet | None = None,
    run: CommandRunner | None = None,
) -> tuple[RuntimeInfo, ...]:
    """Ollama, llama-server and llama-cpp-python, in that order, each found or not."""
    environ = os.environ if env is None else env
    return (
        probe_ollama(environ, http_get=http_get),
        probe_llama_server(environ, run=run),
        probe_llama_cpp_python(),
    )


# --- Ollama ------------------------------------------------------------------


def ollama_base_url(env: Mapping[str, str]) -> str:
    """The URL a client should use for ``OLLAMA_HOST``, parsed as Ollama's envconfig.Host does.

    "host", "host:port", ":port", "[::1]:port" and "scheme://host:port/path" are
    accepted; without a port the default is 11434, or 80/443 after an explicit
    http/https scheme. A server bound to 0.0.0.0 or :: is reached on loopback.
    """
    raw = env.get("OLLAMA_HOST", "").strip().strip("\"'")
    scheme, has_scheme, hostport = raw.partition("://")
    default_port = OLLAMA_DEFAULT_PORT
    if not has_scheme:
        scheme, hostport = "http", raw
    elif scheme in ("http", "https"):
        default_port = 80 if scheme == "http" else 443
    host, port_text = _split_host_port(hostport.split("/", 1)[0])
    port = int(port_text) if port_text.isdigit() and int(port_text) <= 65535 else default_port
    return f"{scheme}://{_bracketed(_connectable(host))}:{port}"


def _split_host_port(hostport: str) -> tuple[str, str]:
    """Go's net.SplitHostPort, with Ollama's fallback to "the whole thing is the host"."""
    if hostport.startswith("["):
        host, _, after = hostport[1:].partition("]")
        return host or "127.0.0.1", after[1:] if after.startswith(":") else ""
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host or "127.0.0.1", port
    return hostport or "127.0.0.1", ""  # bare name, bare IPv6 address, or unset


def probe_ollama(env: Mapping[str, str], *, http_get: HttpGet | None = None) -> RuntimeInfo:
    """GET /api/version, which answers {"version": "0.12.6"}.

    Anything else (refused, timed out, not HTTP, not that JSON) means no Ollama
    there: another server on the port is not mistaken for it.
    """
    url = ollama_base_url(env)
    get = http_get or _urllib_get
    try:
        body = json.loads(get(f"{url}/api/version", OLLAMA_TIMEOUT_S))
    except (OSError, ValueError, http.client.HTTPException):
        body = None
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(version, str) or not version:
        return RuntimeInfo(name="ollama", found=False, location=url)
    return RuntimeInfo(name="ollama", found=True, version=version, location=url)


def _connectable(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "::1"
    return host


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _urllib_get(url: str, timeout_s: float) -> bytes:
    """GET without proxies: an HTTP_PROXY meant for the internet must not swallow localhost."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout_s) as response:
        body: bytes = response.read(64 * 1024)
        return body


# --- llama.cpp ---------------------------------------------------------------


def probe_llama_server(env: Mapping[str, str], *, run: CommandRunner | None = None) -> RuntimeInfo:
    """``llama-server`` on PATH, and its build from ``llama-server --version``."""
    path = shutil.which("llama-server", path=env.get("PATH", os.defpath))
    if path is None:
        return RuntimeInfo(name="llama-server", found=False)
    runner = run or _run_quickly
    try:
        version = parse_llama_server_version(runner([path, "--version"]))
    except CommandError:
        version = None
    return RuntimeInfo(name="llama-server", found=True, version=version, location=path)


def parse_llama_server_version(text: str) -> str | None:
    """The "version: ..." line llama.cpp tools print: "3369 (278d0e18)",
    "0.3.0 (build 10621, commit c1d0e7a00)". The "built with" line that follows is
    dropped, also when a log or issue form has joined the two lines.
    """
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        version = value.split(" built with ", 1)[0].strip()
        if sep and key.strip() == "version" and version:
            return version
    return None


def probe_llama_cpp_python() -> RuntimeInfo:
    """llama-cpp-python's installed version; the package is found without importing it."""
    try:
        distribution = metadata.distribution("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return RuntimeInfo(name="llama-cpp-python", found=False)
    location = distribution.locate_file("llama_cpp")
    return RuntimeInfo(
        name="llama-cpp-python",
        found=True,
        version=distribution.version,
        location=str(location),
    )


def _run_quickly(command: list[str] | tuple[str, ...]) -> str:
    return run_command(command, timeout_s=LLAMA_SERVER_TIMEOUT_S)
