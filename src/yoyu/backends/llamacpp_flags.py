"""How ``Llama``-named load settings become an engine's command line.

Load settings are llama-cpp-python's ``Llama`` keyword names (what
``yoyu.plan.emit.llama_cpp.engine_load_settings`` produces), plus the engine's
own (``logits_all``, ``ctx_checkpoints``, ``cache_ram_mib``) and
``extra_argv`` for flags passed through verbatim, whichever engine runs:
llama-cpp-python's server (``python -m llama_cpp.server`` under yoyu's
``llamacpp_python_server``) or a ``llama-server`` binary. Both run under
``engine_main``, which ends them when the yoyu that started them dies.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from yoyu.backends import llamacpp_build
from yoyu.backends.ports import LOOPBACK
from yoyu.errors import ConfigError, SettingsError

if TYPE_CHECKING:  # `yoyu plan` asks find_engine() without loading the log parser
    from yoyu.backends.llamacpp_log import ReportedBuffers
    from yoyu.backends.protocol import ModelRef

EngineKind = Literal["llama-cpp-python", "llama-server", "vllm"]

# Variables the child inherits. pydantic-settings reads llama-cpp-python's
# settings from the environment (MODEL, PORT, N_CTX... in any case), so the
# parent's environment is filtered, never passed whole.
_INHERITED = {"PATH", "HOME", "USER", "LANG", "TMPDIR", "TEMP", "TMP", "VIRTUAL_ENV", "SYSTEMROOT"}
_INHERITED_PREFIXES = (
    "LC_", "CUDA_", "HIP_", "ROCR_", "GGML_", "LLAMA_", "OMP_", "LD_", "DYLD_",
    "VLLM_", "HF_",  # vLLM's own settings and the Hugging Face cache it reads
)  # fmt: skip

# ggml.h ``enum ggml_type`` ids of KV cache types (the plan's emitter holds the
# same table; backends may not import plan).
_GGML_TYPE_NAMES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0"}
_GGML_TYPE_NAMES |= {20: "iq4_nl", 30: "bf16"}

# llama-cpp-python's server has no flag for these; it runs with the library's value.
_PYTHON_SERVER_IMPLIED: dict[str, object] = {
    "swa_full": True, "n_seq_max": 1, "kv_unified": False,
    "n_cpu_moe": 0,  # ``Llama`` takes no tensor placement: MoE experts go with their layer
    "repack": True,  # nor the CPU's extra buffer types (llama.cpp's --no-repack)
}  # fmt: skip
PYTHON_SERVER_MODULE = "yoyu.backends.llamacpp_python_server"  # llama_cpp.server, leak closed
_RESERVED = {"model", "model_alias", "host", "port", "extra_argv"}
# Unless the settings say otherwise. llama-cpp-python's server turns logits_all on, an
# n_ctx x n_vocab float32 array (32 GiB for Gemma 3 at its trained context) that only
# completion logprobs need. llama-server's --fit would change what was planned, its
# 8 GiB prompt cache and 32 checkpoints per slot would hold memory nobody planned, and
# without -np it serves 4 slots from a unified cache.
# The same values as yoyu.estimate's defaults (a test keeps them equal).
_PYTHON_SERVER_DEFAULTS = {"interrupt_requests": False, "verbose": True, "logits_all": False}
_LLAMA_SERVER_DEFAULTS: dict[str, object] = {
    "ctx_checkpoints": 2,
    "cache_ram_mib": 0,
    "n_seq_max": 1,
}
_LLAMA_SERVER_FIXED = ["--fit", "off", "-lv", "4"]  # -lv 4: buffer sizes, never prompts
_LIBRARY_N_BATCH = 512  # Llama's default n_batch
# llama-cpp-python chat_format names -> llama-server's built-in --chat-template names
_LLAMA_SERVER_TEMPLATES = {
    "llama-2": "llama2",
    "llama-3": "llama3",
    "mistral-instruct": "mistral-v1",
}

_LLAMA_SERVER_VALUE_FLAGS = {
    "n_ctx": "-c", "n_batch": "-b", "n_ubatch": "-ub", "n_threads": "-t",
    "n_threads_batch": "-tb", "n_seq_max": "-np", "seed": "-s", "main_gpu": "-mg",
    "ctx_checkpoints": "--ctx-checkpoints", "cache_ram_mib": "--cache-ram",
    "n_cpu_moe": "--n-cpu-moe",
}  # fmt: skip
_LLAMA_SERVER_SWITCHES = {
    # setting: (flag when the setting differs from llama-server's default, that default)
    "use_mmap": ("--no-mmap", True), "use_mlock": ("--mlock", False),
    "offload_kqv": ("-nkvo", True), "swa_full": ("--swa-full", False),
    "embedding": ("--embeddings", False), "kv_unified": ("--kv-unified", False),
    "repack": ("--no-repack", True),
}  # fmt: skip


@dataclass(frozen=True)
class LlamaCppEngine:
    """Which server program runs the models, and how to call it."""

    kind: EngineKind
    executable: str

    def argv(
        self, model: ModelRef, model_path: Path, port: int, settings: Mapping[str, object]
    ) -> list[str]:
        """The full command line for one model on ``port``."""
        _reject_reserved(settings)
        extra = [str(arg) for arg in _as_list(settings.get("extra_argv", []))]
        # Through engine_main, which ends the server if this process dies (see there).
        if self.kind == "llama-server":
            head = [*_watched_by(sys.executable), "--exec", self.executable]
            head += ["-m", str(model_path), "--alias", model.id]
            head += ["--host", LOOPBACK, "--port", str(port)]
            return head + llama_server_flags(settings) + extra
        head = [*_watched_by(self.executable), PYTHON_SERVER_MODULE, "--model", str(model_path)]
        head += ["--model_alias", model.id, "--host", LOOPBACK, "--port", str(port)]
        return head + python_server_flags(settings) + extra

    def reported_buffers(self, log_text: str, port: int) -> ReportedBuffers:
        """llama.cpp prints one line per buffer it allocates (see ``llamacpp_log``)."""
        from yoyu.backends.llamacpp_log import parse_buffer_sizes

        return parse_buffer_sizes(log_text)

    def metrics_url(self, port: int) -> str | None:
        """None: llama-server's ``/metrics`` counts tokens and requests but no longer says
        how full its KV cache is, and llama-cpp-python's server has no such endpoint."""
        return None


