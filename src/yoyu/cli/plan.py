"""``yoyu plan MODEL``: what fits where, how safely, how fast, and what to change.

Only parsing and printing live here: ``yoyu.plan.make_plan`` decides. Exit
code 0 when the plan runs (whatever the placement), 1 when the model does not
fit, 2 for bad input (through the CLI boundary).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from yoyu.backends.llamacpp_flags import find_engine
from yoyu.cli.machine_flags import (
    FreeOpt,
    GpuFreeOpt,
    MachineOpt,
    named_machine,
    size_flag,
    target_machine,
)
from yoyu.cli.model_ref import MODEL_HELP, read_model_arg
from yoyu.cli.node_flags import RpcOpt, is_node_address, machine_with_nodes
from yoyu.cli.output import console, moves_table_of, print_json, shown_word, styled
from yoyu.cli.run_flags import RunFlags, with_run_flags
from yoyu.cli.training_flags import TrainingFlags
from yoyu.errors import SettingsError
from yoyu.estimate.engine import ENGINES, VLLM_NAME
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.vllm import vllm_kv_type
from yoyu.i18n import N_, _, ngettext, render_text
from yoyu.machine.types import Machine
from yoyu.models import ModelSpec
from yoyu.plan.emit import EMIT_TARGETS, emit_settings
from yoyu.plan.emit.llama_cpp import engine_load_settings, rpc_endpoints
from yoyu.plan.history import (
    History,
    history_notes,
    residual_of,
    same_settings_run,
    with_residual,
)
from yoyu.plan.planner import make_plan
from yoyu.plan.types import Plan, PlanRequest, Verdict
from yoyu.runner.history import measured_runs
from yoyu.units import MIB, format_bytes, format_mib

if TYPE_CHECKING:
    from yoyu.estimate.training_settings import TrainingSettings

DEFAULT_CTX = (
    8192  # a working chat/code context; sizing at a model's 128k maximum is a peer mistake
)


def register(app: typer.Typer) -> None:
    """Add ``yoyu plan`` to the top-level app."""
    app.command("plan")(plan_command)


@with_run_flags(
    ctx_default=None,
    ctx_help=f"Context tokens; 0 = the model's own (default {DEFAULT_CTX}).",
    force=False,
    batch_default=None,
    batch_help="Logical batch (n_batch, default 512); with --train, sequences per micro-batch "
    "(default 1).",
)
def plan_command(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    flags: RunFlags,
    machine: MachineOpt = None,
    parallel: Annotated[int, typer.Option(help="Concurrent sequences (slots).")] = 1,
    engine: Annotated[
        str | None,
        typer.Option(
            help="Engine to plan for: llama-cpp-python, llama-server, ollama or vllm (default: the "
            "--emit target when it is one, else the one yoyu run starts here). Its process, "
            "SWA cache and arrays are counted."
        ),
    ] = None,
    gpu_memory_utilization: Annotated[
        float | None,
        typer.Option(help="vLLM: share of each GPU's total memory it takes (default 0.9)."),
    ] = None,
    logits_all: Annotated[
        bool,
        typer.Option(
            "--logits-all",
            help="Plan llama-cpp-python keeping every token's logits (n_ctx x vocab floats; "
            "only completion logprobs need it, so yoyu starts it without).",
        ),
    ] = False,
    free: FreeOpt = None,
    gpu_free: GpuFreeOpt = None,
    reserve: Annotated[
        str | None, typer.Option(help="Memory to keep for the OS and apps, e.g. 4GiB.")
    ] = None,
    node: Annotated[
        list[str] | None,
        typer.Option(
            help="A machine of a cluster (repeat; the first is the head), or a running "
            "`yoyu node` worker's HOST:PORT: its live memory, split over llama.cpp RPC."
        ),
    ] = None,
    rpc: RpcOpt = None,
    emit: Annotated[
        str | None, typer.Option(help=f"Print launch settings: {', '.join(EMIT_TARGETS)}.")
    ] = None,
    compare_fit: Annotated[
        bool,
        typer.Option(
            "--compare-fit",
            help="Also ask llama.cpp's own estimator and fit (llama-fit-params, from `yoyu "
            "engine install`) and print its figures beside yoyu's.",
        ),
    ] = False,
    no_history: Annotated[
        bool,
        typer.Option(
            "--no-history",
            help="Leave out what earlier runs measured (the figure for these settings, and the "
            "correction for this engine and architecture).",
        ),
    ] = False,
    train: Annotated[
        str | None,
        typer.Option(help="Plan a fine-tuning step instead: lora or qlora (PEFT + PyTorch)."),
    ] = None,
    rank: Annotated[int | None, typer.Option(help="--train: LoRA rank (default 16).")] = None,
    targets: Annotated[
        str | None,
        typer.Option(
            help="--train: modules to adapt, e.g. q,k,v,o,gate,up,down or all "
            "(default q,v, PEFT's own)."
        ),
    ] = None,
    seq: Annotated[int | None, typer.Option(help="--train: tokens per sequence (2048).")] = None,
    grad_accum: Annotated[
        int | None, typer.Option(help="--train: gradient accumulation steps (1).")
    ] = None,
    grad_checkpointing: Annotated[
        bool | None,
        typer.Option("--grad-checkpointing/--no-grad-checkpointing", help="--train (off)."),
    ] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="--train: adamw, adamw8bit or sgd (default adamw).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Plan a model on a machine: per-device memory, layer split, verdict, risk, speed, moves."""
    training = TrainingFlags(train, rank, targets, seq, flags.batch, grad_accum,
                             grad_checkpointing, optimizer)  # fmt: skip
    if train is not None:
        untaken = {"--emit": emit, "--compare-fit": compare_fit, "--node": node, "--rpc": rpc}
        return _plan_training(
            model, machine, training.settings(untaken), (free, gpu_free, reserve), as_json
        )
    training.refuse_without_train()
    if emit is not None and emit not in EMIT_TARGETS:
        raise SettingsError.from_message(
            "unknown --emit {emit!r}; choose one of {known}",
            emit=emit, known=", ".join(EMIT_TARGETS),
        )  # fmt: skip
    spec = read_model_arg(model)[0]
    live = [value for value in node or [] if is_node_address(value)]
    if live and len(live) != len(node or []):
        raise SettingsError("--node takes machine presets or live `yoyu node` addresses, not both")
    nodes = [] if live else [named_machine(name) for name in node or []]
    if rpc and nodes:
        raise SettingsError("--rpc adds devices to this machine; give --node presets or --rpc")
    target = machine_with_nodes(live, rpc or []) or (nodes[0] if nodes else target_machine(machine))
    engine = engine or ("llama-server" if live or rpc else _default_engine(emit))
    settings = flags.settings(
        default_context(spec, flags.ctx), n_parallel=parallel, engine=engine,
        logits_all=logits_all, gpu_memory_utilization=gpu_memory_utilization,
    )  # fmt: skip
    request = PlanRequest(
        settings=settings,
        n_gpu_layers=flags.gpu_layers,
        reserve_bytes=size_flag("--reserve", reserve) or 0,
        ram_free_bytes=size_flag("--free", free),
        gpu_free_bytes=size_flag("--gpu-free", gpu_free),
    )
    runs = [] if no_history else measured_runs()
    residual = residual_of(spec, settings.engine, runs)
    plan = make_plan(
        spec, target, request, nodes=nodes or None, catalog=smaller_relatives_of(spec),
        estimate=with_residual(estimate_memory, residual),
    )  # fmt: skip
    history = (
        None if no_history else History(same_settings_run(spec, plan.settings, runs), residual)
    )
    if history is not None:
        plan = dataclasses.replace(plan, notes=(*plan.notes, *history_notes(history)))
    emitted = _emitted(emit, plan, spec, model, target, request) if emit else None
    fit_params = llama_cpp_peer(spec, plan, target) if compare_fit else None
    if as_json:
        emit_json = emitted[0] if emitted else None
        history_json = history.to_dict() if history else None
        print_json(
            {**plan.to_dict(), "emit": emit_json, "llama_fit_params": fit_params,
             "history": history_json}
        )  # fmt: skip
    else:
        print_plan(plan, fit_params)
        if emit is not None and emitted is not None:
            _print_emitted(plan, emit, emitted[1])
    if plan.verdict is Verdict.DOES_NOT_FIT:
        raise typer.Exit(1)  # documented: 1 = the model does not fit, 2 = bad input


