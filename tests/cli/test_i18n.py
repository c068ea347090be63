"""Japanese and English: one catalog, complete, and the CLI speaking it.

The template is extracted from the source here with Babel (the same
``yoyu.testing.catalog`` a developer runs), so a new message without a
Japanese entry fails, and so does a translation that drops or renames a
``{placeholder}``. The committed ``yoyu.mo`` must be what the ``yoyu.po``
compiles to. The CLI runs as a user runs it, in a child process with the
locale variables a shell would set.
"""

from __future__ import annotations

import gettext
import io
import json
import os
import string
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog

from yoyu.errors import ModelNotFoundError, YoyuError
from yoyu.i18n import LOCALE_DIR, Message, language_from, render_error, use_language
from yoyu.testing.catalog import compiled, extract_template, read_catalog
from yoyu.testing.tiny_models import write_tiny_model

PRESET = "mac-studio-m2-max-32g"


@pytest.fixture(scope="module")
def template() -> Catalog:
    return extract_template()


@pytest.fixture(scope="module")
def japanese() -> Catalog:
    return read_catalog("ja")


def fields(text: str) -> set[str]:
    """The ``{name}`` / ``{name!r}`` fields of a str.format template."""
    return {
        f"{name}!{conversion}" if conversion else name
        for _, name, _, conversion in string.Formatter().parse(text)
        if name is not None
    }


def test_the_template_holds_the_messages_users_meet(template: Catalog) -> None:
    ids = {message.id for message in template if isinstance(message.id, str)}
    assert {"FITS", "DOES_NOT_FIT", "Memory per device", "error: {message}"} <= ids
    assert "{path}: no such file" in ids  # an error message id, from YoyuError.from_message
    assert "Plan a model on a machine: per-device memory, layer split, verdict, risk, speed, " \
        "moves." in ids  # a command's help, read from the built command  # fmt: skip
    assert len(ids) > 400


def test_every_message_id_has_a_japanese_entry(template: Catalog, japanese: Catalog) -> None:
    missing = []
    for message in template:
        if not message.id:
            continue
        entry = japanese.get(message.id)
        strings = () if entry is None else entry.string
        forms = (strings,) if isinstance(strings, str) else tuple(strings)
        if entry is None or entry.fuzzy or not forms or not all(forms):
            missing.append(message.id)
    assert missing == [], f"{len(missing)} without Japanese: python -m yoyu.testing.catalog update"


def test_placeholders_match_between_english_and_japanese(japanese: Catalog) -> None:
    mismatched = []
    for entry in japanese:
        if not entry.id or not entry.string:
            continue
        ids = (entry.id,) if isinstance(entry.id, str) else tuple(entry.id)
        strings = (entry.string,) if isinstance(entry.string, str) else tuple(entry.string)
        expected = set().union(*(fields(text) for text in ids))
        for text in strings:
            if fields(text) != expected or ("%(" in text) != any("%(" in i for i in ids):
                mismatched.append((entry.id, text))
    assert mismatched == []


def test_the_committed_mo_is_the_compiled_po(japanese: Catalog) -> None:
    committed = LOCALE_DIR / "ja" / "LC_MESSAGES" / "yoyu.mo"
    fresh = gettext.GNUTranslations(io.BytesIO(compiled(japanese)))
    shipped = gettext.GNUTranslations(io.BytesIO(committed.read_bytes()))
    assert shipped._catalog == fresh._catalog, "run: python -m yoyu.testing.catalog compile"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("environ", "language"),
    [
        ({}, "en"),
        ({"LANG": "ja_JP.UTF-8"}, "ja"),
        ({"LANG": "C"}, "en"),
        ({"LANG": "ja_JP.UTF-8", "LC_ALL": "C"}, "en"),  # LC_ALL first
        ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "ja_JP.UTF-8"}, "ja"),  # then LC_MESSAGES
        ({"LC_ALL": "", "LANG": "ja_JP.eucJP"}, "ja"),  # an empty variable is unset
        ({"YOYU_LANG": "ja", "LANG": "C"}, "ja"),  # YOYU_LANG wins
        ({"YOYU_LANG": "en", "LC_ALL": "ja_JP.UTF-8"}, "en"),
    ],
)
def test_the_language_follows_yoyu_lang_then_posix_order(
    environ: dict[str, str], language: str
) -> None:
    assert language_from(environ) == language


def test_an_error_carries_its_message_id_and_renders_at_the_edge() -> None:
    error = ModelNotFoundError.from_message("{path}: no such file", path="/m/x.gguf")
    assert str(error) == "/m/x.gguf: no such file"  # logs and HTTP bodies: English
    assert isinstance(error.message, Message)
    assert (error.message.id, error.message.values) == (
        "{path}: no such file",
        {"path": "/m/x.gguf"},
    )
    try:
        use_language("ja")
        assert render_error(error) == "/m/x.gguf: ファイルがありません"
        assert render_error(YoyuError("plain text")) == "plain text"  # not converted: as is
    finally:
        use_language("en")
    assert render_error(error) == "/m/x.gguf: no such file"


