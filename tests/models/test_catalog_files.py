"""The catalog's files read through a parsed copy in the user's cache: the same documents
as TOML gives, a changed file never served stale, and no cache that can be written (or a
broken copy) is no error."""

from __future__ import annotations

from pathlib import Path

import pytest

import yoyu.toml
from yoyu.errors import ConfigError
from yoyu.models.catalog import CATALOG_DIR, load_catalog
from yoyu.models.catalog_files import catalog_documents
from yoyu.toml import load_toml

_FAMILY = """family = "m"
basis = "recalled"

[models."m:1b"]
params = 1
files = { Q4_K_M = "1.0GB" }
[models."m:1b".config]
model_type = "llama"
hidden_size = 2048
intermediate_size = 8192
num_hidden_layers = 16
num_attention_heads = 32
num_key_value_heads = 8
vocab_size = 32000
max_position_embeddings = 4096
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "catalog_data"
    folder.mkdir()
    (folder / "m.toml").write_text(_FAMILY, encoding="utf-8")
    return folder


def _parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every TOML parse from now on, recorded."""
    parsed: list[bytes] = []
    real = yoyu.toml.parse_toml

    def recording(content: bytes) -> dict[str, object]:
        parsed.append(content)
        return real(content)

    monkeypatch.setattr(yoyu.toml, "parse_toml", recording)
    return parsed


def test_the_bundled_catalog_reads_back_as_its_toml_says(tmp_path: Path) -> None:
    first = catalog_documents(CATALOG_DIR, tmp_path / "cache")  # parsed, copy written
    second = catalog_documents(CATALOG_DIR, tmp_path / "cache")  # read from the copy
    expected = [(path, load_toml(path)) for path in sorted(CATALOG_DIR.glob("*.toml"))]
    assert first == expected
    assert second == expected
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1


def test_a_second_read_parses_no_toml(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = _parses(monkeypatch)
    catalog_documents(folder, tmp_path / "cache")
    assert len(parsed) == 1
    catalog_documents(folder, tmp_path / "cache")
    assert len(parsed) == 1


def test_a_changed_file_is_parsed_again_and_the_old_copy_goes(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    ((_, before),) = catalog_documents(folder, cache)
    (folder / "m.toml").write_text(_FAMILY.replace("params = 1", "params = 2"), encoding="utf-8")
    parsed = _parses(monkeypatch)
    ((_, after),) = catalog_documents(folder, cache)
    assert (before["models"]["m:1b"]["params"], after["models"]["m:1b"]["params"]) == (1, 2)
    assert len(parsed) == 1
    assert len(list(cache.glob("*.json"))) == 1


def test_an_added_file_is_a_new_copy(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    catalog_documents(folder, cache)
    (folder / "n.toml").write_text(_FAMILY.replace('"m', '"n'), encoding="utf-8")
    assert [path.name for path, _ in catalog_documents(folder, cache)] == ["m.toml", "n.toml"]


def test_a_cache_that_cannot_be_written_still_reads_the_catalog(
    folder: Path, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder", encoding="utf-8")
    documents = catalog_documents(folder, blocked / "cache")  # mkdir fails: parse each time
    assert documents[0][1]["models"]["m:1b"]["params"] == 1
    assert blocked.read_text(encoding="utf-8") == "not a folder"


def test_the_data_folder_is_only_read(folder: Path, tmp_path: Path) -> None:
    catalog_documents(folder, tmp_path / "cache")
    assert [path.name for path in folder.iterdir()] == ["m.toml"]


def test_a_broken_copy_is_ignored(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    catalog_documents(folder, cache)
    (copy,) = cache.glob("*.json")
    copy.write_text('{"files": ["m.toml"], "documents": [[]]}', encoding="utf-8")
    assert catalog_documents(folder, cache)[0][1]["family"] == "m"
    copy.write_text("{truncated", encoding="utf-8")
    assert catalog_documents(folder, cache)[0][1]["family"] == "m"


def test_bad_toml_names_the_file(folder: Path, tmp_path: Path) -> None:
    (folder / "m.toml").write_text("family = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"m\.toml: the model catalog cannot be read"):
        catalog_documents(folder, tmp_path / "cache")


def test_the_loader_reads_through_the_users_cache(folder: Path, isolated_home: Path) -> None:
    """``load_catalog`` keeps its copy under the user's cache folder (``YOYU_HOME`` here)."""
    (entry,) = load_catalog(folder)
    assert entry.name == "m:1b"
    assert list((isolated_home / "yoyu" / "cache" / "catalog").glob("*.json"))