def _plan_training(
    model: str,
    machine: str | None,
    settings: TrainingSettings,
    sizes: tuple[str | None, str | None, str | None],
    as_json: bool,
) -> None:
    """``--train``: one fine-tuning step on this machine or a preset (no bandwidth probe:
    a training plan predicts no speed)."""
    from yoyu.cli.plan_training import plan_training  # the training planner, only for --train

    free, gpu_free, reserve = sizes
    request = PlanRequest(
        reserve_bytes=size_flag("--reserve", reserve) or 0,
        ram_free_bytes=size_flag("--free", free),
        gpu_free_bytes=size_flag("--gpu-free", gpu_free),
    )
    plan_training(read_model_arg(model)[0], _training_machine(machine), request, settings, as_json)


def _training_machine(name: str | None) -> Machine:
    """A preset, else this machine without the bandwidth probe (no speed is predicted)."""
    if name:
        return named_machine(name)
    from yoyu.machine.probe import probe_machine

    return probe_machine(find_runtimes=False)


# --- input ------------------------------------------------------------------


def _default_engine(emit: str | None) -> str:
    """The engine the emitted settings are for, else the one ``yoyu run`` starts here."""
    return emit if emit in ENGINES else find_engine().kind


def smaller_relatives_of(spec: ModelSpec) -> Callable[[], list[ModelSpec]]:
    """The catalog models a "smaller model" move may name, read when the planner weighs
    one: a model that fits as asked needs no catalog."""

    def read_catalog() -> list[ModelSpec]:
        from yoyu.models.catalog import relatives_of

        return relatives_of(spec)

    return read_catalog


