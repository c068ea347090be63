"""What ``yoyu plan`` and ``yoyu fit`` share on their command line: which machine to plan
for, and sizes written as people write them (``11GiB``, ``16GB``)."""

from __future__ import annotations

from typing import Annotated

import typer

from yoyu.errors import SettingsError
from yoyu.machine.machine_file import parse_size
from yoyu.machine.types import Machine

MachineOpt = Annotated[
    str | None, typer.Option(help="Preset name or machine TOML file (default: this machine).")
]
FreeOpt = Annotated[
    str | None, typer.Option(help="Memory actually free, e.g. 11GiB (overrides the machine).")
]
GpuFreeOpt = Annotated[str | None, typer.Option(help="Free memory of each GPU, e.g. 14GiB.")]


def target_machine(name: str | None) -> Machine:
    """A preset or machine file by name, else this machine (with its measured bandwidth,
    without the engines found on it: a plan or a ranking reads none of them). The probe is
    imported only when it runs: a preset needs none of it."""
    if name:
        return named_machine(name)
    from yoyu.machine.bandwidth import with_measured_bandwidth
    from yoyu.machine.probe import probe_machine

    return with_measured_bandwidth(probe_machine(find_runtimes=False))


def named_machine(name: str) -> Machine:
    """A preset or machine file (``--machine``, ``--node``); the presets and their TOML
    reader are imported only then: a plan for this machine needs none of them."""
    from yoyu.machine.presets import load_machine

    return load_machine(name)


def size_flag(flag: str, text: str | None) -> int | None:
    """Bytes from "11GiB", "11 GiB", "16GB" or a byte count; negative or garbled is an error."""
    if text is None:
        return None
    if text.strip().startswith("-"):
        raise SettingsError.from_message(
            "{flag} must not be negative, got {text!r}; write e.g. 11GiB", flag=flag, text=text
        )
    try:
        size: int = parse_size(text)
    except ValueError:
        raise SettingsError.from_message(
            "{flag} {text!r} is not a size; write e.g. 11GiB or 512MiB", flag=flag, text=text
        ) from None
    return size
