"""The gateway's part of ``yoyu.toml``: server, backends, served models, aliases, routes.

``[models]`` already holds ``paths`` (model discovery), so the models the
gateway serves live in ``[served.ID]``; everything else has its own section::

    [server]
    host = "127.0.0.1"            # anything else needs api_key_env
    port = 8040
    api_key_env = "YOYU_API_KEY"  # clients send "Authorization: Bearer <key>"
    max_body_bytes = "8 MiB"
    memory_floor = "2 GiB"        # a load yoyu starts never leaves less available
                                  # (default: the guard's abort floor from [guard])
    memory_budget = "24 GiB"      # optional: the most yoyu's own models hold together
    request_timeout_s = 600       # a request still unanswered after this is cancelled
    allowed_hosts = ["mybox.lan"] # Host names besides 127.0.0.1, localhost, [::1], the bind
    cors_origins = ["http://localhost:3000"]  # web pages allowed to call the API
    cooldown_s = 5                # a failed backend is skipped this long
    default_ttl_s = 0             # idle seconds before a model is unloaded; 0 = never
    max_concurrent = 4            # requests a model answers at once (default: 4 on this
    max_queue = 64                # machine, 32 remote; each [served.ID] may say its own);
                                  # more wait in line, beyond max_queue a 429

    [backends.local]
    kind = "llama.cpp"            # any other key goes to the backend's factory

    [backends.kimi]
    kind = "openai"
    base_url = "https://api.moonshot.ai/v1"
    api_key_env = "MOONSHOT_API_KEY"

    [served."qwen2.5-coder:7b"]
    backend = "local"
    path = "~/models/qwen2.5-coder-7b-instruct-q4_k_m.gguf"   # a managed model
    settings = { n_ctx = 8192 }
    ttl_s = 600
    pinned = false
    private = true                # requests for it never leave this machine

    [served.kimi]
    backend = "kimi"
    upstream = "kimi-k2-0905-preview"   # the name the backend knows it by

    [aliases]
    coder = "qwen2.5-coder:7b"    # an alias names a served model or a route

    [routes.deepseek]             # or the short form: deepseek = ["a", "b", "kimi"]
    chain = ["deepseek-r1:32b", "deepseek-r1:8b", "kimi"]
    private = false

Every unknown key is a ConfigError that names it and the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from yoyu.errors import ConfigError, YoyuError
from yoyu.guard.policy import GuardPolicy, policy_from_config
from yoyu.machine.machine_file import SIZE_HINT, parse_size
from yoyu.node.rpc_protocol import parse_endpoint
from yoyu.node.status import parse_node_address

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
T = TypeVar("T")
DEFAULT_PORT = 8040
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_COOLDOWN_S = 5.0
DEFAULT_REQUEST_TIMEOUT_S = 600.0
# Requests a model answers at once, and how many more may wait for a turn. Four is
# llama-server's slot count when not told (-np) and Ollama's OLLAMA_NUM_PARALLEL
# default; a remote API serves many at once and rate-limits by itself. A bounded line
# gives a client 429 + Retry-After instead of a timeout.
DEFAULT_MAX_CONCURRENT_LOCAL = 4
DEFAULT_MAX_CONCURRENT_REMOTE = 32
DEFAULT_MAX_QUEUE = 64
QUICK_START_BACKEND = "local"
MANAGED_KIND = "llama.cpp"


@dataclass(frozen=True)
class ServerConfig:
    """How the gateway listens and the limits it keeps for every request and load."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key_env: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    memory_floor_bytes: int | None = None  # None: the guard's abort floor
    memory_budget_bytes: int | None = None
    cooldown_s: float = DEFAULT_COOLDOWN_S
    default_ttl_s: float = 0.0
    health_interval_s: float = 30.0
    guard: bool = True  # run the guard over every engine the gateway starts
    allowed_hosts: tuple[str, ...] = ()  # Host names besides loopback and the bound address
    cors_origins: tuple[str, ...] = ()  # web origins whose pages may call the gateway
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S  # a request is cancelled after this
    max_concurrent: int | None = None  # per served model unless it says; None: local 4, remote 32
    max_queue: int = DEFAULT_MAX_QUEUE

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS


