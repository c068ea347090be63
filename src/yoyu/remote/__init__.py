"""Models that are not on this disk yet: the Hugging Face Hub and GGUF files at URLs.

The edge between yoyu's pure model readers and the network (DESIGN.md): the
core reads bytes, this package fetches them (HTTP Range requests for a
header, a resumable download for ``yoyu pull``) and talks to the Hub through
``huggingface_hub``. Nothing in ``models/``, ``estimate/`` or ``plan/``
imports it; the CLI does.
"""
