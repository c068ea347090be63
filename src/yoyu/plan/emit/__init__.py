"""Engine settings from a plan's ``RunSettings``: one module per engine.

``emit_settings(target, ...)`` is the one door to them: the settings as JSON and
as text to paste, for ``yoyu plan --emit`` and the dashboard's Plan page alike.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from yoyu.errors import SettingsError
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec
from yoyu.plan.types import Plan, PlanRequest

EMIT_TARGETS = ("llama-server", "llama-cpp-python", "ollama", "vllm", "exo", "rpc")
CLUSTER_TARGETS = ("exo", "rpc")


@dataclass(frozen=True)
class Emitted:
    """Launch settings for one engine: as data (``--json``) and as text to paste."""

    data: dict[str, Any]
    text: str


def emit_settings(
    target: str, plan: Plan, spec: ModelSpec, ref: str, machine: Machine, request: PlanRequest
) -> Emitted:
    """The launch settings of ``plan`` for ``target`` (one of ``EMIT_TARGETS``)."""
    from yoyu.plan.emit.cluster import exo_commands, rpc_commands
    from yoyu.plan.emit.llama_cpp import llama_cpp_python_kwargs, llama_server_argv
    from yoyu.plan.emit.ollama import ollama_config
    from yoyu.plan.emit.vllm import vllm_command

    if target not in EMIT_TARGETS:
        raise SettingsError(f"unknown --emit {target!r}; choose one of {', '.join(EMIT_TARGETS)}")
    path = spec.paths[0] if spec.paths else ref
    if target in CLUSTER_TARGETS and not plan.nodes:
        raise SettingsError(f"--emit {target} needs a cluster plan: give two or more --node")
    if target == "llama-server":
        argv = llama_server_argv(plan.settings, path)
        return Emitted({"target": target, "argv": argv}, shlex.join(argv) + "\n")
    if target == "llama-cpp-python":
        kwargs = {"model_path": path, **llama_cpp_python_kwargs(plan.settings)}
        text = "Llama(\n" + "".join(f"    {k}={v!r},\n" for k, v in kwargs.items()) + ")\n"
        return Emitted({"target": target, "kwargs": kwargs}, text)
    if target == "ollama":
        config = ollama_config(plan, path, machine)
        return Emitted({"target": target, **config.to_dict()}, config.render())
    if target == "vllm":
        command = vllm_command(plan, spec, ref, machine, request.thresholds.gpu_margin_bytes)
        return Emitted({"target": target, **command.to_dict()}, command.render())
    commands = rpc_commands(plan, path) if target == "rpc" else exo_commands(plan)
    return Emitted({"target": target, **commands.to_dict()}, commands.render())
