"""A plan as Ollama settings: a Modelfile and the server's environment.

Ollama splits the settings in two places. Per model, a Modelfile's
``PARAMETER`` lines (``num_gpu`` = layers offloaded, counting the output
layer like llama.cpp's ``n_gpu_layers``; ``num_ctx`` = context *per request
slot*, which Ollama multiplies by ``OLLAMA_NUM_PARALLEL``; ``num_batch``;
``num_thread``). Per server, ``OLLAMA_*`` variables (ollama envconfig):
``OLLAMA_FLASH_ATTENTION``, ``OLLAMA_KV_CACHE_TYPE`` (f16, q8_0, q4_0; only
honoured with flash attention), ``OLLAMA_NUM_PARALLEL``,
``OLLAMA_MAX_LOADED_MODELS``, written as a systemd drop-in for the
``ollama.service`` unit of the Linux installer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yoyu.machine.types import Machine
from yoyu.plan.types import Plan

DROPIN_PATH = "/etc/systemd/system/ollama.service.d/yoyu.conf"
OLLAMA_KV_TYPES = ("f16", "q8_0", "q4_0")


@dataclass(frozen=True)
class OllamaConfig:
    modelfile: str
    environment: dict[str, str]
    dropin_path: str
    dropin: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "modelfile": self.modelfile,
            "environment": dict(self.environment),
            "dropin_path": self.dropin_path,
            "dropin": self.dropin,
        }

    def render(self) -> str:
        return (
            f"# Modelfile (ollama create NAME -f Modelfile)\n{self.modelfile}\n"
            f"# {self.dropin_path} (then: systemctl daemon-reload && systemctl restart ollama)\n"
            f"{self.dropin}"
        )


def ollama_config(plan: Plan, source: str, machine: Machine) -> OllamaConfig:
    """Modelfile and environment that reproduce ``plan``; ``source`` is the FROM line."""
    environment = ollama_environment(plan)
    return OllamaConfig(
        modelfile=ollama_modelfile(plan, source, machine),
        environment=environment,
        dropin_path=DROPIN_PATH,
        dropin=systemd_dropin(environment),
    )


def ollama_modelfile(plan: Plan, source: str, machine: Machine) -> str:
    settings = plan.settings
    parameters = {
        "num_gpu": plan.n_gpu_layers,
        "num_ctx": plan.estimate.n_ctx // max(1, settings.n_parallel),
        "num_batch": settings.n_batch,
        "num_thread": thread_count(machine),
    }
    lines = [f"FROM {source}", *(f"PARAMETER {key} {value}" for key, value in parameters.items())]
    return "\n".join([*_experts_comment(plan), *lines]) + "\n"


def _experts_comment(plan: Plan) -> list[str]:
    """Ollama has no setting that keeps MoE experts on the CPU (llama.cpp's --n-cpu-moe):
    ``num_gpu`` offloads whole layers. Say so where a user reads the Modelfile."""
    if plan.settings.n_cpu_moe:
        return [
            f"# The plan keeps the MoE experts of the first {plan.settings.n_cpu_moe} blocks on "
            "the CPU; Ollama cannot,",
            "# so num_gpu below offloads whole layers instead: plan with --engine ollama for "
            "its own figures.",
        ]
    move = next((move for move in plan.moves if move.action == "experts_on_cpu"), None)
    if move is None:
        return []
    return [
        "# Ollama offloads whole layers (num_gpu). This MoE model keeps every layer on the GPU "
        "with llama-server:",
        f"# {move.description}",
    ]


def ollama_environment(plan: Plan) -> dict[str, str]:
    """Server variables; one loaded model keeps the plan's memory figures true."""
    settings = plan.settings
    kv_type = settings.type_k if settings.type_k in OLLAMA_KV_TYPES else "f16"
    return {
        "OLLAMA_FLASH_ATTENTION": "1" if settings.flash_attn else "0",
        "OLLAMA_KV_CACHE_TYPE": kv_type,
        "OLLAMA_NUM_PARALLEL": str(settings.n_parallel),
        "OLLAMA_MAX_LOADED_MODELS": "1",
    }


def systemd_dropin(environment: dict[str, str]) -> str:
    lines = ["[Service]", *(f'Environment="{key}={value}"' for key, value in environment.items())]
    return "\n".join(lines) + "\n"


def thread_count(machine: Machine) -> int:
    """Physical (performance) cores: llama.cpp's own default, hyperthreads do not help decode."""
    return machine.cpu.performance_cores or machine.cpu.cores
