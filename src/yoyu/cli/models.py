"""``yoyu models``: every model on this machine, by where it was found.

Discovery (``yoyu.models.find_installed_models``) only stats files, so this
stays instant on a disk full of large models.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from yoyu.cli.output import console, print_json
from yoyu.config import load_settings
from yoyu.i18n import N_, _
from yoyu.models import InstalledModel, find_installed_models
from yoyu.units import format_bytes

SOURCE_LABELS = {
    "ollama": "Ollama",
    "hf-cache": "Hugging Face cache",
    "lmstudio": "LM Studio",
    "path": N_("configured paths"),
}


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("models")(models_command)


def models_command(
    json_output: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the models installed in Ollama, the Hugging Face cache, LM Studio and your paths."""
    installed = find_installed_models(load_settings())
    if json_output:
        print_json([model.to_dict() for model in installed])
        return
    if not installed:
        console.print(
            _(
                "No models found. Pull one with `ollama pull qwen3:8b`, "
                "or add folders to [models] paths in yoyu.toml."
            ),
            markup=False,
        )
        return
    console.print(models_table(installed))


def models_table(installed: list[InstalledModel]) -> Table:
    title = _("Installed models ({count})").format(count=len(installed))
    table = Table(title=title, title_justify="left")
    table.add_column(_("source"))
    table.add_column(_("name"), no_wrap=True)
    table.add_column(_("format"))
    table.add_column(_("size"), justify="right", no_wrap=True)
    table.add_column(_("path"), overflow="fold")
    for model in installed:
        table.add_row(
            _(SOURCE_LABELS.get(model.source, model.source)),
            escape(model.name),
            model.format,
            format_bytes(model.size_bytes),
            escape(str(model.path)),
        )
    return table
