"""What every command shares when it prints: the console, JSON output, shown words."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from yoyu.i18n import N_, _, render_text
from yoyu.plan.types import Move

console = Console(highlight=False)

# Verdict, risk and state words as the tables show them; ``--json`` keeps the values.
_SHOWN_WORDS = {
    word: word
    for word in (
        N_("FITS"), N_("FITS_WITH_CHANGES"), N_("PARTIAL_OFFLOAD"), N_("CPU_ONLY"),
        N_("NEEDS_CLUSTER"), N_("DOES_NOT_FIT"),
        N_("safe"), N_("tight"), N_("caution"), N_("abort"),
    )
}  # fmt: skip


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout (``--json`` on every command)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def shown_word(value: enum.Enum | str) -> str:
    """A verdict or risk word in the user's language (an unknown word as it is)."""
    text = str(value.value) if isinstance(value, enum.Enum) else value
    return _(text) if text in _SHOWN_WORDS else text


def styled(style: str, text: str) -> str:
    """``text`` as rich markup in ``style``, its own brackets escaped."""
    return f"[{style}]{escape(text)}[/]"


def moves_table_of(moves: Sequence[Move]) -> Table:
    """Fitting moves as inference and training plans both print them."""
    title = _("Fitting moves (cheapest first)")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("#", _("move"), _("result"), _("what it takes")):
        table.add_column(column)
    for index, move in enumerate(moves, start=1):
        risk = f" / {shown_word(move.resulting_risk)}" if move.resulting_risk else ""
        table.add_row(
            str(index), move.action, escape(f"{shown_word(move.resulting_verdict)}{risk}"),
            escape(render_text(move.description)),
        )  # fmt: skip
    return table
