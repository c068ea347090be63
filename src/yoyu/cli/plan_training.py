"""``yoyu plan MODEL --train lora|qlora``: printing a training plan.

``cli/plan.py`` parses the flags; ``yoyu.plan.training`` decides; this module
prints the components of one step, the verdict and the fitting moves, or the
JSON. Exit 1 when nothing fits, like an inference plan.
"""

from __future__ import annotations

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from yoyu.cli.output import console, moves_table_of, print_json, shown_word, styled
from yoyu.estimate.training_settings import TrainingSettings
from yoyu.i18n import N_, _, render_text
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec
from yoyu.plan.training import TrainingPlan, make_training_plan
from yoyu.plan.types import PlanRequest, Verdict
from yoyu.units import format_bytes, format_mib

_COMPONENTS = (
    (N_("base weights"), "base_weights_bytes"),
    (N_("adapters"), "adapter_bytes"),
    (N_("adapter gradients"), "gradient_bytes"),
    (N_("optimizer states"), "optimizer_bytes"),
    (N_("activations"), "activation_bytes"),
    (N_("logits (fp32 x3)"), "logits_bytes"),
    (N_("framework"), "framework_bytes"),
    (N_("host process"), "host_bytes"),
)


def plan_training(
    spec: ModelSpec,
    machine: Machine,
    request: PlanRequest,
    settings: TrainingSettings,
    as_json: bool,
) -> None:
    """Plan, print, and exit 1 when the step does not fit."""
    plan = make_training_plan(spec, machine, request, settings)
    if as_json:
        print_json(plan.to_dict())
    else:
        print_training_plan(plan)
    if plan.verdict is Verdict.DOES_NOT_FIT:
        raise typer.Exit(1)  # documented: 1 = does not fit, 2 = bad input


def print_training_plan(plan: TrainingPlan) -> None:
    heading = _("{model} on {machine} (training)").format(
        model=f"[bold]{escape(plan.model)}[/]", machine=f"[bold]{escape(plan.machine)}[/]"
    )
    console.print(heading)
    console.print(
        _("Verdict {verdict}, risk {risk}: {reason}").format(
            verdict=styled("bold", shown_word(plan.verdict)),
            risk=styled("bold", shown_word(plan.risk)),
            reason=escape(render_text(plan.risk_reason)),
        )
    )
    if plan.applied_move is not None:
        changed = _("Changed: {move}").format(move=render_text(plan.applied_move.description))
        console.print(escape(changed))
    console.print(_settings_line(plan.settings))
    console.print(component_table(plan))
    if plan.reasons:
        console.print(styled("bold", _("Why")))
    for reason in plan.reasons:
        console.print(f"  - {escape(render_text(reason.message))}")
    if plan.moves:
        console.print(moves_table_of(plan.moves))
    for note in plan.notes:
        console.print(styled("dim", _("note: {note}").format(note=render_text(note))))


def _settings_line(settings: TrainingSettings) -> str:
    checkpointing = "on" if settings.grad_checkpointing else "off"
    return (
        f"{settings.method} rank {settings.rank} on {','.join(settings.targets)} · seq "
        f"{settings.seq} x batch {settings.batch} (accumulation {settings.grad_accum}) · "
        f"gradient checkpointing {checkpointing} · optimizer {settings.optimizer}"
    )


def component_table(plan: TrainingPlan) -> Table:
    memory = plan.assessment.memory
    title = _("One training step on {device}").format(device=memory.device)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("")
    table.add_column("MiB", justify="right")
    for label, key in _COMPONENTS:
        table.add_row(_(label), format_mib(getattr(memory, key)))
    table.add_row(styled("bold", _("total")), f"[bold]{format_mib(memory.total_bytes)}[/]")
    for row in plan.to_dict()["devices"]:
        table.add_row(
            escape(_("{device} may use / free after").format(device=row["name"])),
            f"{format_bytes(row['usable_bytes'])} / {format_bytes(row['free_after_bytes'])}",
        )
    return table
