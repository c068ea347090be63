"""``yoyu run MODEL PROMPT``: one answer, streamed, with the memory profile around it.

The run itself is ``yoyu.runner.ModelRun``; this module parses flags, shows a
spinner while the model loads, prints the answer as it streams, then the
profile table (``profile_table``, shared with ``chat`` and ``runs show``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from yoyu.backends.protocol import ChatChunk, ChatMessage
from yoyu.cli.node_flags import NodeOpt, RpcOpt, machine_with_nodes
from yoyu.cli.output import console, print_json, styled
from yoyu.cli.run_flags import RunFlags, with_run_flags
from yoyu.cli.run_guard import (
    BudgetOpt,
    NoGuardOpt,
    guard_verdict,
    guarded_run,
    run_guard,
)
from yoyu.i18n import N_, _
from yoyu.monitor.store import RunStore
from yoyu.plan.types import RiskThresholds
from yoyu.runner import ModelRun
from yoyu.units import MIB, format_mib

DEFAULT_MAX_TOKENS = 256
progress_console = Console(stderr=True, highlight=False)  # spinner and notes, never on stdout

ModelArg = Annotated[str, typer.Argument(help="GGUF file, Ollama or installed model name.")]
MaxTokensOpt = Annotated[int, typer.Option(help="Most tokens to generate per answer.")]
TemperatureOpt = Annotated[float | None, typer.Option(help="Sampling temperature.")]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        help="Engine to start: llama-server, llama-cpp-python or vllm (a Hugging Face folder; "
        "`yoyu engine install vllm`). Default: llama-server when installed."
    ),
]
SeedOpt = Annotated[int | None, typer.Option(help="Seed for the engine and the sampler.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def register(app: typer.Typer) -> None:
    """Add ``yoyu run`` to the top-level app."""
    app.command("run")(run_command)


@with_run_flags()
def run_command(
    model: ModelArg,
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    flags: RunFlags,
    max_tokens: MaxTokensOpt = DEFAULT_MAX_TOKENS,
    temperature: TemperatureOpt = None,
    seed: SeedOpt = None,
    system: Annotated[str | None, typer.Option(help="A system message first.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Draw the memory timeline to this PNG.")] = None,
    no_guard: NoGuardOpt = False,
    budget: BudgetOpt = None,
    node: NodeOpt = None,
    rpc: RpcOpt = None,
    engine: EngineOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load MODEL, answer PROMPT (streamed), print the memory profile, unload."""
    guard = run_guard(no_guard, budget)
    messages = [ChatMessage("system", system)] if system else []
    messages.append(ChatMessage("user", prompt))
    machine = machine_with_nodes(node or [], rpc or [])
    run = guarded_run(flags.run_config(model), guard, "run", seed, machine, engine)
    with guard_verdict(guard):
        open_with_spinner(run, quiet=as_json)
        with run:
            run.ask(
                messages,
                on_chunk=None if as_json else print_chunk,
                max_tokens=max_tokens, temperature=temperature, seed=seed,
            )  # fmt: skip
    report = run.report()
    if as_json:
        print_json(report)
    else:
        sys.stdout.write("\n")
        if run.last_turn is not None and run.last_turn.empty_answer:
            print_notice(run.last_turn.empty_answer)
        print_profile(report)
    if plot is not None and run.run_id is not None:
        draw_plot(run.run_id, plot)


def open_with_spinner(run: ModelRun, quiet: bool = False) -> None:
    """Load, with a spinner on stderr (none in JSON mode); ``with run:`` then only closes."""
    if quiet:
        run.open()
        return
    with progress_console.status(escape(_("loading {model}...").format(model=run.config.model))):
        run.open()
    for notice in run.notices:
        print_notice(notice)


def print_notice(notice: str) -> None:
    """One line on stderr, so a piped answer stays clean."""
    progress_console.print(styled("yellow", _("notice:")) + " " + escape(notice))


def print_chunk(chunk: ChatChunk) -> None:
    if chunk.content:
        sys.stdout.write(chunk.content)
        sys.stdout.flush()


def draw_plot(run_id: int, path: Path) -> None:
    from yoyu.monitor.plot import plot_run

    thresholds = RiskThresholds()
    floors = {"caution floor": thresholds.caution_bytes, "safe floor": thresholds.safe_bytes}
    with RunStore() as store:
        record = store.get_run(run_id)
        plot_run(record, store.samples(run_id), store.events(run_id), path, floors)
    progress_console.print(escape(_("timeline drawn to {path}").format(path=path)))


# --- the profile table ------------------------------------------------------------

_ROWS = (
    (N_("process RSS"), "rss"), ("  " + N_("predicted"), "pred_rss"), ("  anon", "anon"),
    ("  file", "file"), ("  " + N_("swapped"), "pswap"), (N_("system available"), "avail"),
    ("  " + N_("predicted"), "pred_avail"), (N_("swap used"), "swap"), (N_("GPU used"), "gpu"),
)  # fmt: skip
_PHASE_TITLES = {
    "baseline": N_("baseline"), "loaded": N_("loaded"), "pre_generation": N_("pre-gen"),
    "peak": N_("peak"), "post_generation": N_("post-gen"), "stabilized": N_("settled"),
}  # fmt: skip


def _label(text: str) -> str:
    """A row label in the user's language, its indent kept."""
    stripped = text.lstrip(" ")
    return text[: len(text) - len(stripped)] + _(stripped)


