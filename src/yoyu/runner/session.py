"""``ModelRun``: one model loaded, asked, measured and unloaded, the same way every time.

    with ModelRun(RunConfig("model.gguf")) as run:     # resolve, plan, sample, load
        for chunk in run.stream(messages):             # marks, streams, settles
            print(chunk.content or "", end="")
        run.last_turn.profile                          # the six phase readings

The order of effects, each marked in the sampler (so each has an exact reading)::

    resolve + plan -> store.create_run -> sampler.start, recorder.start -> watchers enter
    -> load_start, backend.load, load_end
    -> per answer: generation_start, stream, generation_end, settle, stabilized
    -> watchers exit -> unload, unloaded -> sampler.stop -> last samples/events, result stored

The recorder commits samples and marks once a second while the run goes on
(``monitor.recorder``): a run killed mid-way keeps them up to its last second.

A failed load is stored too (its result names the error) before the error
goes on to the caller. The plan is made for the engine the backend starts
(``Backend.engine_kind``), so the prediction counts what that program
holds. The backend is the managed llama.cpp server unless one is given; a
backend made here is closed here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from yoyu.backends.llamacpp_log import ReportedBuffers
from yoyu.backends.llamacpp_python_server import template_problem
from yoyu.backends.llamacpp_server import LlamaCppServerBackend
from yoyu.backends.protocol import (
    Backend,
    ChatChunk,
    ChatMessage,
    ChatRequest,
    LoadedModel,
    ModelRef,
    summarize_stream,
)
from yoyu.backends.vllm_metrics import VllmMetricsReader
from yoyu.errors import ModelNotFoundError, YoyuError
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import MemoryEstimate
from yoyu.machine.bandwidth import with_measured_bandwidth
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.models.chat_format import choose_chat_format
from yoyu.models.resolve import resolve_model
from yoyu.models.spec import ModelSpec
from yoyu.monitor.phases import (
    FIRST_TOKEN,
    GENERATION_END,
    GENERATION_START,
    LOAD_END,
    LOAD_START,
    STABILIZED,
    phase_profile,
    settling_figures,
    stabilize,
)
from yoyu.monitor.recorder import RunRecorder
from yoyu.monitor.sampler import Sampler
from yoyu.monitor.store import RunStore
from yoyu.monitor.types import EngineSample
from yoyu.plan.emit.llama_cpp import rpc_endpoints
from yoyu.plan.settings import for_engine
from yoyu.runner.options import RunConfig
from yoyu.runner.prediction import Prediction, engine_settings, predict
from yoyu.runner.result import TurnResult, measured_speed
from yoyu.runner.watchers import WatchContext, Watcher

_NODE_BUFFERS = ("model", "kv", "compute")  # what llama.cpp puts on an RPC device

UNLOAD = "unload"
UNLOADED = "unloaded"


class ModelRun:
    """A model's life in one backend under the sampler; see the module docstring."""

    def __init__(
        self,
        config: RunConfig,
        *,
        mode: str = "run",
        backend: Backend | None = None,
        store: RunStore | None = None,
        machine: Machine | None = None,
        watchers: Sequence[Watcher] = (),
        seed: int | None = None,
        backend_factory: Callable[[], Backend] = LlamaCppServerBackend,
    ) -> None:
        self.config = config
        self.mode = mode
        self._owns_backend = backend is None
        self._backend_factory = backend_factory
        self._backend = backend
        self._store = store
        self._owns_store = store is None
        self._machine = machine
        self._watchers = watchers
        self._seed = seed
        self._exits = contextlib.ExitStack()
        self.spec: ModelSpec | None = None
        self.prediction: Prediction | None = None
        self.load_settings: dict[str, Any] = {}
        self._node_plan: MemoryEstimate | None = None  # per device, when split over nodes
        self.loaded: LoadedModel | None = None
        self.run_id: int | None = None
        self.turns: list[TurnResult] = []
        self.notices: list[str] = []  # one line each, for the user (the CLI prints them)
        self.sampler: Sampler | None = None
        self._engine_metrics: VllmMetricsReader | None = None
        self._recorder: RunRecorder | None = None
        self._origin_t_s = 0.0
        self._opened = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> LoadedModel:
        """Resolve, plan, start sampling and load; on failure store the run and re-raise."""
        if self._opened:
            raise YoyuError("this run was opened already; start a new ModelRun")
        self._opened = True
        self.spec = resolve_model(self.config.model)
        machine = self._machine or with_measured_bandwidth(probe_machine())
        settings = for_engine(self.config.settings, self.backend.engine_kind)
        self.prediction = predict(
            self.spec, machine, settings, self.config.n_gpu_layers,
            force=self.config.force, free_bytes=self.config.free_bytes,
            thresholds=self.config.thresholds,
        )  # fmt: skip
        self.load_settings = engine_settings(self.prediction.settings, self._seed)
        if endpoints := rpc_endpoints(machine):  # a split over `yoyu node` workers
            self.load_settings["rpc"] = endpoints
            self._node_plan = estimate_memory(self.spec, machine, self.prediction.settings)
        self._choose_chat_format(self.spec, settings.engine)
        store = self._store = self._store or RunStore()
        self.run_id = store.create_run(
            self.spec.name, self.mode, self._stored_settings(), self._stored_prediction()
        )
        try:
            return self._load(store)
        except BaseException as error:
            self.close(result={"error": str(error)})
            raise

    def _choose_chat_format(self, spec: ModelSpec, engine_kind: str) -> None:
        """A file without a chat template gets its family's format, and the user is told."""
        if "chat_format" in self.load_settings:
            return
        problem = template_problem(engine_kind, spec.chat_template_text)
        choice = choose_chat_format(spec, engine_kind, problem)
        if choice.chat_format is not None:
            self.load_settings["chat_format"] = choice.chat_format
        if choice.notice is not None:
            self.notices.append(choice.notice)

    def _load(self, store: RunStore) -> LoadedModel:
        backend = self.backend
        self.sampler = Sampler(
            backend.pids, rate_hz=self.config.rate_hz, engine=self._engine_sample
        ).start()
        assert self.run_id is not None and self.spec is not None
        # written as they come, so a run killed mid-way keeps its evidence
        self._recorder = RunRecorder(store, self.run_id, self.sampler).start()
        model = ModelRef(_model_id(self.spec), _model_path(self.spec))
        prediction = self.prediction
        host_bytes = prediction.total_bytes - prediction.gpu_bytes if prediction else None
        context = WatchContext(backend, self.sampler, store, self.run_id, model.id, host_bytes)
        for watcher in self._watchers:
            self._exits.enter_context(watcher(context))
        self._origin_t_s = self.sampler.mark(LOAD_START, model.id).t_s
        self.loaded = backend.load(model, self.load_settings)
        if self.loaded.metrics_url is not None:
            self._engine_metrics = VllmMetricsReader(self.loaded.metrics_url)
        self.sampler.mark(LOAD_END, f"{self.loaded.load_s or 0:.3f} s")
        return self.loaded

    def _engine_sample(self) -> EngineSample | None:
        """The engine's own gauge (vLLM's KV pool fill) once it is loaded, for the sampler."""
        reader = self._engine_metrics
        return reader.engine_sample() if reader is not None else None

    def _stop_engine_metrics(self) -> None:
        reader, self._engine_metrics = self._engine_metrics, None
        if reader is not None:
            reader.close()

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self._backend_factory()
        return self._backend

    def close(self, result: Mapping[str, Any] | None = None) -> None:
        """Leave the watchers, unload (the engine is gone after this), store everything."""
        if self._closed:
            return
        self._closed = True
        try:
            self._exits.close()
        finally:
            self._unload()
            self._store_run(result)

    def _unload(self) -> None:
        if self._backend is None:
            return
        sampler = self.sampler
        if self.loaded is not None:
            if sampler is not None:
                sampler.mark(UNLOAD, self.loaded.id)
            self._stop_engine_metrics()
            self._backend.unload(self.loaded.id)
            if sampler is not None:
                sampler.mark(UNLOADED, self.loaded.id)
        if self._owns_backend:
            self._backend.close()

    def _store_run(self, result: Mapping[str, Any] | None) -> None:
        store, sampler = self._store, self.sampler
        try:
            if sampler is not None:
                sampler.stop()
            if self._recorder is not None:
                self._recorder.stop()  # the samples and marks since its last commit
            if store is not None and self.run_id is not None:
                store.finish_run(self.run_id, dict(result or self.summary()))
        finally:
            if store is not None and self._owns_store:
                store.close()

    def __enter__(self) -> ModelRun:
        """Open unless already opened (a caller may open first, e.g. under a spinner)."""
        if not self._opened:
            self.open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close({"error": str(error)} if error is not None else None)

    # -- answers -------------------------------------------------------------

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> Iterator[ChatChunk]:
        """Yield the answer's chunks as they come; afterwards settle and profile the turn.

        Leaving early still marks the generation's end (the profile then has
        no settled reading); ``last_turn`` is set only for a finished answer.
        """
        sampler, loaded = self._require_loaded()
        request = ChatRequest(
            loaded.id, tuple(messages), max_tokens=max_tokens, temperature=temperature,
            seed=seed, extra=dict(extra or {}),
        )  # fmt: skip
        chunks: list[ChatChunk] = []
        sampler.mark(GENERATION_START, f"turn {len(self.turns)}")
        sampler.engine_at_full_rate(True)
        try:
            for chunk in self.backend.stream_chat(request):
                chunks.append(chunk)
                yield chunk
                if len(chunks) == 1:  # after the caller has it: the reading costs ~10 ms
                    sampler.mark(FIRST_TOKEN)
        finally:
            sampler.engine_at_full_rate(False)
            sampler.mark(GENERATION_END, f"{len(chunks)} chunks")
        self.turns.append(self._finish_turn(sampler, chunks))

    def ask(
        self,
        messages: Sequence[ChatMessage],
        on_chunk: Callable[[ChatChunk], None] | None = None,
        **request: Any,
    ) -> TurnResult:
        """``stream`` to the end (each chunk to ``on_chunk``); the turn's result."""
        for chunk in self.stream(messages, **request):
            if on_chunk is not None:
                on_chunk(chunk)
        return self.turns[-1]

    @property
    def last_turn(self) -> TurnResult | None:
        return self.turns[-1] if self.turns else None

    def _finish_turn(self, sampler: Sampler, chunks: Sequence[ChatChunk]) -> TurnResult:
        policy = self.config.settle
        settled = stabilize(
            lambda: settling_figures(sampler.sample_now()),
            policy.tolerance_bytes, policy.window_s, policy.cap_s,
        )  # fmt: skip
        sampler.mark(STABILIZED, f"{settled.waited_s:.2f} s")
        summary = summarize_stream(chunks)
        index = len(self.turns)
        return TurnResult(
            index=index,
            text=summary.text,
            usage=summary.usage,
            speed=measured_speed(summary),
            first_token_s=summary.first_token_s,
            finish_reason=summary.finish_reason,
            profile=phase_profile(sampler.samples(), sampler.events(), turn=index),
            origin_t_s=self._origin_t_s,
            settled=settled.settled,
        )

    def _require_loaded(self) -> tuple[Sampler, LoadedModel]:
        if self.sampler is None or self.loaded is None or self._closed:
            raise YoyuError("the model is not loaded: open the run first")
        return self.sampler, self.loaded

    # -- reporting -----------------------------------------------------------

    def report(self, turn: TurnResult | None = None) -> dict[str, Any]:
        """The JSON of ``yoyu run``: the turn (last by default), prediction, run id, load."""
        chosen = turn or self.last_turn
        loaded = self.loaded
        buffers = loaded.buffers if loaded else None
        return {
            **(chosen.to_dict() if chosen else {}),
            "notices": self.turn_notices(chosen),
            "predicted": self.prediction.to_dict() if self.prediction else None,
            "run_id": self.run_id,
            "model": self.spec.name if self.spec else self.config.model,
            "mode": self.mode,
            "settings": self.load_settings,
            "load_s": loaded.load_s if loaded else None,
            "engine": self._backend.engine_kind if self._backend else None,
            "engine_buffers": {kind: buffers.total(kind) for kind in buffers.by_kind}
            if buffers
            else None,
            "nodes": self._node_shares(buffers),
        }

    def _node_shares(self, buffers: ReportedBuffers | None) -> list[dict[str, Any]] | None:
        """Each node's planned bytes beside what llama.cpp says it put there."""
        if self._node_plan is None:
            return None
        shares = []
        for device in self._node_plan.devices:
            if not device.name.startswith("RPC["):
                continue
            printed = None
            if buffers is not None:
                printed = sum(buffers.device(kind, device.name) for kind in _NODE_BUFFERS)
            planned = device.weights_bytes + device.kv_bytes + device.compute_bytes
            shares.append(
                {"node": device.name[4:-1], "layers": len(device.layers),
                 "planned_bytes": planned, "printed_bytes": printed}
            )  # fmt: skip
        return shares

    def turn_notices(self, turn: TurnResult | None = None) -> list[str]:
        """The run's notices, and the turn's own (an empty answer) after them."""
        empty = turn.empty_answer if turn else None
        return [*self.notices, *([empty] if empty else [])]

    def summary(self) -> dict[str, Any]:
        """What the store keeps as the run's result: the last turn's report and every turn."""
        return {**self.report(), "turns": [turn.to_dict() for turn in self.turns]}

    def _stored_prediction(self) -> dict[str, Any]:
        """The prediction, with what a later plan matches it by (``yoyu.runner.history``):
        the settings planned, the model file's size and architecture."""
        assert self.prediction is not None and self.spec is not None
        return {
            **self.prediction.to_dict(),
            "settings": self.prediction.settings.to_dict(),
            "file_bytes": self.spec.file_bytes,
            "architecture": self.spec.architecture,
        }

    def _stored_settings(self) -> dict[str, Any]:
        return (
            {**self.load_settings, "label": self.config.label}
            if self.config.label
            else dict(self.load_settings)
        )


def _model_path(spec: ModelSpec) -> Path:
    if not spec.paths:
        raise ModelNotFoundError(
            f"{spec.name} is a catalog estimate, not a file on this machine; download its GGUF "
            "and give the path"
        )
    return Path(spec.paths[0])


def _model_id(spec: ModelSpec) -> str:
    return spec.name or Path(spec.paths[0]).stem
