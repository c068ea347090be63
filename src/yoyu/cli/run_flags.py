"""How to load a model, as flags: declared once, worn by every command that needs them.

``yoyu run``, ``chat``, ``soak`` and ``plan`` take the same load settings
(context, batches, KV type, flash attention, GPU layers); those that really
load a model also take ``--force``. A command declares one parameter,
``flags: RunFlags``, and wears ``@with_run_flags(...)``: the decorator puts
the options into the signature Typer reads (so ``--help`` lists them as
usual) and hands them to the command as one ``RunFlags``. Their names, help
and defaults live here and nowhere else.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Annotated, Any, TypeVar

import typer

from yoyu.errors import SettingsError
from yoyu.estimate.types import RunSettings
from yoyu.machine.machine_file import parse_size
from yoyu.runner.options import DEFAULT_SETTINGS, RunConfig

Command = TypeVar("Command", bound=Callable[..., Any])

RUN_CTX_HELP = "Context tokens (0 = the model's own)."
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Run even when the plan says it does not fit.")
]
CtxOpt = Annotated[int, typer.Option(help=RUN_CTX_HELP)]
# Options take the place of ``flags``: after the arguments, before the command's own options.
_IN_PLACE = inspect.Parameter.POSITIONAL_OR_KEYWORD


@dataclass(frozen=True)
class RunFlags:
    """The load settings as given on the command line."""

    ctx: int | None  # None: the command's own rule (``yoyu plan``: the model's, capped)
    batch: int | None  # None: llama.cpp's default (``yoyu plan``, whose --train reads it too)
    ubatch: int
    kv_type: str
    flash_attn: bool
    gpu_layers: int | None  # None: the most the plan fits
    n_cpu_moe: int = 0  # 0: the plan keeps experts on the CPU only when that is faster
    kv_cache_memory: str | None = None  # vLLM's KV pool, e.g. "4GiB"
    force: bool = False

    def settings(self, n_ctx: int | None = None, **more: Any) -> RunSettings:
        """llama.cpp's settings; ``n_ctx`` when the command resolved ``ctx`` itself."""
        context = self.ctx if n_ctx is None else n_ctx
        if context is None:
            raise ValueError("no --ctx and none resolved by the command")
        return RunSettings(
            n_ctx=context,
            n_batch=self.n_batch, n_ubatch=min(self.ubatch, self.n_batch),
            type_k=self.kv_type, type_v=self.kv_type, flash_attn=self.flash_attn,
            n_cpu_moe=self.n_cpu_moe, kv_cache_bytes=self._kv_cache_bytes(), **more,
        )  # fmt: skip

    @property
    def n_batch(self) -> int:
        return DEFAULT_SETTINGS.n_batch if self.batch is None else self.batch

    def _kv_cache_bytes(self) -> int | None:
        if self.kv_cache_memory is None:
            return None
        try:
            return int(parse_size(self.kv_cache_memory))
        except ValueError:
            raise SettingsError.from_message(
                "{flag} {text!r} is not a size; write e.g. 4GiB",
                flag="--kv-cache-memory", text=self.kv_cache_memory,
            ) from None  # fmt: skip

    def run_config(self, model: str) -> RunConfig:
        """What ``ModelRun`` loads: ``model`` with these settings."""
        return RunConfig(model, self.settings(), n_gpu_layers=self.gpu_layers, force=self.force)


def with_run_flags(
    *, ctx_default: int | None = DEFAULT_SETTINGS.n_ctx, ctx_help: str = RUN_CTX_HELP,
    force: bool = True, batch_default: int | None = DEFAULT_SETTINGS.n_batch,
    batch_help: str = "Logical batch (n_batch).",
) -> Callable[[Command], Command]:  # fmt: skip
    """Replace the command's ``flags`` parameter by the load options, in its place."""

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)  # Typer needs the objects
        options = _options(ctx_default, ctx_help, force, (batch_default, batch_help))
        names = [option.name for option in options]
        parameters = []
        for parameter in signature.parameters.values():
            parameters += options if parameter.name == "flags" else [parameter]
        if "flags" not in signature.parameters:
            raise TypeError(f"{command.__name__} must declare a 'flags: RunFlags' parameter")

        @functools.wraps(command)
        def with_flags(*args: Any, **kwargs: Any) -> Any:
            flags = RunFlags(**{name: kwargs.pop(name) for name in names})
            return command(*args, flags=flags, **kwargs)

        with_flags.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return with_flags  # type: ignore[return-value]

    return decorate


def _options(
    ctx_default: int | None, ctx_help: str, force: bool, batch: tuple[int | None, str]
) -> list[inspect.Parameter]:
    table: list[tuple[str, Any, Any]] = [
        ("ctx", Annotated[int | None, typer.Option(help=ctx_help)], ctx_default),
        ("batch", Annotated[int | None, typer.Option(help=batch[1])], batch[0]),
        ("ubatch", Annotated[int, typer.Option(help="Physical batch (n_ubatch).")],
         DEFAULT_SETTINGS.n_ubatch),
        ("kv_type", Annotated[str, typer.Option(help="KV cache type: f16, q8_0, q4_0...")], "f16"),
        ("flash_attn", Annotated[bool, typer.Option("--flash-attn/--no-flash-attn")], False),
        ("gpu_layers", Annotated[
            int | None, typer.Option(help="n_gpu_layers (-1 all; default: the most the plan fits).")
        ], None),
        ("n_cpu_moe", Annotated[int, typer.Option(
            "--n-cpu-moe", min=0,
            help="Keep the MoE experts of the first N blocks on the CPU (llama-server). "
            "Default: the plan does so when it decodes faster than fewer GPU layers.",
        )], 0),
        ("kv_cache_memory", Annotated[str | None, typer.Option(
            help="vLLM: its KV pool, e.g. 4GiB (default 4 GiB; --kv-cache-memory-bytes).",
        )], None),
    ]  # fmt: skip
    if force:
        table.append(("force", ForceOpt, False))
    assert {name for name, _, _ in table} | {"force"} == {f.name for f in fields(RunFlags)}
    return [
        inspect.Parameter(name, _IN_PLACE, default=default, annotation=kind)
        for name, kind, default in table
    ]
