"""What every command shares when it prints: the console and JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from yoyu.plan.types import Move

console = Console(highlight=False)


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout (``--json`` on every command)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def moves_table_of(moves: Sequence[Move]) -> Table:
    """Fitting moves as inference and training plans both print them."""
    table = Table(title="Fitting moves (cheapest first)", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("#", "move", "result", "what it takes"):
        table.add_column(column)
    for index, move in enumerate(moves, start=1):
        risk = f" / {move.resulting_risk.value}" if move.resulting_risk else ""
        table.add_row(
            str(index), move.action, f"{move.resulting_verdict.value}{risk}",
            escape(move.description),
        )  # fmt: skip
    return table
