"""The hashed lock files the README installs: in step with pyproject.toml, every pin
hashed, and no network-calling proxy (LiteLLM's 1.82.7/1.82.8 on PyPI were compromised)
in what a plain install brings."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - yoyu depends on tomli below 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PROXIES = {"litellm", "langchain", "openai-proxy"}  # packages that call out on their own
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def pins(lock: str) -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, marker)]; a name is pinned once per marker of a universal lock."""
    found: dict[str, list[tuple[str, str]]] = {}
    for line in (ROOT / lock).read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            name = canonicalize_name(match[1])
            found.setdefault(name, []).append((match[2], (match[3] or "").strip()))
    return found


def direct(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    listed = [*project["dependencies"], *(project["optional-dependencies"][extra] if extra else [])]
    return [Requirement(entry) for entry in listed]


@pytest.mark.parametrize(("lock", "extra"), [("requirements.lock", None),
                                             ("requirements-test.lock", "test")])  # fmt: skip
def test_every_direct_dependency_is_pinned_within_its_range(lock: str, extra: str | None) -> None:
    pinned = pins(lock)
    for requirement in direct(extra):
        if requirement.marker and not requirement.marker.evaluate({"python_version": "3.11"}):
            continue
        versions = pinned.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is in pyproject.toml but not in {lock}: bash .ci/lock"
        assert any(requirement.specifier.contains(v, prereleases=True) for v, _ in versions), (
            f"{lock} pins {requirement.name} at {versions}, outside {requirement.specifier}"
        )


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-test.lock"])
def test_every_pin_carries_hashes_and_no_proxy_is_installed(lock: str) -> None:
    text = (ROOT / lock).read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])  # one block per pin
    assert len(blocks) == sum(len(versions) for versions in pins(lock).values())
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]
    assert not PROXIES & set(pins(lock)), f"{lock} brings a network-calling proxy"
