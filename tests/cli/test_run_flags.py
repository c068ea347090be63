"""The load options, declared once in ``cli/run_flags.py``, on every command that wears them."""

from __future__ import annotations

from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from yoyu.cli import app
from yoyu.cli.run_flags import RunFlags, with_run_flags

LOAD_OPTIONS = ("--ctx", "--batch", "--ubatch", "--kv-type", "--flash-attn", "--gpu-layers")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "chat", "soak", "plan"])
def test_each_command_lists_the_load_options_beside_its_own(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for option in LOAD_OPTIONS:
        assert option in result.output
    assert "--json" in result.output and "--as-json" not in result.output
    assert ("--force" in result.output) == (command != "plan")


def test_the_command_gets_one_value_with_what_was_typed() -> None:
    seen: list[tuple[str, RunFlags, bool]] = []
    toy = typer.Typer()

    @toy.command()
    @with_run_flags()
    def load(
        model: str, flags: RunFlags, loud: Annotated[bool, typer.Option("--loud")] = False
    ) -> None:
        seen.append((model, flags, loud))

    argv = ["m.gguf", "--ctx", "2048", "--ubatch", "1024", "--kv-type", "q8_0", "--force", "--loud"]
    result = CliRunner().invoke(toy, argv)
    assert result.exit_code == 0, result.output
    ((model, flags, loud),) = seen
    assert (model, loud) == ("m.gguf", True)
    assert flags == RunFlags(2048, 512, 1024, "q8_0", False, None, force=True)
    settings = flags.run_config(model).settings
    assert (settings.n_ctx, settings.n_ubatch, settings.type_v) == (2048, 512, "q8_0")


def test_a_command_without_a_flags_parameter_is_a_mistake_found_at_import() -> None:
    def no_flags(model: str) -> None:
        pass

    with pytest.raises(TypeError, match="flags: RunFlags"):
        with_run_flags()(no_flags)
