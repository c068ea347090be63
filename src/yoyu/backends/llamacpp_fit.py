"""llama.cpp's own answer to "how much memory, and where": ``llama-fit-params``.

``llama-fit-params`` runs the code behind ``llama-server --fit``: it reads the
model's tensor table, creates a context without allocating it and reads
llama.cpp's per-device breakdown (model, context = the KV cache, compute). yoyu
asks it two things, with the same settings it plans:

- ``estimate_with_llama_cpp``: that breakdown for a placement as given
  (``--fit-print on``), in whole MiB (llama.cpp rounds each figure down);
- ``fit_with_llama_cpp``: the ``-c`` / ``-ngl`` / ``-ts`` / ``-ot`` llama.cpp
  would choose to leave a margin free on every device.

It is a peer, not an oracle. What the program cannot be told changes its
figures, and ``unexpressed`` lists it: llama-server's ``n_outputs_max`` (the
program sizes the compute buffer for logits of a whole ubatch, n_ubatch x
n_vocab x 4 bytes: 512 MiB on a 262,144-token vocabulary, where llama-server
reserves one row per slot), ``--kv-unified`` and ``--no-mmap``. It also leaves
the CPU_REPACK copy out of the host's model bytes. ``benchmarks/
estimate_accuracy.py`` puts its figures beside yoyu's and the printed ones.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from yoyu.backends import llamacpp_build
from yoyu.backends.llamacpp_flags import llama_server_flags
from yoyu.errors import BackendError
from yoyu.units import MIB

PROGRAM = "llama-fit-params"
TIMEOUT_S = 120.0  # a fit loads the tensor table once per trial placement
HOST = "CPU"  # llama.cpp's "Host" row: every host buffer, as yoyu's CPU device
# llama-server flags that llama-fit-params takes as they are; value flags take one argument
_TAKEN_VALUE_FLAGS = {"-c", "-b", "-ub", "-t", "-tb", "-np", "-ngl", "-ctk", "-ctv", "-fa",
                      "-ts", "--rpc", "-mg", "--n-cpu-moe"}  # fmt: skip
_TAKEN_SWITCHES = {"-nkvo", "--swa-full", "--no-repack"}
# llama-server flags that change nothing llama.cpp allocates, or that yoyu sets itself
_IGNORED_VALUE_FLAGS = {"--fit", "-lv", "-s", "--chat-template", "--ctx-checkpoints",
                        "--cache-ram"}  # fmt: skip
_IGNORED_SWITCHES = {"--no-jinja", "--mlock"}
_PLACEMENT_FLAGS = {"-ngl", "-ts", "--n-cpu-moe"}  # what a fit decides, so it is not passed to one
_ESTIMATE_LINE = re.compile(
    r"^(?P<device>\S+) (?P<model>\d+) (?P<context>\d+) (?P<compute>\d+)\s*$"
)
_RPC_DEVICE = re.compile(r"^RPC(?P<index>\d+)$")
_FITTED_LINE = re.compile(r"^-c \d+ -ngl -?\d+")


@dataclass(frozen=True)
class FitFlags:
    """llama-fit-params' arguments for a set of llama-server flags, and the flags it has
    no way to take (its figures then differ from llama-server's by what those change)."""

    argv: tuple[str, ...]
    unexpressed: tuple[str, ...]


@dataclass(frozen=True)
class DeviceEstimate:
    """llama.cpp's breakdown for one device, in bytes (printed in whole MiB, rounded down)."""

    device: str  # "CPU" for the host, "RPC[host:port]" for an rpc-server, else llama.cpp's name
    model_bytes: int
    context_bytes: int  # the KV cache; the small output buffer is not in it
    compute_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.context_bytes + self.compute_bytes

    def to_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "model_bytes": self.model_bytes,
            "context_bytes": self.context_bytes,
            "compute_bytes": self.compute_bytes,
        }


