"""The MCP tools: each one a thin call into ``GatewayService`` or the planner.

Nothing here routes, loads or decides: ``generate`` and ``chat`` go through
the same ``GatewayService.chat``/``complete`` the OpenAI endpoint uses (so
aliases, fallbacks, privacy and admission apply alike), ``plan_model`` is
``make_plan`` on a resolved model, ``fit_models`` is ``rank_catalog`` (what ``yoyu fit``
prints). Parameters carry their JSON-schema
descriptions; the SDK builds the tools' input and output schemas from these
signatures and the result dataclasses.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from yoyu.backends.protocol import ChatMessage, ChatRequest, CompletionRequest
from yoyu.errors import UnknownModelError, YoyuError
from yoyu.gateway.service import Answer, GatewayService
from yoyu.gateway.sizing import served_settings
from yoyu.machine.bandwidth import with_measured_bandwidth
from yoyu.machine.presets import load_machine
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.mcp.results import (
    BackendReport,
    GenerateResult,
    HealthResult,
    MemoryResult,
    ModelsResult,
    SwitchResult,
)
from yoyu.models import resolve_model
from yoyu.models.catalog import catalog_entries, relatives_of
from yoyu.monitor.system import SystemReader, system_reader
from yoyu.plan.planner import make_plan
from yoyu.plan.ranking import FitFilters, fit_request, rank_catalog
from yoyu.plan.types import PlanRequest
from yoyu.units import format_bytes

DEFAULT_MAX_TOKENS = 512

ModelName = Annotated[
    str | None,
    Field(
        description="A served model, route or alias (see list_models); "
        "default: the first served model."
    ),
]
MaxTokens = Annotated[int, Field(ge=1, description="The most tokens to generate.")]
Temperature = Annotated[
    float | None,
    Field(ge=0, le=2, description="Sampling temperature; default: the engine's own."),
]
Private = Annotated[
    bool,
    Field(
        description="Keep the request on this machine: only local models may answer, "
        "never a remote API (use it for private data)."
    ),
]


class Turn(BaseModel):
    """One message of a conversation, as in OpenAI's chat API."""

    role: Literal["system", "user", "assistant"] = Field(description="Who speaks.")
    content: str = Field(description="What they say.")