def watched_program(argv: Sequence[str]) -> list[str]:
    """``argv`` run under ``engine_main``'s watch: it ends when this process dies."""
    return [*_watched_by(sys.executable), "--exec", *argv]


def _watched_by(python: str) -> list[str]:
    return [python, "-m", "yoyu.backends.engine_main", str(os.getpid())]


def find_engine(server_binary: str | None = None) -> LlamaCppEngine:
    """A configured ``llama-server`` first, then one on PATH, then the one ``yoyu engine
    install`` built for this llama-cpp-python, then llama-cpp-python's own server."""
    if server_binary:
        return LlamaCppEngine("llama-server", server_binary)
    found = llamacpp_build.found_program("llama-server")
    if found:
        return LlamaCppEngine("llama-server", found)
    return python_engine()


def choose_engine(name: str | None, server_binary: str | None = None) -> LlamaCppEngine:
    """The engine a ``[backends.X] engine = "..."`` names (``None``: ``find_engine``'s
    order), so a user with llama-server installed can still ask for the Python one."""
    if name is None:
        return find_engine(server_binary)
    if name == "llama-cpp-python" and server_binary is None:
        return python_engine()
    if name == "llama-cpp-python":
        raise ConfigError("engine llama-cpp-python takes no server_binary; remove one of them")
    if name != "llama-server":
        raise ConfigError(f"unknown engine {name!r}; use llama-server or llama-cpp-python")
    found = find_engine(server_binary)
    if found.kind != "llama-server":
        raise ConfigError(
            "engine llama-server asked for, but none is configured, on PATH or built; "
            "run `yoyu engine install` or set server_binary"
        )
    return found


def python_engine() -> LlamaCppEngine:
    """llama-cpp-python's server under this interpreter."""
    return LlamaCppEngine("llama-cpp-python", sys.executable)


def python_server_flags(settings: Mapping[str, object]) -> list[str]:
    """``--name value`` for every setting, as llama-cpp-python's argparse expects."""
    if settings.get("rpc"):
        raise SettingsError(
            "a model split over yoyu nodes runs on llama-server, not llama-cpp-python's "
            "server; run `yoyu engine install` or configure server_binary"
        )
    flags: list[str] = []
    merged = {**_PYTHON_SERVER_DEFAULTS, "n_outputs_max": _outputs_max(settings), **settings}
    for name, value in merged.items():
        if name in _RESERVED or _implied_by_python_server(name, value):
            continue
        flags += [f"--{name}", *_python_flag_values(value)]
    return flags


def _outputs_max(settings: Mapping[str, object]) -> object:
    """One output per ubatch, unless every token's logits or embedding is wanted
    (the rule of llama-server and of yoyu's plans; see llamacpp_python_server)."""
    if settings.get("logits_all") or settings.get("embedding"):
        return settings.get("n_batch", _LIBRARY_N_BATCH)
    return 1