def test_a_nested_message_renders_in_the_same_language() -> None:
    advice = Message("the file is corrupt; download or convert it again")
    error = YoyuError.from_message(
        "{path}: byte {at}: {what}; {advice}", path="m.gguf", at=8, what="tensor count",
        advice=advice,
    )  # fmt: skip
    assert str(error) == (
        "m.gguf: byte 8: tensor count; the file is corrupt; download or convert it again"
    )
    try:
        use_language("ja")
        assert render_error(error).endswith(
            "ファイルが壊れています。もう一度ダウンロードするか変換し直してください"
        )
    finally:
        use_language("en")


# --- the CLI in a child process, as a user runs it -------------------------------------


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("i18n") / "tiny.gguf", "llama").path


def yoyu(*args: str, **locale: str) -> subprocess.CompletedProcess[str]:
    """``python -m yoyu ARGS`` with only the locale variables given (and a private home)."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if name not in ("LANG", "LANGUAGE", "YOYU_LANG") and not name.startswith("LC_")
    }
    return subprocess.run(
        [sys.executable, "-m", "yoyu", *args], env={**environ, **locale},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_plan_speaks_japanese_under_a_japanese_lang(tiny_gguf: Path) -> None:
    result = yoyu("plan", str(tiny_gguf), "--machine", PRESET, LANG="ja_JP.UTF-8")
    assert result.returncode == 0, result.stderr
    assert "判定 収まります、リスク 安全" in result.stdout
    assert "デバイスごとのメモリ" in result.stdout
    assert "MiB" in result.stdout and "GiB" in result.stdout  # units stay as they are
    assert "Verdict" not in result.stdout


@pytest.mark.slow
def test_inspect_speaks_japanese_with_yoyu_lang(tiny_gguf: Path) -> None:
    result = yoyu("inspect", str(tiny_gguf), YOYU_LANG="ja", LANG="C")
    assert result.returncode == 0, result.stderr
    assert "アーキテクチャ" in result.stdout and "量子化の内訳" in result.stdout
    assert "llama" in result.stdout  # names stay as they are


@pytest.mark.slow
def test_a_user_error_is_one_japanese_line_and_exit_code_2(tiny_gguf: Path) -> None:
    result = yoyu("plan", str(tiny_gguf), "--machine", "mac-studio-m2", LANG="ja_JP.UTF-8")
    assert result.returncode == 2
    assert result.stderr.startswith("エラー: 不明なマシンプリセット 'mac-studio-m2' です。")
    assert "'mac-studio-m2-max-32g' のことですか？" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    truncated = tiny_gguf.with_name("truncated.gguf")
    truncated.write_bytes(tiny_gguf.read_bytes()[:-4096])  # a download cut in the weights
    cut = yoyu("inspect", str(truncated), YOYU_LANG="ja")
    assert cut.returncode == 2
    assert cut.stderr.startswith(f"エラー: {truncated}: ")
    assert "ファイルが途中で切れています（ダウンロードの中断？）" in cut.stderr
    missing = yoyu("inspect", "gemma9:1b", YOYU_LANG="ja")
    assert missing.returncode == 2
    assert missing.stderr.startswith("エラー: モデル 'gemma9:1b' が見つかりません")


@pytest.mark.slow
@pytest.mark.parametrize("locale", [{"LANG": "C"}, {"YOYU_LANG": "en", "LANG": "ja_JP.UTF-8"}])
def test_english_under_c_or_yoyu_lang_en(tiny_gguf: Path, locale: dict[str, str]) -> None:
    result = yoyu("plan", str(tiny_gguf), "--machine", PRESET, **locale)
    assert result.returncode == 0, result.stderr
    assert "Verdict FITS, risk safe" in result.stdout and "Memory per device" in result.stdout
    error = yoyu("plan", str(tiny_gguf), "--machine", "nowhere", **locale)
    assert error.stderr.startswith("error: unknown machine preset 'nowhere'")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("plan", "{gguf}", "--machine", PRESET),
        ("inspect", "{gguf}"),
        ("machine", "--preset", PRESET),
    ],
    ids=lambda args: args[0],
)
def test_json_output_does_not_change_with_the_language(
    tiny_gguf: Path, args: tuple[str, ...]
) -> None:
    argv = [arg.format(gguf=tiny_gguf) for arg in args] + ["--json"]
    english = yoyu(*argv, LANG="C")
    japanese = yoyu(*argv, LANG="ja_JP.UTF-8")
    assert english.returncode == japanese.returncode == 0, japanese.stderr
    assert json.loads(japanese.stdout) == json.loads(english.stdout)
    assert not any("\u3040" <= char <= "\u30ff" for char in japanese.stdout)  # no kana


@pytest.mark.slow
def test_help_speaks_japanese() -> None:
    top = yoyu("--help", YOYU_LANG="ja")
    assert top.returncode == 0, top.stderr
    assert "モデルをマシン上で計画します" in top.stdout
    plan = yoyu("plan", "--help", YOYU_LANG="ja", COLUMNS="300")
    assert "計画を JSON で出力します。" in plan.stdout  # an option's help
    assert "物理バッチ（n_ubatch）。" in plan.stdout  # a shared run flag's help
    assert "Plan a model on a machine" in yoyu("--help", LANG="C").stdout