@dataclass(frozen=True)
class BackendConfig:
    """One ``[backends.NAME]`` table: the registry kind and its factory's options."""

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServedModel:
    """A model id clients may ask for, and where and how it runs.

    ``path`` makes it a managed model: the gateway loads it itself, after
    admission. ``upstream`` is the name the backend knows it by (default: id).
    ``memory_bytes`` replaces the plan's estimate when the user knows better.
    """

    id: str
    backend: str
    path: Path | None = None
    upstream: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    ttl_s: float | None = None  # None: the server's default_ttl_s; 0: never
    pinned: bool = False
    private: bool = False
    memory_bytes: int | None = None
    nodes: tuple[str, ...] = ()  # `yoyu node` status addresses: split over llama.cpp RPC
    rpc: tuple[str, ...] = ()  # raw rpc-servers (HOST:PORT), after the nodes
    max_concurrent: int | None = None  # None: [server] max_concurrent
    max_queue: int | None = None  # None: [server] max_queue

    @property
    def managed(self) -> bool:
        return self.path is not None

    @property
    def upstream_name(self) -> str:
        return self.upstream or self.id


@dataclass(frozen=True)
class Route:
    """A name whose requests try ``chain`` (served ids) in order until one answers."""

    name: str
    chain: tuple[str, ...]
    private: bool = False


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway serves, checked: every name it refers to exists."""

    server: ServerConfig = field(default_factory=ServerConfig)
    backends: Mapping[str, BackendConfig] = field(default_factory=dict)
    served: Mapping[str, ServedModel] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    routes: Mapping[str, Route] = field(default_factory=dict)
    guard: GuardPolicy = field(default_factory=GuardPolicy)
    source: Path | None = None

    def floor_bytes(self, total_bytes: int) -> int:
        """The floor no load may cross: ``[server] memory_floor``, else the guard's abort floor."""
        if self.server.memory_floor_bytes is not None:
            return self.server.memory_floor_bytes
        return self.guard.resolve(total_bytes).abort_bytes


# -- parsing ---------------------------------------------------------------

_SERVER_KEYS = {
    "host", "port", "api_key_env", "max_body_bytes", "memory_floor", "memory_budget",
    "cooldown_s", "default_ttl_s", "health_interval_s", "guard", "allowed_hosts",
    "cors_origins", "request_timeout_s", "max_concurrent", "max_queue",
}  # fmt: skip
_SERVED_KEYS = {
    "backend", "path", "upstream", "settings", "ttl_s", "pinned", "private", "memory", "nodes",
    "rpc", "max_concurrent", "max_queue",
}  # fmt: skip
_ROUTE_KEYS = {"chain", "private"}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def parse_gateway_config(document: Mapping[str, Any], source: Path | None = None) -> GatewayConfig:
    """The gateway's sections of a ``read_document`` body, checked and cross-referenced."""
    where = str(source) if source else "yoyu.toml"
    config = GatewayConfig(
        server=_server(_table(document, "server", where), where),
        backends=_backends(_table(document, "backends", where), where),
        served=_served_models(_table(document, "served", where), where),
        aliases=_aliases(_table(document, "aliases", where), where),
        routes=_routes(_table(document, "routes", where), where),
        guard=policy_from_config(_table(document, "guard", where), where),
        source=source,
    )
    check_references(config)
    return config


