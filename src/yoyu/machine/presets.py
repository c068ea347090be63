"""Machine presets: named TOML descriptions of machines a plan can target.

Built-in presets ship in ``yoyu/machine/presets/*.toml``; a user adds files to
``config_dir()/machines/`` (``$YOYU_HOME/machines`` when that is set), and a user
file shadows a built-in of the same name. The file format itself lives in
``yoyu.machine.machine_file``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from yoyu.errors import MachineError
from yoyu.machine.machine_file import machine_from_document
from yoyu.machine.types import Machine
from yoyu.paths import config_dir
from yoyu.toml import TOMLDecodeError, load_toml


@dataclass(frozen=True)
class PresetRef:
    """One machine description yoyu can load by name."""

    name: str
    origin: str  # "built-in" or "user"
    path: str
    description: str


def list_presets(env: Mapping[str, str] | None = None) -> list[PresetRef]:
    """Built-in and user presets by name; a user file shadows a built-in of the same name."""
    by_name = {path.stem: (path, "built-in") for path in _builtin_files()}
    by_name.update({path.stem: (path, "user") for path in _user_files(env)})
    return [
        PresetRef(name, origin, str(path), _description(path))
        for name, (path, origin) in sorted(by_name.items())
    ]


def load_machine(name_or_path: str, env: Mapping[str, str] | None = None) -> Machine:
    """A preset by name ("mac-studio-m2-max-32g") or a path to a machine TOML file."""
    if _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise MachineError.from_message(
                "machine file {path} not found; give a preset name or a .toml path", path=path
            )
        return machine_from_file(path)
    presets = {ref.name: ref for ref in list_presets(env)}
    if name_or_path not in presets:
        raise _unknown_preset(name_or_path, sorted(presets))
    return machine_from_file(Path(presets[name_or_path].path))


def machine_from_file(path: Path) -> Machine:
    """Read one machine TOML file; every problem names the file and the key."""
    document = _read_toml(path)
    name = document.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise MachineError(f"{path}: name must be a non-empty string")
    return machine_from_document(document, name=name, origin=str(path))


def _builtin_files() -> list[Path]:
    folder = resources.files("yoyu.machine").joinpath("presets")
    return sorted(Path(str(item)) for item in folder.iterdir() if item.name.endswith(".toml"))


def _user_files(env: Mapping[str, str] | None) -> list[Path]:
    folder = config_dir(env) / "machines"
    return sorted(folder.glob("*.toml")) if folder.is_dir() else []


def _looks_like_path(name_or_path: str) -> bool:
    return name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path


def _unknown_preset(name: str, known: list[str]) -> MachineError:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
    if close:
        return MachineError.from_message(
            "unknown machine preset '{name}'; did you mean '{close}'? "
            "(list them with `yoyu machine --list-presets`)",
            name=name, close=close[0],
        )  # fmt: skip
    return MachineError.from_message(
        "unknown machine preset '{name}' (list them with `yoyu machine --list-presets`)", name=name
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return load_toml(path)
    except TOMLDecodeError as error:
        raise MachineError.from_message(
            "{path}: not valid TOML ({error})", path=path, error=error
        ) from None
    except OSError as error:
        raise MachineError.from_message(
            "{path}: cannot be read ({reason})", path=path, reason=error.strerror
        ) from None


def _description(path: Path) -> str:
    description = _read_toml(path).get("description", "")
    return description if isinstance(description, str) else ""
