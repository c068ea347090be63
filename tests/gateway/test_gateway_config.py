"""The gateway's yoyu.toml sections: checked keys, cross references, quick start, bind rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from yoyu.errors import ConfigError
from yoyu.gateway.config import (
    GatewayConfig,
    ServerConfig,
    api_key,
    parse_gateway_config,
    with_flags,
)
from yoyu.toml import load_toml
from yoyu.units import GIB, MIB

FULL = """
[server]
port = 9000
memory_floor = "1 GiB"
memory_budget = "8 GiB"
max_body_bytes = "1 MiB"

[backends.local]
kind = "llama.cpp"

[backends.kimi]
kind = "openai"
base_url = "https://api.moonshot.ai/v1"
api_key_env = "MOONSHOT_API_KEY"

[served."qwen2.5-coder:7b"]
backend = "local"
path = "/models/qwen.gguf"
settings = { n_ctx = 8192 }
ttl_s = 600
pinned = true

[served.kimi]
backend = "kimi"
upstream = "kimi-k2"

[aliases]
coder = "qwen2.5-coder:7b"

[routes]
smart = ["qwen2.5-coder:7b", "kimi"]

[routes.private-smart]
chain = ["qwen2.5-coder:7b", "kimi"]
private = true
"""


SERVED_M = '[backends.x]\nkind = "llama.cpp"\n[served.m]\nbackend = "x"\npath = "m.gguf"\n'


@pytest.fixture
def parse(tmp_path: Path) -> Callable[[str], GatewayConfig]:
    def parse_text(text: str) -> GatewayConfig:
        path = tmp_path / "yoyu.toml"
        path.write_text(text, encoding="utf-8")
        return parse_gateway_config(load_toml(path), path)

    return parse_text


def test_a_full_config_is_read_into_plain_values(parse: Callable[[str], GatewayConfig]) -> None:
    config = parse(FULL)
    assert config.server.port == 9000
    assert config.server.memory_floor_bytes == GIB
    assert config.server.memory_budget_bytes == 8 * GIB
    assert config.server.max_body_bytes == MIB
    assert config.backends["kimi"].options["api_key_env"] == "MOONSHOT_API_KEY"
    coder = config.served["qwen2.5-coder:7b"]
    assert coder.managed and coder.pinned and coder.ttl_s == 600
    assert coder.settings == {"n_ctx": 8192}
    assert config.served["kimi"].upstream_name == "kimi-k2"
    assert config.routes["smart"].chain == ("qwen2.5-coder:7b", "kimi")
    assert config.routes["private-smart"].private
    assert config.aliases == {"coder": "qwen2.5-coder:7b"}
    assert config.floor_bytes(total_bytes=64 * GIB) == GIB


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[server]\nportt = 1", "unknown key 'portt' in [server]"),
        ('[backends.x]\nkind = "llama.cpp"\n[served.m]\nbackend = "x"\nttl = 3', "'ttl'"),
        ('[served.m]\nbackend = "nowhere"', "no [backends.nowhere] table"),
        ('[backends.x]\nkind = "llama.cpp"\n[routes]\nr = ["ghost"]', "ghost"),
        ('[aliases]\ncoder = "ghost"', "no served model or route"),
        ('[server]\nmemory_floor = "lots"', "not a size"),
        ('[backends.x]\nhost = "a"', "needs a kind"),
        ('[guard]\nabortt = "1 GiB"', "unknown key 'abortt' in [guard]"),
        (
            SERVED_M + 'rpc = "10.0.0.4:50052"',
            "must be a list",
        ),
        (
            SERVED_M + 'rpc = ["10.0.0.4"]',
            "'10.0.0.4' is not HOST:PORT",
        ),
    ],
)
def test_mistakes_are_named(
    parse: Callable[[str], GatewayConfig], text: str, complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint.replace("[", r"\[").replace("]", r"\]")):
        parse(text)


def test_without_a_floor_the_guards_abort_floor_applies(
    parse: Callable[[str], GatewayConfig],
) -> None:
    assert parse("").floor_bytes(total_bytes=64 * GIB) == 2 * GIB  # the guard's default
    assert parse('[guard]\nabort = "3 GiB"').floor_bytes(total_bytes=64 * GIB) == 3 * GIB


def test_a_served_model_names_its_rpc_servers_and_the_flag_gives_them_to_every_model(
    parse: Callable[[str], GatewayConfig], tmp_path: Path
) -> None:
    text = SERVED_M + 'rpc = ["10.0.0.4:50052", "[fd00::5]:50052"]'
    assert parse(text).served["m"].rpc == ("10.0.0.4:50052", "[fd00::5]:50052")
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    flagged = with_flags(GatewayConfig(), models=[str(model)], rpc=["127.0.0.1:50052"])
    assert flagged.served["tiny"].rpc == ("127.0.0.1:50052",)


def test_model_flags_need_no_config_file(tmp_path: Path) -> None:
    model = tmp_path / "tiny-chat.gguf"
    model.write_bytes(b"GGUF")
    config = with_flags(GatewayConfig(), models=[str(model), f"{model}=fast"], port=1234)
    assert set(config.served) == {"tiny-chat", "fast"}
    assert config.served["fast"].path == model
    assert config.backends["local"].kind == "llama.cpp"
    with pytest.raises(ConfigError, match="no file"):
        with_flags(GatewayConfig(), models=[str(tmp_path / "missing.gguf")])


def test_listening_beyond_loopback_needs_a_key() -> None:
    assert api_key(ServerConfig(host="127.0.0.1"), env={}) is None
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0"):
        api_key(ServerConfig(host="0.0.0.0"), env={})
    server = ServerConfig(host="0.0.0.0", api_key_env="GW_KEY")
    assert api_key(server, env={"GW_KEY": "s3cret"}) == "s3cret"
    with pytest.raises(ConfigError, match="GW_KEY"):
        api_key(server, env={})