def toml_key(name: str) -> str:
    """``name`` as it is written in TOML: bare when it can be, else quoted, so a message
    that names it stays on one line whatever characters it holds."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def _table(document: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    body = document.get(name, {})
    if not isinstance(body, Mapping):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return body


def _reject_unknown(body: Mapping[str, Any], known: set[str], section: str, where: str) -> None:
    for key in body:
        if key not in known:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [{section}]; known: {', '.join(sorted(known))}"
            )


def _server(body: Mapping[str, Any], where: str) -> ServerConfig:
    _reject_unknown(body, _SERVER_KEYS, "server", where)
    default = ServerConfig()
    budget, floor = body.get("memory_budget"), body.get("memory_floor")
    return ServerConfig(
        host=_typed(body, "host", str, default.host, "server", where),
        port=_port(body.get("port", default.port), where),
        api_key_env=_typed(body, "api_key_env", str, None, "server", where),
        max_body_bytes=_size(body.get("max_body_bytes", default.max_body_bytes), "server", where),
        memory_floor_bytes=None if floor is None else _size(floor, "server", where),
        memory_budget_bytes=None if budget is None else _size(budget, "server", where),
        cooldown_s=_seconds(body, "cooldown_s", default.cooldown_s, "server", where),
        default_ttl_s=_seconds(body, "default_ttl_s", default.default_ttl_s, "server", where),
        health_interval_s=_seconds(
            body, "health_interval_s", default.health_interval_s, "server", where
        ),
        guard=_typed(body, "guard", bool, default.guard, "server", where),
        allowed_hosts=_strings(body, "allowed_hosts", where),
        cors_origins=_strings(body, "cors_origins", where),
        request_timeout_s=_seconds(
            body, "request_timeout_s", default.request_timeout_s, "server", where
        ),
        max_concurrent=_count(body, "max_concurrent", None, 1, "server", where),
        max_queue=_count(body, "max_queue", default.max_queue, 0, "server", where),
    )


def _backends(body: Mapping[str, Any], where: str) -> dict[str, BackendConfig]:
    backends = {}
    for name, table in body.items():
        section = f"backends.{toml_key(name)}"
        if not isinstance(table, Mapping) or not isinstance(table.get("kind"), str):
            raise ConfigError(f'{where}: [{section}] needs a kind, e.g. kind = "llama.cpp"')
        options = {key: value for key, value in table.items() if key != "kind"}
        backends[name] = BackendConfig(name, table["kind"], options)
    return backends


def _served_models(body: Mapping[str, Any], where: str) -> dict[str, ServedModel]:
    return {model_id: _served(model_id, table, where) for model_id, table in body.items()}


def _served(model_id: str, table: Any, where: str) -> ServedModel:
    section = f"served.{toml_key(model_id)}"
    if not isinstance(table, Mapping):
        raise ConfigError(f'{where}: [{section}] must be a table with backend = "NAME"')
    _reject_unknown(table, _SERVED_KEYS, section, where)
    backend = table.get("backend")
    if not isinstance(backend, str):
        raise ConfigError(f'{where}: [{section}] needs backend = "NAME" (a [backends.NAME])')
    path = _typed(table, "path", str, None, section, where)
    settings = table.get("settings", {})
    if not isinstance(settings, Mapping):
        raise ConfigError(f"{where}: settings in [{section}] must be a table")
    ttl = table.get("ttl_s")
    memory = table.get("memory")
    return ServedModel(
        id=model_id,
        backend=backend,
        path=Path(path).expanduser() if path else None,
        upstream=_typed(table, "upstream", str, None, section, where),
        settings=dict(settings),
        ttl_s=None if ttl is None else _seconds(table, "ttl_s", 0.0, section, where),
        pinned=_typed(table, "pinned", bool, False, section, where),
        private=_typed(table, "private", bool, False, section, where),
        memory_bytes=None if memory is None else _size(memory, section, where),
        nodes=_nodes(table.get("nodes", []), section, where),
        rpc=_rpc(table.get("rpc", []), section, where),
        max_concurrent=_count(table, "max_concurrent", None, 1, section, where),
        max_queue=_count(table, "max_queue", None, 0, section, where),
    )


def _nodes(value: Any, section: str, where: str) -> tuple[str, ...]:
    example = '["10.0.0.2:50053"] (the status addresses `yoyu node` prints)'
    return _addresses(value, "nodes", section, where, example, parse_node_address)


def _rpc(value: Any, section: str, where: str) -> tuple[str, ...]:
    example = '["10.0.0.4:50052"] (the addresses rpc-server listens on)'
    return _addresses(value, "rpc", section, where, example, parse_endpoint)


def _addresses(
    value: Any, key: str, section: str, where: str, example: str,
    parse: Callable[[str], tuple[str, int]],
) -> tuple[str, ...]:  # fmt: skip
    """A list of HOST:PORT, each checked now (a typo is a one-line error at start, not at
    the first request)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: {key} in [{section}] must be a list like {example}")
    for address in value:
        try:
            parse(address)
        except YoyuError as error:
            raise ConfigError(f"{where}: [{section}] {error}") from None
    return tuple(value)


def _aliases(body: Mapping[str, Any], where: str) -> dict[str, str]:
    for name, target in body.items():
        if not isinstance(target, str):
            raise ConfigError(
                f'{where}: alias {name!r} must name a model, e.g. {toml_key(name)} = "id"'
            )
    return dict(body)


def _routes(body: Mapping[str, Any], where: str) -> dict[str, Route]:
    routes = {}
    for name, value in body.items():
        section = f"routes.{toml_key(name)}"
        table = {"chain": value} if isinstance(value, list) else value
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: route {name!r} must be a list of model ids or a table")
        _reject_unknown(table, _ROUTE_KEYS, section, where)
        chain = table.get("chain")
        if not isinstance(chain, list) or not chain or not all(isinstance(c, str) for c in chain):
            raise ConfigError(f'{where}: [{section}] chain must list model ids, e.g. ["a", "b"]')
        private = _typed(table, "private", bool, False, section, where)
        routes[name] = Route(name, tuple(chain), private)
    return routes