def default_context(spec: ModelSpec, ctx: int | None) -> int:
    """``--ctx``, else the model's own capped at ``DEFAULT_CTX``."""
    return min(DEFAULT_CTX, spec.context_length or DEFAULT_CTX) if ctx is None else ctx


# --- emitters ------------------------------------------------------------------


def _emitted(
    target: str, plan: Plan, spec: ModelSpec, ref: str, machine: Machine, request: PlanRequest
) -> tuple[dict[str, Any], str]:
    """The launch settings as JSON and as text to paste."""
    emitted = emit_settings(target, plan, spec, ref, machine, request)
    return emitted.data, emitted.text


def _print_emitted(plan: Plan, target: str, text: str) -> None:
    console.print("\n[bold]" + _("Launch settings ({target})").format(target=target) + "[/]")
    if plan.verdict is Verdict.DOES_NOT_FIT:
        warning = _("# the plan does not fit: these settings would fail to load")
        console.print(f"[red]{escape(warning)}[/]")
    console.print(escape(text.rstrip("\n")), soft_wrap=True)


# --- llama.cpp's own estimate and fit, when asked --------------------------------------


def llama_cpp_peer(spec: ModelSpec, plan: Plan, machine: Machine) -> dict[str, Any]:
    """llama-fit-params on the same file and settings: its estimate for the plan's
    placement and the placement its own fit picks (llama-server ``--fit``'s code)."""
    from yoyu.backends.llamacpp_fit import (  # only with --compare-fit
        estimate_with_llama_cpp,
        fit_params_program,
        fit_with_llama_cpp,
    )

    program = fit_params_program()
    if program is None:
        raise SettingsError("--compare-fit needs llama-fit-params; run `yoyu engine install`")
    if not spec.paths or not spec.paths[0].endswith(".gguf"):
        raise SettingsError("--compare-fit needs a GGUF file (llama.cpp reads nothing else)")
    load = engine_load_settings(plan.estimate.settings)
    endpoints = rpc_endpoints(machine)
    if endpoints:
        load["rpc"] = endpoints
    model_path = Path(spec.paths[0])
    estimate = estimate_with_llama_cpp(program, model_path, load)
    fitted = fit_with_llama_cpp(program, model_path, load)
    return {"estimate": estimate.to_dict(), "fit": fitted.to_dict()}


# --- output ---------------------------------------------------------------------

