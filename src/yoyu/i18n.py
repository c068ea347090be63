"""The one message catalog: English in the source, Japanese from ``locale/ja``.

English text in the code is the message id; ``_()`` looks it up in the
catalog of the user's language and ``ngettext`` picks the form for a count.
Errors carry a ``Message`` (id + values) rather than finished text, so the
library never decides the language: the CLI edge renders them in the user's
language, and the gateway and MCP server keep answering in English, which is
what the programs reading them parse.

The language: ``YOYU_LANG`` (``ja``/``en``) wins; otherwise the first set of
``LC_ALL``, ``LC_MESSAGES``, ``LANG`` (POSIX precedence) chooses Japanese when
it names ``ja``. English is the default. Only the stdlib ``gettext`` runs
here (Babel extracts and compiles the catalog in development and tests,
``yoyu.testing.catalog``). The compiled ``yoyu.mo`` is committed beside its
``yoyu.po`` rather than built by a hatch hook: a checkout, ``pip install -e .``
and the wheel then all carry it with no build step and no Babel at build
time (the wheel holds ``yoyu/locale/ja/LC_MESSAGES/yoyu.mo``), and a test
recompiles the ``.po`` and checks that the committed ``.mo`` matches.

Placeholders are ``str.format`` fields (``{size}``); numbers and units are
formatted by the caller and inserted as they are.
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Mapping
from pathlib import Path

DOMAIN = "yoyu"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "ja")  # English is the source; each other one has a catalog
_POSIX_ORDER = ("LC_ALL", "LC_MESSAGES", "LANG")

_active: gettext.NullTranslations | None = None


def language_from(environ: Mapping[str, str]) -> str:
    """``ja`` or ``en`` for this environment: YOYU_LANG, else the POSIX locale variables."""
    chosen = environ.get("YOYU_LANG", "").strip().lower()
    if not chosen:
        chosen = next((environ[name] for name in _POSIX_ORDER if environ.get(name)), "")
    return "ja" if chosen.lower().startswith("ja") else "en"


def translations(language: str) -> gettext.NullTranslations:
    """The catalog of ``language``; English (and a missing catalog) translates nothing."""
    if language == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


def use_language(language: str | None = None) -> str:
    """Switch the process to ``language`` (None: read the environment again); returns it."""
    global _active
    chosen = language or language_from(os.environ)
    _active = translations(chosen)
    return chosen


def _catalog() -> gettext.NullTranslations:
    if _active is None:
        use_language()
    assert _active is not None
    return _active


def _(message_id: str) -> str:
    """``message_id`` (the English text) in the user's language."""
    return _catalog().gettext(message_id)


def ngettext(singular: str, plural: str, count: int) -> str:
    """The form of a counted message for ``count``, in the user's language."""
    return _catalog().ngettext(singular, plural, count)


def N_(message_id: str) -> str:  # noqa: N802 -- the gettext convention for "mark, translate later"
    """Mark a constant for the catalog; it is translated where it is shown."""
    return message_id


class Message(str):
    """A message id (the English template) with the values for its ``{fields}``.

    It *is* its English text (a ``str``): logs, JSON, HTTP bodies and code
    that searches it read English, as before; ``render`` gives the user's
    language. A value may itself be a ``Message`` (an advice clause, a
    reason); it renders in the same language as the message around it.
    """

    id: str
    values: Mapping[str, object]

    def __new__(cls, message_id: str, values: Mapping[str, object] | None = None) -> Message:
        values = dict(values or {})
        english = message_id.format(**values)  # a Message value formats as its English text
        text = super().__new__(cls, english)
        text.id, text.values = message_id, values
        return text

    def __getnewargs__(self) -> tuple[str, Mapping[str, object]]:  # type: ignore[override]
        return (self.id, self.values)

    def english(self) -> str:
        return str.__str__(self)

    def render(self) -> str:
        """The message in the user's language."""
        values = {key: _rendered(value) for key, value in self.values.items()}
        return _(self.id).format(**values)


def message_of(message_id: str, /, **values: object) -> Message:
    """``Message(message_id, values)``, spelled as a call the catalog's extractor finds."""
    return Message(message_id, values)


def _rendered(value: object) -> object:
    return value.render() if isinstance(value, Message) else value


def render_text(text: str | Message) -> str:
    """A text that may be a ``Message`` (a plan's reason) in the user's language."""
    return text.render() if isinstance(text, Message) else text


def render_error(error: BaseException) -> str:
    """An error's one line in the user's language: its ``Message``, else its English text."""
    carried = getattr(error, "message", None)
    return carried.render() if isinstance(carried, Message) else str(error)
