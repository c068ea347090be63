"""Babel's side of the message catalog: extract, merge and compile (development only).

yoyu itself reads the compiled ``yoyu.mo`` with the stdlib ``gettext``; Babel
is in the ``test`` extra and only this module imports it. The tests call the
same functions a developer runs after changing a message:

    python -m yoyu.testing.catalog update    # extract from src/, merge into each .po
    python -m yoyu.testing.catalog compile   # write each .mo beside its .po

(``pybabel extract -F pyproject.toml -k from_message -k message_of -k Message -k N_ -o yoyu.pot
src/yoyu`` reads the same mapping from ``[tool.babel]``.)
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import typer
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from typer import _click

from yoyu.i18n import DOMAIN, LANGUAGES, LOCALE_DIR

SOURCE_DIR = LOCALE_DIR.parent
# The calls whose first argument is a message id, beside gettext's own names.
KEYWORDS = {
    **DEFAULT_KEYWORDS,
    "from_message": None,
    "message_of": None,
    "Message": None,
    "N_": None,
}
# Only the modules that speak to a user (the CLI and the errors it shows, the
# dashboard's words); the testing helpers and the gateway's wire formats never
# reach the catalog. The first pattern that matches a file decides.
METHOD_MAP = [
    ("gateway/dashboard/language.py", "python"),
    ("testing/**.py", "ignore"), ("gateway/**.py", "ignore"), ("mcp/**.py", "ignore"),
    ("**.py", "python"),
]  # fmt: skip


def extract_template() -> Catalog:
    """Every message id: Babel's extraction from the source, then the commands' help."""
    template = Catalog(project="yoyu", domain=DOMAIN)
    found = extract_from_dir(
        str(SOURCE_DIR), method_map=METHOD_MAP, keywords=KEYWORDS, comment_tags=("i18n:",)
    )
    for filename, lineno, message_id, comments, context in found:
        found_at = [(f"src/yoyu/{filename}", lineno)]
        template.add(message_id, None, found_at, auto_comments=comments, context=context)
    for text, command in help_texts():
        if text not in template:
            template.add(text, None, [(command, 0)], auto_comments=["help text"])
    return template


def help_texts() -> list[tuple[str, str]]:
    """(text, command) for each help text of every command, as typer built it.

    Docstrings and ``help=`` are not calls Babel's extractor can see, so the
    built commands are read instead (``yoyu.cli.registry.translated_help``
    looks the same texts up).
    """
    from yoyu.cli import app
    from yoyu.cli.registry import COMMANDS, load_command

    top = typer.main.get_group(app)
    texts = [(top.help or "", "yoyu"), *_param_texts(top, "yoyu")]
    for entry in COMMANDS:
        texts.append((entry.help, f"yoyu-{entry.name}"))
        texts += _command_texts(load_command(entry), f"yoyu-{entry.name}")
    return [(text, where) for text, where in texts if text]


def _command_texts(command: _click.Command, where: str) -> list[tuple[str, str]]:
    texts = [(command.help or "", where), (command.short_help or "", where)]
    texts += _param_texts(command, where)
    for name, subcommand in getattr(command, "commands", {}).items():
        texts += _command_texts(subcommand, f"{where}-{name}")
    return texts


def _param_texts(command: _click.Command, where: str) -> list[tuple[str, str]]:
    return [(getattr(param, "help", None) or "", where) for param in command.params]


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(language: str) -> Catalog:
    with po_path(language).open("rb") as stream:
        return read_po(stream, locale=language, domain=DOMAIN)


def compiled(catalog: Catalog) -> bytes:
    """The .mo bytes of ``catalog``, as ``compile`` writes them."""
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    return buffer.getvalue()


def update() -> None:
    """Merge the extracted ids into each .po (new ids untranslated, gone ids obsolete)."""
    template = extract_template()
    for language in LANGUAGES[1:]:
        catalog = read_catalog(language)
        catalog.update(template, no_fuzzy_matching=True, update_header_comment=False)
        catalog.obsolete.clear()  # version control keeps what was removed
        with po_path(language).open("wb") as stream:
            write_po(stream, catalog, width=100, sort_by_file=True, ignore_obsolete=True)


def compile_all() -> None:
    for language in LANGUAGES[1:]:
        po_path(language).with_suffix(".mo").write_bytes(compiled(read_catalog(language)))


if __name__ == "__main__":
    {"update": update, "compile": compile_all}[sys.argv[1]]()