_VERDICT_STYLE = {
    Verdict.DOES_NOT_FIT: "red",
    Verdict.FITS: "green",
    Verdict.NEEDS_CLUSTER: "yellow",
}
_RISK_STYLE = {"safe": "green", "tight": "yellow", "caution": "yellow", "abort": "red"}


def print_plan(plan: Plan, fit_params: dict[str, Any] | None) -> None:
    console.print(
        _("{model} on {machine}").format(
            model=f"[bold]{escape(plan.model)}[/]", machine=f"[bold]{escape(plan.machine)}[/]"
        )
    )
    _print_verdict(plan)
    console.print(_settings_line(plan))
    console.print(device_table(plan))
    if plan.nodes:
        console.print(node_table(plan))
    _print_reasons(plan)
    _print_speed(plan)
    if fit_params:
        _print_llama_cpp_peer(plan, fit_params)
    if plan.moves:
        console.print(moves_table(plan))
    for note in plan.notes:
        console.print(styled("dim", _("note: {note}").format(note=render_text(note))))


def _print_llama_cpp_peer(plan: Plan, peer: dict[str, Any]) -> None:
    """llama.cpp's figures (whole MiB, rounded down) beside yoyu's, per device."""
    title = _("llama.cpp's own estimate (llama-fit-params), MiB")
    table = Table(title=title, box=box.SIMPLE)
    table.add_column(_("device"))
    for heading in (_("weights yoyu/llama.cpp"), "KV", _("compute")):
        table.add_column(heading, justify="right")
    for row in peer["estimate"]["devices"]:
        device = next((d for d in plan.estimate.devices if d.name == row["device"]), None)
        theirs = (row["model_bytes"], row["context_bytes"], row["compute_bytes"])
        ours = (device.weights_bytes, device.kv_bytes, device.compute_bytes) if device else None
        cells = [
            f"{ours[index] / MIB:.2f} / {figure // MIB}" if ours else f"- / {figure // MIB}"
            for index, figure in enumerate(theirs)
        ]
        table.add_row(escape(row["device"]), *cells)
    console.print(table)
    caveat = _(
        "llama-fit-params leaves out the CPU_REPACK copy and sizes compute for every "
        "token's logits (it cannot be told llama-server's one row per slot)"
    )
    console.print(f"[dim]{escape(caveat)}[/]")
    fit = peer["fit"]
    answer = (
        fit["printed"]
        if fit["fits"]
        else _("no placement fits ({printed})").format(printed=fit["printed"])
    )
    heading = escape(_("llama.cpp's fit"))
    console.print(f"[bold]{heading}[/] {escape(answer)}")
    untold = sorted({*peer["estimate"]["unexpressed"], *fit["unexpressed"]})
    if untold:
        untold_line = _("llama-fit-params has no flag for: {flags}").format(flags=" ".join(untold))
        console.print(f"[dim]{escape(untold_line)}[/]")


def _print_verdict(plan: Plan) -> None:
    verdict_style = _VERDICT_STYLE.get(plan.verdict, "yellow")
    risk_style = _RISK_STYLE[plan.risk.value]
    verdict = f"[bold {verdict_style}]{escape(shown_word(plan.verdict))}[/]"
    risk = f"[bold {risk_style}]{escape(shown_word(plan.risk))}[/]"
    reason = escape(_risk_reason(plan))
    console.print(
        _("Verdict {verdict}, risk {risk}: {reason}").format(
            verdict=verdict, risk=risk, reason=reason
        )
    )
    if plan.applied_move is not None:
        changed = _("Changed: {move}").format(move=render_text(plan.applied_move.description))
        console.print(escape(changed))


def _risk_reason(plan: Plan) -> str:
    if plan.nodes or not str(plan.risk_reason):
        free = format_bytes(plan.free_after_bytes)
        if plan.nodes:
            return _("{free} of the tightest node free after load").format(free=free)
        return _("{free} of system memory free after load").format(free=free)
    return render_text(plan.risk_reason)


