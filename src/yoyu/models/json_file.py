"""Small JSON files a model comes with (``config.json``, Ollama manifests), read bounded.

A size cap first, so a huge or hostile file is refused before it is parsed;
every way it can be wrong is a one-line ``ModelFileError`` naming the path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from yoyu.errors import ModelFileError


def read_json_object(path: Path, *, max_bytes: int, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``what`` names the expected file ("a config")."""
    try:
        if path.stat().st_size > max_bytes:
            raise ModelFileError(f"{path}: larger than {max_bytes} bytes; not {what}")
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read ({error.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: not valid JSON; expected {what}") from None
    if not isinstance(document, dict):
        raise ModelFileError(f"{path}: not a JSON object; expected {what}")
    return document
