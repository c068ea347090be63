"""How much memory a managed model will take, and the settings that make it so.

The plan is a pure function of (model, machine, settings, engine); this module
reads the GGUF header, probes the machine once, plans for the engine the
model's backend really starts, and keeps the answer, so admission costs a
dictionary lookup after the first request. The load settings it returns are
the plan's (``engine_load_settings``: the engine-side choices such as
llama-cpp-python's ``logits_all`` off or llama-server's checkpoints) under
the user's own ``settings``, so what is admitted is what is loaded. A file
without a chat template is loaded with its family's format (logged once).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from yoyu.backends.llamacpp_python_server import template_problem
from yoyu.errors import ConfigError
from yoyu.estimate.engine import LLAMA_SERVER_NAME, VLLM_NAME
from yoyu.estimate.types import RunSettings
from yoyu.gateway.config import ServedModel
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.models.chat_format import choose_chat_format
from yoyu.models.resolve import read_model_path
from yoyu.node.client import read_nodes
from yoyu.node.rpc_protocol import read_rpc_devices
from yoyu.node.status import with_nodes, with_rpc_servers
from yoyu.plan.emit.llama_cpp import engine_load_settings, rpc_endpoints
from yoyu.plan.planner import make_plan
from yoyu.plan.settings import (
    for_engine,
    is_memory_setting,
    settings_from_load_settings,
    with_serving_slots,
)
from yoyu.plan.types import PlanRequest

DEFAULT_CTX = 4096
API_KEY_ENV = "YOYU_API_KEY"  # the key `yoyu node` workers were started with
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sizing:
    """What a model needs, the plan's verdict here (``None``: not planned), and the
    settings to load it with (the model's own when it was not planned)."""

    need_bytes: int
    verdict: str | None
    source: str  # "config" (the user's memory = ...) or "plan"
    load_settings: Mapping[str, Any] = field(default_factory=dict)
    n_ctx: int | None = None  # the context each sequence gets, when planned
    longest_token_bytes: int | None = None  # a prompt of N bytes is >= N / this tokens
    components: Mapping[str, int] = field(default_factory=dict)  # the plan's bytes by part


class PlanSizer:
    """``size(model, engine)`` from the config's ``memory`` or the plan; thread-safe, cached."""

    def __init__(self, machine: Callable[[], Machine] = probe_machine) -> None:
        self._machine_source = machine
        self._machine: Machine | None = None
        self._cache: dict[tuple[str, str], Sizing] = {}
        self._lock = threading.Lock()

    def size(self, model: ServedModel, engine_kind: str) -> Sizing:
        key = (model.id, engine_kind)
        with self._lock:
            cached = self._cache.get(key)
            if cached is None:
                cached = self._size(model, engine_kind)
                self._cache[key] = cached
            return cached

    def _size(self, model: ServedModel, engine_kind: str) -> Sizing:
        if model.memory_bytes is not None:
            return Sizing(model.memory_bytes, None, "config", model.settings)
        if model.path is None:
            return Sizing(0, None, "config", model.settings)
        if self._machine is None:
            self._machine = self._machine_source()
        machine = self._with_nodes(model, engine_kind)
        spec = read_model_path(model.path)
        settings = served_settings(model.settings, spec.context_length, engine_kind)
        plan = make_plan(spec, machine, PlanRequest(settings=settings, propose_moves=False))
        planned = {**engine_load_settings(plan.settings), **_passed_through(model, engine_kind)}
        if endpoints := rpc_endpoints(machine):
            planned["rpc"] = endpoints
        problem = template_problem(engine_kind, spec.chat_template_text)
        chat = choose_chat_format(spec, engine_kind, problem)
        if chat.chat_format is not None and "chat_format" not in planned:
            planned["chat_format"] = chat.chat_format
        if chat.notice is not None:
            log.warning("%s: %s", model.id, chat.notice)
        return Sizing(
            plan.estimate.total_bytes, plan.verdict.value, "plan", planned,
            n_ctx=_cells_per_sequence(plan.estimate.n_ctx, plan.settings),
            longest_token_bytes=spec.longest_token_bytes,
            components=plan.to_dict()["totals"],
        )  # fmt: skip

    def _with_nodes(self, model: ServedModel, engine_kind: str) -> Machine:
        """This machine, with the model's `yoyu node` workers and rpc-servers as they are
        now."""
        assert self._machine is not None
        if not model.nodes and not model.rpc:
            return self._machine
        if engine_kind != LLAMA_SERVER_NAME:
            raise ConfigError(
                f"{model.id} is split over nodes or rpc-servers, which needs llama-server; its "
                "backend runs "
                f"{engine_kind} (run `yoyu engine install` or set server_binary)"
            )
        nodes = read_nodes(model.nodes, os.environ.get(API_KEY_ENV))
        devices = [device for endpoint in model.rpc for device in read_rpc_devices(endpoint)]
        return with_rpc_servers(with_nodes(self._machine, nodes), devices)


def _passed_through(model: ServedModel, engine_kind: str) -> dict[str, object]:
    """The served settings the engine gets as written: all of them for llama.cpp (they are
    its own names), for vLLM those the plan did not already translate to its flags."""
    if engine_kind != VLLM_NAME:
        return dict(model.settings)
    return {key: value for key, value in model.settings.items() if not is_memory_setting(key)}


def served_settings(
    settings: Mapping[str, object], context_length: int | None, engine_kind: str
) -> RunSettings:
    """The estimator's view of a served model's load settings (``Llama`` names),
    planned for the engine that will serve it.

    A context the settings do not give is 4096 tokens (or the model's own, if
    smaller), as ``yoyu run``'s; slots the settings do not give are the
    engine's for serving (``with_serving_slots``); every other memory setting
    is read as given.
    """
    n_ctx = min(DEFAULT_CTX, context_length or DEFAULT_CTX)
    base = with_serving_slots(for_engine(RunSettings(n_ctx=n_ctx), engine_kind), settings)
    return settings_from_load_settings(settings, base)


def _cells_per_sequence(n_ctx: int, settings: RunSettings) -> int:
    """The longest prompt plus answer one request can hold: the whole cache when the
    slots share it, else the slot's share."""
    return n_ctx if settings.kv_unified else n_ctx // max(1, settings.n_parallel)
