"""Running the system tools a probe reads (``sysctl``, ``vm_stat``, ``llama-server``).

Probes take a ``CommandRunner`` so tests hand them recorded text instead of a
Mac; this module holds the one real runner. A tool that is missing, hangs or
fails yields ``CommandError``: the caller decides whether that fact is worth
reporting or simply means "not present here".
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence

CommandRunner = Callable[[Sequence[str]], str]
"""Run a command, return its stdout and stderr as text, or raise ``CommandError``."""


class CommandError(Exception):
    """A probe's tool could not be run or exited non-zero; not a user error."""


def run_command(
    command: Sequence[str],
    *,
    timeout_s: float = 5.0,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``command`` without a shell and return stdout followed by stderr.

    Stderr is kept because some tools (``llama-server --version``) print their
    answer there.
    """
    try:
        completed = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env=dict(env) if env is not None else None,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CommandError(f"{command[0]}: {error}") from None
    if completed.returncode != 0:
        raise CommandError(f"{command[0]} exited with {completed.returncode}")
    return completed.stdout + completed.stderr