def _implied_by_python_server(name: str, value: object) -> bool:
    if name not in _PYTHON_SERVER_IMPLIED:
        return False
    if value == _PYTHON_SERVER_IMPLIED[name]:
        return True
    raise SettingsError(
        f"llama-cpp-python's server cannot set {name}={value!r} (it always runs with "
        f"{_PYTHON_SERVER_IMPLIED[name]!r}); configure a llama-server binary for this setting"
    )


def _python_flag_values(value: object) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, dict):
        return [json.dumps(value)]
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return [str(value)]


def llama_server_flags(settings: Mapping[str, object]) -> list[str]:
    """llama-server's flags (llama.cpp ``common/arg.cpp``) for ``Llama``-named settings."""
    flags: list[str] = list(_LLAMA_SERVER_FIXED)
    for name, value in {**_LLAMA_SERVER_DEFAULTS, **settings}.items():
        if name in _RESERVED:
            continue
        flags += _llama_server_flag(name, value)
    return flags


def _llama_server_flag(name: str, value: object) -> list[str]:
    if name in _LLAMA_SERVER_VALUE_FLAGS:
        return [_LLAMA_SERVER_VALUE_FLAGS[name], str(value)]
    if name in _LLAMA_SERVER_SWITCHES:
        flag, default = _LLAMA_SERVER_SWITCHES[name]
        return [] if bool(value) == default else [flag]
    if name == "n_gpu_layers":
        return ["-ngl", "all" if value == -1 else str(value)]
    if name in ("type_k", "type_v"):
        return ["-ctk" if name == "type_k" else "-ctv", _ggml_type_name(value)]
    if name == "flash_attn":
        return ["-fa", "on" if value else "off"]
    if name == "chat_format":
        # A built-in name is rendered by llama.cpp's own templates; with Jinja on (its
        # default) the name would be read as a template's text ("gemma": 3 tokens).
        template = _LLAMA_SERVER_TEMPLATES.get(str(value), str(value))
        return ["--no-jinja", "--chat-template", template]
    if name == "n_outputs_max":
        return []  # llama-server sets it itself from -np and --embeddings, by the same rule
    if name == "logits_all":
        if value:
            raise SettingsError(
                "llama-server keeps no array of every token's logits; remove logits_all "
                "(it is a llama-cpp-python setting)"
            )
        return []
    if name == "tensor_split":
        return ["-ts", ",".join(f"{float(str(share)):g}" for share in _as_list(value))]
    if name == "rpc":  # the rpc-servers (yoyu node) that hold part of the model, in order
        return ["--rpc", ",".join(str(endpoint) for endpoint in _as_list(value))]
    known = sorted({*_LLAMA_SERVER_VALUE_FLAGS, *_LLAMA_SERVER_SWITCHES, "n_gpu_layers", "rpc"})
    raise SettingsError(
        f"llama-server has no flag for setting {name!r}; use one of {', '.join(known)}, "
        "type_k, type_v, flash_attn, tensor_split, logits_all (false), or pass it in extra_argv"
    )


def _ggml_type_name(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and value in _GGML_TYPE_NAMES:
        return _GGML_TYPE_NAMES[value]
    raise SettingsError(f"unknown KV cache type {value!r}; use a name such as f16 or q8_0")


def _as_list(value: object) -> list[object]:
    if isinstance(value, (list, tuple)):
        return list(value)
    raise SettingsError(f"expected a list of values, got {value!r}")


def _reject_reserved(settings: Mapping[str, object]) -> None:
    clashes = sorted(set(settings) & (_RESERVED - {"extra_argv"}))
    if clashes:
        raise SettingsError(
            f"settings {', '.join(clashes)} are chosen by yoyu (model path, alias, "
            "127.0.0.1 and a free port); remove them"
        )


def engine_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment minus anything the engine would read as a setting, plus
    the way to this very yoyu when it runs from a source tree (see ``yoyu_source_path``)."""
    source = os.environ if environ is None else environ
    kept = {
        name: value
        for name, value in source.items()
        if name in _INHERITED or name.startswith(_INHERITED_PREFIXES)
    }
    return {**kept, **yoyu_source_path(), "PYTHONUNBUFFERED": "1"}


def yoyu_source_path() -> dict[str, str]:
    """``PYTHONPATH`` naming the folder this yoyu package sits in, unless it is installed.

    Every engine runs under ``python -m yoyu.backends.engine_main``, so the child must
    import yoyu: the parent's own, not whichever one its interpreter finds. Run from a
    checkout with ``PYTHONPATH=src`` (no install at all, as on a GPU machine with no
    network), the filtered environment left the child without yoyu; from a second
    worktree it imported the editable install's tree instead. An installed yoyu needs
    nothing, and its site-packages must not go ahead of the standard library.
    """
    root = Path(__file__).resolve().parents[2]
    if {"site-packages", "dist-packages"} & set(root.parts):
        return {}
    return {"PYTHONPATH": str(root)}
