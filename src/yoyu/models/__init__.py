"""Everything yoyu knows about a model before running it, from any source.

``resolve_model`` turns what a user types (a path, an Ollama name, an installed
or catalog name) into one ``ModelSpec``; ``find_installed_models`` lists what is
on disk without opening any weights.
"""

from __future__ import annotations

from yoyu.models.discover import InstalledModel, find_installed_models
from yoyu.models.resolve import resolve_model
from yoyu.models.spec import ModelSpec

__all__ = ["InstalledModel", "ModelSpec", "find_installed_models", "resolve_model"]
