"""Everything yoyu knows about a model before running it, from any source.

``resolve_model`` turns what a user types (a path, an Ollama name, an installed
or catalog name) into one ``ModelSpec``; ``find_installed_models`` lists what is
on disk without opening any weights. Each is imported when first used: reading
a file's spec needs no scan of the installed models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoyu.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from yoyu.models.discover import InstalledModel, find_installed_models
    from yoyu.models.resolve import resolve_model
    from yoyu.models.spec import ModelSpec
else:  # each submodule is imported when one of its names is first used
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "yoyu.models.discover": ("InstalledModel", "find_installed_models"),
            "yoyu.models.resolve": ("resolve_model",),
            "yoyu.models.spec": ("ModelSpec",),
        },
    )

__all__ = ["InstalledModel", "ModelSpec", "find_installed_models", "resolve_model"]
