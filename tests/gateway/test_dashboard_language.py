"""The dashboard in Japanese or English: which language a page gets, and that every
word it shows is a catalog id with a Japanese entry. In a browser:
test_dashboard_browser.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from yoyu.gateway.app import create_app
from yoyu.gateway.config import GatewayConfig
from yoyu.gateway.dashboard.language import UI_TEXTS, localized_page, page_language, ui_table
from yoyu.gateway.dashboard.routes import STATIC_DIR
from yoyu.gateway.service import GatewayService
from yoyu.gateway.trust import SESSION_COOKIE, session_token
from yoyu.i18n import translations
from yoyu.testing.catalog import extract_template

KEY = "a-long-enough-test-key"

# Text on the pages that is a name or a sign, the same in every language.
NAMES = {"yoyu", "A", "B", "–"}
TEXT_NODE = re.compile(r">\s*([^<>]*?)\s*<")
JS_CALL = re.compile(r'\bt\("((?:[^"\\]|\\.)*)"|words\["((?:[^"\\]|\\.)*)"\]')


@pytest.mark.parametrize(
    ("accept", "environ", "language"),
    [
        (None, {}, "en"),
        ("ja", {}, "ja"),
        ("ja-JP,ja;q=0.9,en;q=0.8", {}, "ja"),
        ("en-US,en;q=0.9", {"LANG": "ja_JP.UTF-8"}, "en"),  # the browser wins over LANG
        ("fr-FR, ja;q=0.5, en;q=0.4", {}, "ja"),  # its best-ranked language we speak
        ("en;q=0.2, ja;q=0.8", {}, "ja"),
        ("ja;q=0, en", {}, "en"),  # q=0: not wanted
        ("fr-FR", {"LANG": "ja_JP.UTF-8"}, "ja"),  # none we speak: the server's locale
        (None, {"LC_ALL": "ja_JP.UTF-8"}, "ja"),
        ("ja", {"YOYU_LANG": "en"}, "en"),  # YOYU_LANG on the server forces it
        ("en-US,en", {"YOYU_LANG": "ja", "LANG": "C"}, "ja"),
    ],
)
def test_the_browser_chooses_unless_yoyu_lang_forces(
    accept: str | None, environ: dict[str, str], language: str
) -> None:
    assert page_language(accept, environ) == language


def test_every_word_the_pages_show_is_a_ui_id_the_catalog_extracts() -> None:
    shown: set[str] = set()
    for name in ("index.html", "login.html"):
        page = (STATIC_DIR / name).read_text(encoding="utf-8")
        shown |= {text for text in TEXT_NODE.findall(page) if text}
        shown |= set(re.findall(r'(?:title|placeholder|aria-label)="([^"]*)"', page))
    for name in ("app.js", "login.js"):
        script = (STATIC_DIR / name).read_text(encoding="utf-8")
        shown |= {a or b for a, b in JS_CALL.findall(script)}
    shown -= NAMES | {"余裕: room to spare"}
    assert shown - set(UI_TEXTS) == set()
    extracted = {message.id for message in extract_template()}
    assert set(UI_TEXTS) <= extracted  # so test_i18n's "every id has Japanese" covers them


def test_every_ui_id_has_japanese() -> None:
    catalog = translations("ja")._catalog  # type: ignore[attr-defined]
    assert [text for text in UI_TEXTS if not catalog.get(text)] == []
    assert ui_table("ja")["Memory"] == "メモリ" and ui_table("en") == {}


def test_a_japanese_page_has_no_english_text_left() -> None:
    for name in ("index.html", "login.html"):
        page = localized_page((STATIC_DIR / name).read_text(encoding="utf-8"), "ja")
        assert '<html lang="ja">' in page and 'id="i18n"' in page
        japanese = ui_table("ja")
        assert [text for text in TEXT_NODE.findall(page) if text in japanese] == []


def get(app: Any, path: str, headers: dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8040") as c:
            return await c.get(path, headers={"host": "127.0.0.1:8040", **headers})

    return asyncio.run(go())


@pytest.fixture
def keyed_app() -> Iterator[Any]:
    service = GatewayService(GatewayConfig(), {})
    yield create_app(service, api_key=KEY)
    service.close()


def test_the_gateway_serves_each_reader_their_language(
    keyed_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("YOYU_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(variable, raising=False)
    japanese = get(keyed_app, "/login", {"accept-language": "ja,en;q=0.5"})
    assert japanese.headers["content-language"] == "ja"
    assert '<html lang="ja">' in japanese.text and "サインイン" in japanese.text
    assert ">Sign in<" not in japanese.text
    english = get(keyed_app, "/login", {"accept-language": "en-US"})
    assert '<html lang="en">' in english.text and ">Sign in<" in english.text
    assert "サインイン" not in english.text
    monkeypatch.setenv("YOYU_LANG", "ja")
    signed_in = {"cookie": f"{SESSION_COOKIE}={session_token(KEY)}", "accept-language": "en"}
    forced = get(keyed_app, "/", signed_in)
    assert forced.status_code == 200 and "<h2>エンジン</h2>" in forced.text
    assert forced.headers["vary"] == "Accept-Language"