def _settings_line(plan: Plan) -> str:
    settings = plan.settings
    if settings.engine == VLLM_NAME:  # no layers, batches or flash attention to choose
        where = ", ".join(device.name for device in plan.devices if device.kv_bytes) or "CPU"
        return _(
            "max_model_len {ctx} · KV {kv} · pool {pool} · max_num_seqs {seqs} · on {where}"
        ).format(
            ctx=plan.estimate.n_ctx, kv=vllm_kv_type(settings),
            pool=format_bytes(settings.kv_cache_bytes or 0), seqs=settings.n_parallel, where=where,
        )  # fmt: skip
    flash = _("on") if settings.flash_attn else _("off")
    line = _(
        "ctx {ctx} · KV {kv} · batch {batch}/{ubatch} · parallel {parallel} · "
        "flash attention {flash} · {gpu_layers}/{layers} layers on the GPU"
    ).format(
        ctx=plan.estimate.n_ctx, kv=settings.type_k, batch=settings.n_batch,
        ubatch=settings.n_ubatch, parallel=settings.n_parallel, flash=flash,
        gpu_layers=plan.n_gpu_layers, layers=plan.n_layers_total,
    )  # fmt: skip
    return line + _experts_note(plan)


def _experts_note(plan: Plan) -> str:
    blocks = plan.settings.n_cpu_moe if plan.verdict is not Verdict.CPU_ONLY else 0
    if not blocks:
        return ""
    phrase = ngettext(
        "MoE experts of the first {n} block on the CPU (--n-cpu-moe {n})",
        "MoE experts of the first {n} blocks on the CPU (--n-cpu-moe {n})",
        blocks,
    )
    return ", " + phrase.format(n=blocks)


def device_table(plan: Plan) -> Table:
    """One column per device, components in MiB as llama.cpp logs its buffers."""
    table = Table(title=_("Memory per device"), title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("")
    for row in plan.devices:
        table.add_column(f"{row.name} ({row.kind})", justify="right")
    table.add_column(_("all devices"), justify="right", style="bold")
    totals = plan.to_dict()["totals"]
    for label, key in _COMPONENTS:
        cells = [format_mib(getattr(row, key)) for row in plan.devices]
        table.add_row(_(label), *cells, format_mib(totals[key]))
    table.add_row(_("layers"), *(str(row.layers) for row in plan.devices), "")
    table.add_row(_("may use"), *(format_bytes(row.usable_bytes) for row in plan.devices), "")
    table.add_row(_("free after"), *(_free(row.free_after_bytes) for row in plan.devices), "")
    return table


_COMPONENTS = (
    (N_("weights"), "weights_bytes"),
    (N_("KV cache"), "kv_bytes"),
    (N_("compute"), "compute_bytes"),
    (N_("output"), "output_bytes"),
    (N_("engine"), "engine_bytes"),
    (N_("overhead"), "overhead_bytes"),
    (N_("total"), "total_bytes"),
)


def _free(n_bytes: int) -> str:
    text = format_bytes(n_bytes)
    return f"[red]{text}[/]" if n_bytes < 0 else text


def node_table(plan: Plan) -> Table:
    title = _("Layer split across nodes")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in (
        _("node"), _("role"), _("layers"), _("total"), _("may use"), _("free after"), _("risk"),
    ):  # fmt: skip
        table.add_column(column)
    for share in plan.nodes:
        table.add_row(
            escape(share.name),
            share.role,
            f"{share.first_layer}-{share.last_layer} ({share.n_layers})",
            format_bytes(share.total_bytes),
            format_bytes(share.usable_bytes),
            _free(share.free_after_bytes),
            f"[{_RISK_STYLE[share.risk.value]}]{escape(shown_word(share.risk))}[/]",
        )
    return table


def _print_reasons(plan: Plan) -> None:
    if plan.reasons:
        console.print(styled("bold", _("Why")))
    for reason in plan.reasons:
        console.print(f"  - {escape(render_text(reason.message))}")


def _print_speed(plan: Plan) -> None:
    if plan.predicted is None:
        return
    speed = plan.predicted
    figures = _("decode {decode} tok/s, prefill {prefill} tok/s ({bound})").format(
        decode=f"{speed.decode_tps:.1f}",
        prefill=f"{speed.prefill_tps:.0f}",
        bound=render_text(speed.bound),
    )
    console.print(styled("bold", _("Predicted")) + " " + escape(figures))


def moves_table(plan: Plan) -> Table:
    return moves_table_of(plan.moves)