class YoyuTools:
    """The operations behind the tools, bound to one service; blocking, so the SDK
    runs each call in a worker thread."""

    def __init__(
        self,
        service: GatewayService,
        *,
        machine: Callable[[], Machine] = lambda: with_measured_bandwidth(probe_machine()),
        reader: SystemReader | None = None,
    ) -> None:
        self.service = service
        self._probe = machine
        self._machine: Machine | None = None
        self._machine_lock = threading.Lock()
        self._reader = reader or system_reader()

    # -- generation --------------------------------------------------------------

    def generate(
        self,
        prompt: Annotated[str, Field(description="What to ask the model.")],
        model: ModelName = None,
        max_tokens: MaxTokens = DEFAULT_MAX_TOKENS,
        temperature: Temperature = None,
        private: Private = False,
        system: Annotated[
            str | None, Field(description="An optional system message (ignored with raw).")
        ] = None,
        raw: Annotated[
            bool,
            Field(description="Send the prompt as a plain completion, without a chat template."),
        ] = False,
    ) -> GenerateResult:
        """Generate text with a local (or configured fallback) model.

        Hand private or cheap work to a model on this machine; loading happens only
        when memory allows, and the answer says which model really answered.
        """
        name = model or self.default_model()
        if raw:
            request = CompletionRequest(name, prompt, max_tokens, temperature)
            return _generated(self.service.answer(request, private=private))
        turns = (ChatMessage("system", system),) if system else ()
        turns = (*turns, ChatMessage("user", prompt))
        return self._chat(name, turns, max_tokens, temperature, private)

    def chat(
        self,
        messages: Annotated[
            list[Turn], Field(min_length=1, description="The conversation so far, oldest first.")
        ],
        model: ModelName = None,
        max_tokens: MaxTokens = DEFAULT_MAX_TOKENS,
        temperature: Temperature = None,
        private: Private = False,
    ) -> GenerateResult:
        """Continue a conversation with a local (or configured fallback) model."""
        turns = tuple(ChatMessage(turn.role, turn.content) for turn in messages)
        name = model or self.default_model()
        return self._chat(name, turns, max_tokens, temperature, private)

    def _chat(
        self,
        model: str,
        turns: tuple[ChatMessage, ...],
        max_tokens: int,
        temperature: float | None,
        private: bool,
    ) -> GenerateResult:
        request = ChatRequest(model, turns, max_tokens, temperature)
        return _generated(self.service.answer(request, private=private))

    def default_model(self) -> str:
        served = list(self.service.config.served)
        if not served:
            raise UnknownModelError("no model is served; add one with --model PATH.gguf")
        return served[0]

    # -- models ------------------------------------------------------------------

    def list_models(
        self,
        installed: Annotated[
            bool, Field(description="Also list model files found on this machine.")
        ] = True,
    ) -> ModelsResult:
        """List what is served (loaded or not, size, plan verdict), routes, aliases and
        the model files installed on this machine."""
        listing = self.service.list_models(installed=installed)
        served = [entry for entry in listing.served if entry.kind == "model"]
        loaded = [entry.id for entry in served if entry.loaded]
        summary = (
            f"{len(served)} served model(s), {len(loaded)} loaded"
            f"{' (' + ', '.join(loaded) + ')' if loaded else ''}; "
            f"{len(listing.installed)} installed file(s) found"
        )
        default = next(iter(self.service.config.served), None)
        return ModelsResult(summary, default, listing.served, listing.installed)

    def switch_model(
        self,
        alias: Annotated[str, Field(description="The alias to point elsewhere (new or existing).")],
        target: Annotated[str, Field(description="A served model or route it should name.")],
    ) -> SwitchResult:
        """Point an alias at another model, loading that model first through admission.

        When the model does not fit in memory the alias stays as it was.
        """
        loaded = self._load(target)
        change = self.service.switch_alias(alias, target)
        summary = f"{alias} -> {target} (was {change.previous or 'unset'})"
        return SwitchResult(summary, change.alias, change.previous, change.target, loaded)

    def _load(self, target: str) -> bool:
        """Load a managed model as a request would: admission, then a lease released at once."""
        served = self.service.config.served.get(target)
        if served is None or not served.managed:
            return False
        self.service.residency.lease(served).release()  # loaded through admission, then free
        return True

    # -- machine state -----------------------------------------------------------

    def health_check(self) -> HealthResult:
        """Ask each backend whether it answers, how fast, and which models it holds."""
        reports = []
        for status in self.service.health(refresh=True):
            loaded = None if status.remote or not status.ok else self._loaded_on(status.name)
            reports.append(
                BackendReport(
                    status.name,
                    status.ok is True,
                    status.detail,
                    status.remote,
                    status.cooling_down,
                    status.latency_s,
                    loaded,
                )
            )
        failing = [report.name for report in reports if not report.ok]
        summary = f"{len(reports) - len(failing)} of {len(reports)} backend(s) answer" + (
            f"; failing: {', '.join(failing)}" if failing else ""
        )
        return HealthResult(summary, tuple(reports))

    def _loaded_on(self, backend: str) -> tuple[str, ...] | None:
        try:
            return tuple(model.id for model in self.service.backends[backend].loaded_models())
        except YoyuError:
            return None

    def memory_status(self) -> MemoryResult:
        """The monitor's memory reading now, the floor no load may cross, what yoyu's
        models hold, and the guard's thresholds."""
        memory = self.service.memory()
        sample = self._reader.read()
        guard, guard_error = None, None
        try:
            guard = self.service.config.guard.resolve(sample.total_bytes)
        except YoyuError as error:
            guard_error = str(error)
        summary = (
            f"{format_bytes(memory.available_bytes)} available of "
            f"{format_bytes(memory.total_bytes)}; loads keep {format_bytes(memory.floor_bytes)} "
            f"free; yoyu's {len(memory.loaded)} loaded model(s) hold "
            f"{format_bytes(memory.held_bytes)}"
        )
        return MemoryResult(
            summary=summary,
            available_bytes=memory.available_bytes,
            total_bytes=memory.total_bytes,
            floor_bytes=memory.floor_bytes,
            budget_bytes=memory.budget_bytes,
            held_bytes=memory.held_bytes,
            loaded=memory.loaded,
            system=sample,
            guard=guard,
            guard_error=guard_error,
        )

    def plan_model(
        self,
        model: Annotated[
            str,
            Field(
                description="A served model id, a GGUF path, or an installed, Ollama or "
                "catalog name (e.g. qwen3:32b)."
            ),
        ],
        machine: Annotated[
            str | None,
            Field(
                description="A machine preset (e.g. mac-studio-m2-max-32g) or machine TOML "
                "file; default: this machine."
            ),
        ] = None,
        ctx: Annotated[
            int | None, Field(ge=0, description="Context tokens; 0 = the model's own.")
        ] = None,
        kv_type: Annotated[str, Field(description="KV cache type: f16, q8_0, q4_0...")] = "f16",
    ) -> dict[str, Any]:
        """The planner's verdict for a model on this machine or a preset: memory per
        device, layers on the GPU, risk, predicted speed, and the moves that would make
        it fit."""
        served = self.service.config.served.get(model)
        spec = resolve_model(str(served.path) if served and served.path else model)
        # A served model is planned with the settings it is loaded with, as admission sizes it.
        settings = served_settings(
            served.settings if served else {}, spec.context_length,
            self.service.planning_engine(model),
        )  # fmt: skip
        n_ctx = settings.n_ctx if ctx is None else ctx
        settings = dataclasses.replace(settings, n_ctx=n_ctx, type_k=kv_type, type_v=kv_type)
        target = load_machine(machine) if machine else self._this_machine()
        plan = make_plan(spec, target, PlanRequest(settings=settings), catalog=relatives_of(spec))
        return plan.to_dict()

    def fit_models(
        self,
        machine: Annotated[
            str | None,
            Field(
                description="A machine preset (e.g. linux-rtx4090-24g) or machine TOML file; "
                "default: this machine."
            ),
        ] = None,
        use: Annotated[
            Literal["chat", "code", "reasoning", "embedding", "vision"] | None,
            Field(description="Only models for this use."),
        ] = None,
        family: Annotated[
            str | None, Field(description="Only this Ollama family, e.g. qwen3 or llama3.1.")
        ] = None,
        min_ctx: Annotated[
            int, Field(ge=0, description="Only models that hold this many tokens, placed at it.")
        ] = 0,
        max_size_bytes: Annotated[
            int | None, Field(ge=1, description="Only downloads up to this many bytes.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="The most rows to return.")] = 20,
    ) -> dict[str, Any]:
        """Which catalog models run on this machine or a preset, best first: for each
        model and quant the placement (GPU, MoE experts on the CPU, some layers on the
        CPU, CPU only), the largest context that keeps the headroom, predicted decode and
        prefill speed, verdict and risk. Only the models that run are listed."""
        target = load_machine(machine) if machine else self._this_machine()
        filters = FitFilters(family=family, use=use, min_ctx=min_ctx, max_size_bytes=max_size_bytes)
        report = rank_catalog(catalog_entries(), target, fit_request(), filters).to_dict()
        report["models"] = [row for row in report["models"] if row["runs"]][:limit]
        return report

    def _this_machine(self) -> Machine:
        with self._machine_lock:
            if self._machine is None:
                self._machine = self._probe()
            return self._machine


def _generated(answer: Answer) -> GenerateResult:
    response = answer.response
    return GenerateResult(
        text=response.text,
        model=answer.route,
        requested=answer.requested,
        backend=answer.backend,
        finish_reason=response.finish_reason,
        prompt_tokens=response.usage.prompt_tokens,
        completion_tokens=response.usage.completion_tokens,
        elapsed_s=response.elapsed_s,
        fallbacks=answer.fallbacks,
    )