@dataclass(frozen=True)
class FitEstimate:
    """What ``llama-fit-params --fit-print on`` printed for one placement."""

    devices: tuple[DeviceEstimate, ...]
    argv: tuple[str, ...]
    unexpressed: tuple[str, ...] = ()

    def device(self, name: str) -> DeviceEstimate | None:
        return next((device for device in self.devices if device.device == name), None)

    def to_dict(self) -> dict[str, object]:
        return {
            "devices": [device.to_dict() for device in self.devices],
            "unexpressed": list(self.unexpressed),
        }


@dataclass(frozen=True)
class FittedArguments:
    """The placement llama.cpp's fit chose (``fits`` False: it found none)."""

    fits: bool
    n_ctx: int | None = None
    n_gpu_layers: int | None = None  # -1: every layer
    tensor_split: tuple[int, ...] = ()
    overrides: tuple[str, ...] = ()  # -ot patterns, "blk\\.0\\.ffn_(up|down)_exps=CPU"
    argv: tuple[str, ...] = ()
    unexpressed: tuple[str, ...] = field(default=())
    printed: str = ""  # the line as llama-fit-params printed it

    def to_dict(self) -> dict[str, object]:
        return {
            "fits": self.fits,
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "tensor_split": list(self.tensor_split),
            "overrides": list(self.overrides),
            "printed": self.printed,
            "unexpressed": list(self.unexpressed),
        }


def fit_params_program() -> str | None:
    """llama-fit-params on PATH or from ``yoyu engine install``, else None."""
    return llamacpp_build.found_program(PROGRAM)


# -- arguments -------------------------------------------------------------------


def fit_flags(settings: Mapping[str, object], *, placement: bool = True) -> FitFlags:
    """llama-fit-params' arguments for the engine load settings yoyu would start
    llama-server with (``placement`` False leaves ``-ngl``/``-ts`` for a fit to choose)."""
    server_flags = llama_server_flags(settings)
    argv: list[str] = []
    unexpressed: list[str] = []
    index = 0
    while index < len(server_flags):
        flag = server_flags[index]
        takes_value = flag in _TAKEN_VALUE_FLAGS or flag in _IGNORED_VALUE_FLAGS
        value = server_flags[index + 1 : index + 2] if takes_value else []
        index += 1 + len(value)
        if flag in _IGNORED_VALUE_FLAGS or flag in _IGNORED_SWITCHES:
            continue
        if flag in _PLACEMENT_FLAGS and not placement:
            continue
        if flag in _TAKEN_VALUE_FLAGS or flag in _TAKEN_SWITCHES:
            argv += [flag, *value]
        else:
            unexpressed.append(flag)
    return FitFlags(tuple(argv), tuple(unexpressed))


def _endpoints(argv: Sequence[str]) -> list[str]:
    """The ``--rpc`` endpoints in ``argv``, in llama.cpp's device order."""
    for flag, value in itertools.pairwise(argv):
        if flag == "--rpc":
            return value.split(",")
    return []


# -- parsing (pure) -----------------------------------------------------------------


def parse_fit_print(text: str, endpoints: Sequence[str] = ()) -> tuple[DeviceEstimate, ...]:
    """The ``device model context compute`` lines (MiB) of ``--fit-print on``.

    llama.cpp names rpc-servers ``RPC0``, ``RPC1``... in ``--rpc`` order; they are
    named by endpoint here, as yoyu's plan and the load log name them.
    """
    devices = []
    for line in text.splitlines():
        match = _ESTIMATE_LINE.match(line.strip())
        if match is None:
            continue
        devices.append(
            DeviceEstimate(
                device=_device_name(match["device"], endpoints),
                model_bytes=int(match["model"]) * MIB,
                context_bytes=int(match["context"]) * MIB,
                compute_bytes=int(match["compute"]) * MIB,
            )
        )
    return tuple(devices)


def _device_name(printed: str, endpoints: Sequence[str]) -> str:
    if printed == "Host":
        return HOST
    rpc = _RPC_DEVICE.match(printed)
    if rpc is not None and int(rpc["index"]) < len(endpoints):
        return f"RPC[{endpoints[int(rpc['index'])]}]"
    return printed