def print_profile(report: Mapping[str, Any]) -> None:
    """The phase table and the predicted-vs-measured table of a run's report."""
    console.print(profile_table(report))
    console.print(prediction_table(report))
    if report.get("nodes"):
        console.print(node_table(report["nodes"]))
    stabilize_s = report.get("stabilize_s")
    if stabilize_s is not None:
        line = (
            _("memory settled {seconds} s after the answer")
            if report.get("stabilized_settled", True)
            else _("memory did not settle {seconds} s after the answer")
        )
        console.print(f"[dim]{escape(line.format(seconds=f'{stabilize_s:.2f}'))}[/]")


def node_table(nodes: Sequence[Mapping[str, Any]]) -> Table:
    """Each `yoyu node`'s share: what the plan put there, what llama.cpp says it did."""
    table = Table(title=_("Nodes (MiB)"), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(_("node"))
    for column in (_("layers"), _("planned"), "llama.cpp"):
        table.add_column(column, justify="right")
    for node in nodes:
        table.add_row(
            node["node"], str(node["layers"]),
            _mib_number(node["planned_bytes"]), _mib_number(node["printed_bytes"]),
        )  # fmt: skip
    return table


def profile_table(report: Mapping[str, Any]) -> Table:
    """One column per phase, one row per figure; the plan's figure under the measured one."""
    table = Table(
        title=_("Memory by phase (MiB)"), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    phases: Mapping[str, Any] = report.get("phases") or {}
    predicted: Mapping[str, Any] = report.get("predicted") or {}
    table.add_column("")
    for name in phases:
        table.add_column(_(_PHASE_TITLES.get(name, name)), justify="right")
    columns = [_phase_values(n, r, phases.get("baseline"), predicted) for n, r in phases.items()]
    table.add_row("t (s)", *(_seconds(column.get("t")) for column in columns))
    for label, key in _ROWS:
        if all(column.get(key) is None for column in columns):
            continue
        cells = [_mib_number(column.get(key)) for column in columns]
        style = "dim" if key.startswith("pred") else None
        table.add_row(_label(label), *cells, style=style)
    return table


def _phase_values(
    name: str,
    reading: Mapping[str, Any] | None,
    baseline: Mapping[str, Any] | None,
    predicted: Mapping[str, Any],
) -> dict[str, float | None]:
    if reading is None:
        return {}
    host = predicted.get("total_bytes", 0) - predicted.get("gpu_bytes", 0) if predicted else None
    pred_rss = None if name == "baseline" or host is None else host
    pred_avail = None
    if pred_rss is not None and baseline is not None:
        pred_avail = baseline["system_available_bytes"] - pred_rss
    return {
        "t": reading["t_s"], "rss": reading["process_rss_bytes"], "pred_rss": pred_rss,
        "anon": reading.get("process_anon_bytes"), "file": reading.get("process_file_bytes"),
        "pswap": reading.get("process_swap_bytes"), "avail": reading["system_available_bytes"],
        "pred_avail": pred_avail, "swap": reading["swap_used_bytes"],
        "gpu": reading.get("gpu_used_bytes"),
    }  # fmt: skip


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _mib_number(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:.2f}"


def prediction_table(report: Mapping[str, Any]) -> Table:
    """The plan's components beside llama.cpp's own buffers, total beside peak RSS, speed."""
    table = Table(title=_("Predicted vs measured"), title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("")
    table.add_column(_("predicted"), justify="right")
    table.add_column(_("measured"), justify="right")
    table.add_column(_("measured by"))
    predicted: Mapping[str, Any] = report.get("predicted") or {}
    buffers: Mapping[str, int] = report.get("engine_buffers") or {}
    peak = (report.get("phases") or {}).get("peak") or {}
    # vLLM prints no buffers; its pool is read from its /metrics (backends.vllm_metrics)
    source = "vLLM /metrics" if report.get("engine") == "vllm" else _("engine log")
    for label, key, kind in (
        (_("weights"), "weights_bytes", "model"), (_("KV cache"), "kv_bytes", "kv"),
        (_("compute"), "compute_bytes", "compute"), (_("output"), "output_bytes", "output"),
    ):  # fmt: skip
        table.add_row(label, _mib(predicted.get(key)), _mib(buffers.get(kind)), source)
    kv_used = peak.get("engine_kv_used_fraction")
    if kv_used is not None:
        table.add_row(_("KV pool in use"), "-", f"{kv_used:.1%}", _("vLLM /metrics, at peak"))
    elif report.get("engine") == "vllm":  # its frontend fell behind: no reading saw the pool
        table.add_row(_("KV pool in use"), "-", "-", _("not observed: vLLM /metrics lagged"))
    for label, key in ((_("engine arrays"), "engine_bytes"), (_("process"), "overhead_bytes")):
        table.add_row(label, _mib(predicted.get(key)), "-", _("in peak RSS"))
    table.add_row(
        _("total"), _mib(predicted.get("total_bytes")), _mib(peak.get("process_rss_bytes")),
        _("peak RSS"),
    )  # fmt: skip
    speed: Mapping[str, Any] = report.get("speed") or {}
    for label, key, source in (
        (_("prefill tok/s"), "prefill_tps", _("time to first token")),
        (_("decode tok/s"), "decode_tps", _("engine timings")),
    ):
        table.add_row(label, _tps(predicted.get(key)), _tps(speed.get(key)), source)
    return table


def _mib(value: int | None) -> str:
    return "-" if value is None else format_mib(int(value))


def _tps(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
