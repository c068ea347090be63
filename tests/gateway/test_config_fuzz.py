"""`yoyu.toml` with wrong types, unknown keys and huge values (hypothesis): every document
is either a config or one line of ConfigError saying where; never another exception.

Documents are built from the real section and key names with any TOML value, so most
reach deep into the checks rather than stopping at the first unknown key.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yoyu.errors import ConfigError, YoyuError
from yoyu.gateway.config import parse_gateway_config
from yoyu.gateway.service import build_backends

TOML_VALUE = st.recursive(
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(["127.0.0.1", "0.0.0.0", "8GiB", "-1", "ollama"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6,
)  # fmt: skip
SERVER_KEYS = ["host", "port", "api_key_env", "max_body_bytes", "memory_floor", "memory_budget",
               "cooldown_s", "default_ttl_s", "health_interval_s", "guard", "allowed_hosts",
               "cors_origins", "request_timeout_s", "typo"]  # fmt: skip
SERVED_KEYS = ["backend", "path", "upstream", "settings", "ttl_s", "pinned", "private",
               "memory", "nodes", "rpc", "typo"]  # fmt: skip
BACKEND_KEYS = ["kind", "base_url", "models", "remote", "api_key_env", "engine",
                "server_binary", "start_timeout_s", "host", "typo"]  # fmt: skip
GUARD_KEYS = ["caution", "abort", "interval_s", "protect", "typo"]


def table(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), TOML_VALUE, max_size=4)


def backend() -> st.SearchStrategy[dict[str, Any]]:
    kinds = st.sampled_from(["openai", "ollama", "nope"]) | TOML_VALUE
    return st.builds(lambda kind, rest: {"kind": kind, **rest}, kinds, table(BACKEND_KEYS))


DOCUMENT = st.fixed_dictionaries(
    {},
    optional={
        "server": table(SERVER_KEYS) | TOML_VALUE,
        "backends": st.dictionaries(st.sampled_from(["a", "b"]), backend(), max_size=2),
        "served": st.dictionaries(st.sampled_from(["m", "n"]), table(SERVED_KEYS), max_size=2),
        "aliases": st.dictionaries(st.text(max_size=5), TOML_VALUE, max_size=2),
        "routes": st.dictionaries(st.text(max_size=5), TOML_VALUE, max_size=2),
        "guard": table(GUARD_KEYS) | TOML_VALUE,
        "typo": TOML_VALUE,
    },
)


@settings(max_examples=400, deadline=None)
@given(document=DOCUMENT)
def test_any_config_is_a_config_or_one_line_saying_what_is_wrong(document: dict[str, Any]) -> None:
    try:
        config = parse_gateway_config(document)
        backends = build_backends(config)
    except YoyuError as error:
        message = str(error)
        assert message and "\n" not in message, message
        assert "Traceback" not in message
        return
    for made in backends.values():
        made.close()


def test_a_backend_option_of_the_wrong_type_is_one_line_from_yoyu_serve(tmp_path: Path) -> None:
    """Found by the fuzzing above: base_url = [] was an AttributeError inside the backend."""
    config = tmp_path / "yoyu.toml"
    document = {"backends": {"a": {"kind": "openai", "base_url": []}}}
    with pytest.raises(ConfigError, match=r"\[backends.a\]: base_url = \[\] is not a string"):
        build_backends(parse_gateway_config(document))
    config.write_text(
        '[backends.a]\nkind = "openai"\nbase_url = []\n[served.m]\nbackend = "a"\nupstream = "m"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "yoyu", "serve", "--config", str(config), "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr.strip().count("\n") == 0 and "base_url = [] is not a string" in result.stderr
    )