def parse_fitted_arguments(text: str) -> FittedArguments | None:
    """``-c N -ngl N [-ts a,b] [-ot "pattern=BUFT,..."]``, the line a fit prints last."""
    line = next((ln.strip() for ln in text.splitlines() if _FITTED_LINE.match(ln.strip())), None)
    if line is None:
        return None
    words = _split_fitted(line)
    values = dict(zip(words[::2], words[1::2], strict=False))
    split = values.get("-ts", "")
    overrides = values.get("-ot", "")
    return FittedArguments(
        fits=True,
        n_ctx=int(values["-c"]),
        n_gpu_layers=int(values["-ngl"]),
        tensor_split=tuple(int(share) for share in split.split(",") if share),
        overrides=tuple(pattern for pattern in overrides.split(",") if pattern),
        printed=line,
    )


def _split_fitted(line: str) -> list[str]:
    """Words of the fitted line; the ``-ot`` value is one quoted word (its patterns hold
    no spaces or quotes: llama.cpp writes them itself)."""
    words: list[str] = []
    for part in re.findall(r'"[^"]*"|\S+', line):
        words.append(part.strip('"'))
    return words


# -- running ------------------------------------------------------------------------


def estimate_with_llama_cpp(
    program: str, model_path: Path, settings: Mapping[str, object]
) -> FitEstimate:
    """llama.cpp's own per-device breakdown for ``settings`` as yoyu would load them."""
    flags = fit_flags(settings)
    argv = (program, "-m", str(model_path), *flags.argv, "--fit-print", "on")
    output = _run(argv)
    devices = parse_fit_print(output.stdout, _endpoints(flags.argv))
    if not devices:
        raise BackendError(f"{PROGRAM} printed no memory breakdown: {_last_line(output)}")
    return FitEstimate(devices, argv, flags.unexpressed)


def fit_with_llama_cpp(
    program: str,
    model_path: Path,
    settings: Mapping[str, object],
    margins_mib: Sequence[int] = (),
    min_ctx: int | None = None,
) -> FittedArguments:
    """The placement llama.cpp's fit picks for ``settings`` (the placement in them left
    out), keeping ``margins_mib`` free per device (llama.cpp's default: 1024 each)."""
    flags = fit_flags(settings, placement=False)
    argv = [program, "-m", str(model_path), *flags.argv]
    if margins_mib:
        argv += ["-fitt", ",".join(str(margin) for margin in margins_mib)]
    if min_ctx is not None:
        argv += ["-fitc", str(min_ctx)]
    output = _run(argv)
    fitted = parse_fitted_arguments(output.stdout)
    if fitted is not None:
        return _with_call(fitted, argv, flags)
    if "failed to fit" in output.stderr:
        return _with_call(FittedArguments(fits=False, printed=_last_line(output)), argv, flags)
    raise BackendError(f"{PROGRAM} printed no fitted arguments: {_last_line(output)}")


def _with_call(fitted: FittedArguments, argv: Sequence[str], flags: FitFlags) -> FittedArguments:
    return FittedArguments(
        fits=fitted.fits, n_ctx=fitted.n_ctx, n_gpu_layers=fitted.n_gpu_layers,
        tensor_split=fitted.tensor_split, overrides=fitted.overrides, argv=tuple(argv),
        unexpressed=flags.unexpressed, printed=fitted.printed,
    )  # fmt: skip


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise BackendError(f"{PROGRAM} took over {TIMEOUT_S:.0f} s; run it by hand") from None
    except OSError as error:
        raise BackendError(f"{PROGRAM} could not start: {error}") from None


def _last_line(output: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (output.stderr + output.stdout).splitlines()]
    meaningful = [line for line in lines if line]
    tail = meaningful[-1] if meaningful else "no output"
    return f"{tail} (exit {output.returncode})"