def check_references(config: GatewayConfig) -> None:
    """Every backend, model, alias target and chain member named must exist, once."""
    where = str(config.source) if config.source else "yoyu.toml"
    for model in config.served.values():
        if model.backend not in config.backends:
            raise ConfigError(
                f"{where}: served model {model.id!r} names backend {model.backend!r}, "
                f"which has no [backends.{model.backend}] table"
            )
    for route in config.routes.values():
        missing = [member for member in route.chain if member not in config.served]
        if missing:
            raise ConfigError(
                f"{where}: route {route.name!r} lists {', '.join(missing)}, "
                "which are not [served.ID] models"
            )
    names = [*config.served, *config.routes, *config.aliases]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise ConfigError(f"{where}: {', '.join(clashes)} named twice (model, route or alias)")
    for alias, target in config.aliases.items():
        if target not in config.served and target not in config.routes:
            raise ConfigError(
                f"{where}: alias {alias!r} points to {target!r}, which is no served model or route"
            )


def _typed(
    body: Mapping[str, Any], key: str, kind: type, default: Any, section: str, where: str
) -> Any:
    value = body.get(key, default)
    if value is not None and not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} in [{section}] must be a {kind.__name__}")
    return value


def _count(
    body: Mapping[str, Any], key: str, default: T, least: int, section: str, where: str
) -> int | T:
    """A whole number of at least ``least`` (requests, places in a line)."""
    value = body.get(key, default)
    if value is default:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{where}: {key} in [{section}] must be a whole number >= {least}")
    return value


def _port(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"{where}: port in [server] must be a number from 0 to 65535")
    return value


def _size(value: object, section: str, where: str) -> int:
    try:
        return parse_size(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} in [{section}] is not a size; {SIZE_HINT}") from None


def _strings(body: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f'{where}: {key} in [server] must be a list of strings, e.g. ["x"]')
    return tuple(value)


def _seconds(body: Mapping[str, Any], key: str, default: float, section: str, where: str) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: {key} in [{section}] must be a number of seconds, 0 or more")
    return float(value)


# -- the quick start -------------------------------------------------------


def parse_model_flag(flag: str) -> ServedModel:
    """``PATH.gguf[=ALIAS]`` as a managed model on the quick-start backend."""
    path_text, _, alias = flag.partition("=")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ConfigError(f"--model {flag}: no file at {path}; give the path of a GGUF file")
    return ServedModel(id=alias or path.stem, backend=QUICK_START_BACKEND, path=path)


def with_flags(
    config: GatewayConfig,
    *,
    models: Sequence[str] = (),
    host: str | None = None,
    port: int | None = None,
    api_key_env: str | None = None,
    nodes: Sequence[str] = (),
    rpc: Sequence[str] = (),
) -> GatewayConfig:
    """``config`` with the command line on top: flags win over the file; ``nodes`` and
    ``rpc`` split every ``--model`` over those `yoyu node` workers and rpc-servers."""
    served = dict(config.served)
    for model in (parse_model_flag(flag) for flag in models):
        served[model.id] = dataclasses.replace(model, nodes=tuple(nodes), rpc=tuple(rpc))
    backends = dict(config.backends)
    if models and QUICK_START_BACKEND not in backends:
        backends[QUICK_START_BACKEND] = BackendConfig(QUICK_START_BACKEND, MANAGED_KIND)
    server = dataclasses.replace(
        config.server,
        host=host if host is not None else config.server.host,
        port=port if port is not None else config.server.port,
        api_key_env=api_key_env if api_key_env is not None else config.server.api_key_env,
    )
    merged = dataclasses.replace(config, server=server, backends=backends, served=served)
    check_references(merged)
    return merged


def api_key(server: ServerConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The key clients must send, from the variable ``api_key_env`` names.

    Refuses a non-loopback bind without one: a gateway on the LAN with no key
    hands every model (and every remote API key behind it) to anyone.
    """
    environ = os.environ if env is None else env
    key = environ.get(server.api_key_env) if server.api_key_env else None
    if server.api_key_env and not key:
        raise ConfigError(
            f"api_key_env names {server.api_key_env}, which is not set; export it or drop the key"
        )
    if not server.is_loopback and not key:
        raise ConfigError(
            f"refusing to listen on {server.host} without an API key; "
            "set --api-key-env VAR (and export VAR) or bind to 127.0.0.1"
        )
    return key
