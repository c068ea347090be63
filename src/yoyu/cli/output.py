"""What every command shares when it prints: the console and JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console(highlight=False)


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout (``--json`` on every command)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
