"""The dashboard's parts without a browser: the door (key, cookie, login page), the
login call, the static files, the feed, the audit log's tail, a soak's band, the
Plan form's bad input, What fits here (``yoyu fit --json``'s answer, its filters and
their bad values). The pages in a real browser: test_dashboard_browser.py."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psutil
import pytest

from yoyu.gateway.app import create_app
from yoyu.gateway.config import GatewayConfig, ServerConfig
from yoyu.gateway.dashboard import memory as memory_module
from yoyu.gateway.dashboard.feed import Feed
from yoyu.gateway.dashboard.memory import memory_point, memory_reader, timeline_row
from yoyu.gateway.dashboard.routes import STATIC_DIR
from yoyu.gateway.dashboard.runs import soak_fit
from yoyu.gateway.dashboard.session import WRONG_KEY_DELAY_S
from yoyu.gateway.service import GatewayService
from yoyu.gateway.trust import SESSION_COOKIE, TrustPolicy, check_request, session_token
from yoyu.guard.audit import AuditRecord, AuditTail
from yoyu.monitor.gpu import NvmlGpus
from yoyu.monitor.leak import check_leak
from yoyu.monitor.phases import STABILIZED
from yoyu.monitor.types import Event, ProcessSample, Sample, SystemSample
from yoyu.testing.fake_nvml import RTX_4090_24G, RTX_5060_TI_16G, FakeNvml

KEY = "a-long-enough-test-key"
OWN = {"host": "127.0.0.1:8040"}
MIB = 1024**2


def cookie(value: str) -> dict[str, str]:
    return {**OWN, "cookie": f"theme=dark; {SESSION_COOKIE}={value}"}


# -- the door ---------------------------------------------------------------------


def test_the_session_cookie_opens_the_door_only_from_the_gateways_own_pages() -> None:
    policy = TrustPolicy(api_key=KEY, cors_origins=frozenset({"http://app.example"}))
    token = session_token(KEY)
    assert check_request(policy, "GET", "/dashboard/api/runs", cookie(token)) is None
    own_post = {**cookie(token), "origin": "http://127.0.0.1:8040"}
    assert check_request(policy, "POST", "/dashboard/api/plan", own_post) is None
    # A page of another origin (even one allowed to call with the key) gets no use of it.
    foreign = {**cookie(token), "origin": "http://app.example"}
    refusal = check_request(policy, "GET", "/dashboard/api/runs", foreign)
    assert refusal is not None and refusal.http_status == 401
    # The cookie holds an HMAC of the key, not the key: the key itself is no cookie.
    assert token != KEY
    refusal = check_request(policy, "GET", "/dashboard/api/runs", cookie(KEY))
    assert refusal is not None and refusal.http_status == 401
    # ...and the cookie's value is no Bearer token.
    bearer = {**OWN, "authorization": f"Bearer {token}"}
    assert check_request(policy, "GET", "/v1/models", bearer) is not None
    assert (
        check_request(policy, "GET", "/v1/models", {**OWN, "authorization": f"Bearer {KEY}"})
        is None
    )


def test_a_new_key_voids_the_old_cookie() -> None:
    policy = TrustPolicy(api_key="the-new-key")
    refusal = check_request(policy, "GET", "/", cookie(session_token(KEY)))
    assert refusal is not None and refusal.error_code == "invalid_api_key"


def test_only_the_login_and_static_files_are_open() -> None:
    policy = TrustPolicy(
        api_key=KEY, open_paths=frozenset({"/health", "/login", "/dashboard/login"}),
        open_prefixes=("/dashboard/static/",),
    )  # fmt: skip
    for path in ("/login", "/dashboard/static/app.js", "/health"):
        assert check_request(policy, "GET", path, OWN) is None
    for path in ("/", "/dashboard/events", "/dashboard/api/guard", "/dashboard/staticx"):
        assert check_request(policy, "GET", path, OWN) is not None


@pytest.fixture
def keyed_app() -> Iterator[Any]:
    config = GatewayConfig(server=ServerConfig(cors_origins=("http://app.example",)))
    service = GatewayService(config, {})
    yield create_app(service, api_key=KEY)
    service.close()


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8040") as c:
            return await c.request(method, path, **kwargs)

    return asyncio.run(go())


def test_a_browser_without_the_key_is_sent_to_the_login_page(keyed_app: Any) -> None:
    page = call(keyed_app, "GET", "/", headers={"accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 303 and page.headers["location"] == "/login"
    # A script's call is not redirected: it gets the API's own error.
    data = call(keyed_app, "GET", "/dashboard/api/runs")
    assert data.status_code == 401 and data.json()["error"]["code"] == "invalid_api_key"
    assert call(keyed_app, "GET", "/login").status_code == 200


def test_login_sets_an_httponly_strict_cookie_for_the_right_key_only(keyed_app: Any) -> None:
    started = time.monotonic()
    wrong = call(keyed_app, "POST", "/dashboard/login", json={"key": "nope"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert time.monotonic() - started >= WRONG_KEY_DELAY_S  # guesses come one a second
    right = call(keyed_app, "POST", "/dashboard/login", json={"key": KEY})
    assert right.status_code == 200
    attributes = [part.strip() for part in right.headers["set-cookie"].split(";")]
    assert attributes[0] == f"{SESSION_COOKIE}={session_token(KEY)}"
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes)
    assert KEY not in right.headers["set-cookie"]
    runs = call(keyed_app, "GET", "/dashboard/api/runs", headers=cookie(session_token(KEY)))
    assert runs.status_code == 200 and runs.json() == {"runs": []}
    out = call(keyed_app, "POST", "/dashboard/logout", headers=cookie(session_token(KEY)))
    assert "Max-Age=0" in out.headers["set-cookie"]


def test_login_refuses_a_form_body_and_a_huge_one(keyed_app: Any) -> None:
    form = call(keyed_app, "POST", "/dashboard/login", data={"key": KEY})
    assert form.status_code == 415  # the door's rule: a body must be JSON
    huge = call(keyed_app, "POST", "/dashboard/login", json={"key": "x" * 10_000})
    assert huge.status_code == 400 and "4096" in huge.json()["error"]["message"]


# -- pages' files and JSON ----------------------------------------------------------


def test_the_pages_files_are_in_the_package_small_and_guarded(keyed_app: Any) -> None:
    html = (STATIC_DIR / "index.html").read_text() + (STATIC_DIR / "login.html").read_text()
    linked = re.findall(r'(?:src|href)="/dashboard/static/([^"]+)"', html)
    assert linked and all((STATIC_DIR / name).is_file() for name in linked)
    assert "http" not in re.sub(r'content="[^"]*"|xmlns="[^"]*"', "", html)  # no CDN
    total = sum(path.stat().st_size for path in STATIC_DIR.iterdir())
    assert total < 160 * 1024, f"the dashboard's files weigh {total} bytes"
    assert (STATIC_DIR / "uPlot.LICENSE.txt").read_text().count("MIT License") == 1
    script = call(keyed_app, "GET", "/dashboard/static/app.js")
    assert (
        script.status_code == 200
        and "default-src 'self'" in script.headers["content-security-policy"]
    )
    for name in ("..%2Frouting.py", ".hidden.js", "nothing.js", "app.py"):
        assert call(keyed_app, "GET", f"/dashboard/static/{name}").status_code == 404


def test_the_plan_form_says_what_was_wrong(keyed_app: Any) -> None:
    headers = cookie(session_token(KEY))
    for body, words in (
        ({}, "name a model"),
        ({"model": "llama3.1:8b", "nodes": ["linux-cpu-32g"]}, "2 to 8 nodes"),
        ({"model": "llama3.1:8b", "ctx": -1}, "number of tokens"),
        ({"model": "llama3.1:8b", "machine": "no-such-preset"}, "no-such-preset"),
    ):
        answer = call(keyed_app, "POST", "/dashboard/api/plan", json=body, headers=headers)
        assert answer.status_code == 400, answer.text
        message = answer.json()["error"]["message"]
        assert words in message and "\n" not in message


def test_the_plan_on_a_preset_is_the_planners(keyed_app: Any) -> None:
    body = {"model": "llama3.1:8b", "machine": "linux-cpu-32g", "ctx": 2048}
    headers = cookie(session_token(KEY))
    plan = call(keyed_app, "POST", "/dashboard/api/plan", json=body, headers=headers).json()
    assert plan["machine"].startswith("linux-cpu-32g") and plan["ctx"] == 2048
    assert set(plan["emitted"]) == {"llama-server", "ollama", "exo"}
    assert plan["emitted"]["exo"].startswith("# exo splits a model over machines")
    assert "-c 2048" in plan["emitted"]["llama-server"]
    cluster = {"model": "llama3.1:70b", "nodes": ["linux-cpu-32g", "linux-cpu-32g"]}
    split = call(keyed_app, "POST", "/dashboard/api/plan", json=cluster, headers=headers).json()
    assert len(split["nodes"]) == 2 and set(split["emitted"]) == {"llama-server", "rpc", "exo"}


# -- What fits here ----------------------------------------------------------------------


def ranked(app: Any, query: str) -> httpx.Response:
    return call(app, "GET", f"/dashboard/api/fit?{query}", headers=cookie(session_token(KEY)))


@pytest.mark.parametrize(
    ("fields", "flags"),
    [
        ({"machine": "linux-rtx4090-24g", "family": "qwen3"},
         ("--machine", "linux-rtx4090-24g", "--family", "qwen3")),
        ({"machine": "mac-studio-m2-max-32g", "use": "code", "min_ctx": "32768",
          "max_size": "20GB", "default_quant": "true"},
         ("--machine", "mac-studio-m2-max-32g", "--use", "code", "--min-ctx", "32768",
          "--max-size", "20GB", "--default-quant")),
        ({"machine": "linux-rtx3060-12g", "use": "reasoning", "free": "12GiB", "gpu_free": "6GiB"},
         ("--machine", "linux-rtx3060-12g", "--use", "reasoning", "--free", "12GiB",
          "--gpu-free", "6GiB")),
    ],
)  # fmt: skip
def test_what_fits_here_answers_what_yoyu_fit_json_prints(
    keyed_app: Any,
    yoyu_cli: Callable[..., tuple[int, str, str]],
    fields: dict[str, str],
    flags: tuple[str, ...],
) -> None:
    answer = ranked(keyed_app, urlencode(fields))
    assert answer.status_code == 200, answer.text
    code, out, err = yoyu_cli("fit", *flags, "--json")
    assert code == 0, err
    assert answer.json() == json.loads(out)
    assert answer.json()["machine"] == fields["machine"] and answer.json()["runs"] > 0


def test_each_filter_and_the_free_memory_change_the_ranking(keyed_app: Any) -> None:
    """Each field reaches ``rank_catalog``: with it the answer is not the one without."""
    machine = "machine=linux-rtx3060-12g&family=llama3.1"
    plain = ranked(keyed_app, machine).json()
    for extra, differs in (
        ("min_ctx=200000", lambda r: r["models"] == []),  # llama3.1 holds 128k
        ("use=embedding", lambda r: r["models"] == []),
        ("max_size=6GB", lambda r: all(m["file_bytes"] <= 6e9 for m in r["models"])),
        ("default_quant=1", lambda r: len({m["model"] for m in r["models"]}) == len(r["models"])),
        ("free=2GiB&gpu_free=2GiB", lambda r: r["runs"] < plain["runs"]),
    ):
        report = ranked(keyed_app, f"{machine}&{extra}").json()
        assert report != plain and differs(report), extra
    assert plain["models"] and all(m["family"] == "llama3.1" for m in plain["models"])


def test_what_fits_on_this_machine_is_the_probed_ones(keyed_app: Any) -> None:
    """No machine field: this machine, probed once for the page as the Plan form's is."""
    report = ranked(keyed_app, "family=qwen3&free=8GiB").json()
    planned = call(
        keyed_app, "POST", "/dashboard/api/plan", json={"model": "qwen3:8b", "ctx": 2048},
        headers=cookie(session_token(KEY)),
    ).json()  # fmt: skip
    assert report["machine"] == planned["machine"] and report["models"]


@pytest.mark.parametrize(
    ("query", "param", "words"),
    [
        ("use=poetry", "use", "unknown use 'poetry'; choose one of chat, code"),
        ("max_size=big", "max_size", "max_size 'big' is not a size; write e.g. 11GiB"),
        ("free=-4GiB", "free", "free must not be negative"),
        ("gpu_free=lots", "gpu_free", "gpu_free 'lots' is not a size"),
        ("min_ctx=many", "min_ctx", "min_ctx is a number of tokens, 0 or more, not 'many'"),
        ("min_ctx=-1", "min_ctx", "min_ctx is a number of tokens"),
        ("default_quant=maybe", "default_quant", "default_quant is true or false"),
        ("machine=no-such-box", "machine", "'no-such-box' is no preset"),
        ("machine=%2Fetc%2Fyoyu.toml", "machine", "is no preset"),  # no machine file
        ("maxsize=20GB", "maxsize", "unknown field 'maxsize'; the fields are machine,"),
        ("family=qwen3&family=llama3.1", "family", "give family once"),
    ],
)
def test_a_bad_filter_is_a_400_that_says_what_was_wrong(
    keyed_app: Any, query: str, param: str, words: str
) -> None:
    answer = ranked(keyed_app, query)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert words in error["message"] and "\n" not in error["message"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error", "invalid_request", param,
    )  # fmt: skip


def test_a_row_opens_the_plan_with_the_rankings_engine_and_free_memory(keyed_app: Any) -> None:
    headers = cookie(session_token(KEY))
    report = ranked(keyed_app, "machine=linux-rtx3060-12g&family=gpt-oss&free=12GiB").json()
    row = next(m for m in report["models"] if m["n_cpu_moe"])  # experts on the CPU
    body = {"model": row["model"], "machine": "linux-rtx3060-12g", "ctx": row["ctx"],
            "engine": "llama-server", "free": "12GiB"}  # fmt: skip
    plan = call(keyed_app, "POST", "/dashboard/api/plan", json=body, headers=headers).json()
    assert plan["settings"]["engine"] == "llama-server" and plan["ctx"] == row["ctx"]
    assert (plan["verdict"], plan["n_gpu_layers"], plan["settings"]["n_cpu_moe"]) == (
        row["verdict"], row["n_gpu_layers"], row["n_cpu_moe"],
    )  # fmt: skip
    cpu = next(device for device in plan["devices"] if device["kind"] == "cpu")
    assert cpu["usable_bytes"] == 12 * 1024**3
    for bad, words in (({"engine": "vllm2"}, '"engine" is one of'), ({"free": "x"}, "free 'x'")):
        answer = call(keyed_app, "POST", "/dashboard/api/plan", json={**body, **bad},
                      headers=headers)  # fmt: skip
        assert answer.status_code == 400 and words in answer.json()["error"]["message"]


# -- the feed -------------------------------------------------------------------------


class FakeAudit:
    def __init__(self) -> None:
        self.new: list[AuditRecord] = []

    def read_new(self) -> list[AuditRecord]:
        new, self.new = self.new, []
        return new


def test_the_feed_hands_each_page_only_what_it_has_not_seen() -> None:
    readings = iter(range(100))
    audit = FakeAudit()
    states = [{"id": "m", "state": "unloaded"}]
    feed = Feed(
        lambda: {"t": float(next(readings))}, lambda p: [p["t"]], lambda: list(states),
        audit, history=3,  # type: ignore[arg-type]
    )  # fmt: skip
    for _ in range(4):
        feed.tick()
    everything = feed.since(0, 0)
    assert [row[0] for row in everything.rows] == [1.0, 2.0, 3.0]  # the last 3 kept
    assert everything.latest == {"t": 3.0}
    audit.new = [AuditRecord(wall_time=5.0, t_s=1.0, kind="warn", message="low")]
    feed.tick()
    after = feed.since(everything.seq, everything.guard_seq)
    assert [row[0] for row in after.rows] == [4.0]
    assert [mark["kind"] for mark in after.guard] == ["warn"]
    nothing = feed.since(after.seq, after.guard_seq)
    assert nothing.rows == [] and nothing.guard == [] and nothing.latest is None
    assert feed.interval_s() == feed.tick_s
    with feed.loading():
        assert feed.interval_s() < feed.tick_s
    states[0] = {"id": "m", "state": "loading"}
    feed.tick()
    assert feed.interval_s() < feed.tick_s


# -- the audit log's tail ----------------------------------------------------------------


def record_line(n: int) -> str:
    record = AuditRecord(wall_time=float(n), t_s=float(n), kind="warn", message=f"decision {n}")
    return json.dumps(record.to_json()) + "\n"


def test_the_audit_tail_reads_each_record_once_and_waits_for_a_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "guard.jsonl"
    tail = AuditTail(path)
    assert tail.read_new() == []  # no file yet
    path.write_text(record_line(1) + record_line(2))
    assert [r.message for r in tail.read_new()] == ["decision 1", "decision 2"]
    line = record_line(3)
    with path.open("a") as file:
        file.write(line[:10])  # a writer mid-line
    assert tail.read_new() == []
    with path.open("a") as file:
        file.write(line[10:])
    assert [r.message for r in tail.read_new()] == ["decision 3"]


def test_the_audit_tail_starts_at_a_whole_line_near_the_end(tmp_path: Path) -> None:
    path = tmp_path / "guard.jsonl"
    path.write_text("".join(record_line(n) for n in range(100)))
    budget = len(record_line(99)) * 3 + 5  # the last three lines and a piece of one more
    assert [r.message for r in AuditTail(path, budget).read_new()] == [
        "decision 97", "decision 98", "decision 99",
    ]  # fmt: skip


# -- a soak's slope and band --------------------------------------------------------------


def soak_samples(values_mib: list[float]) -> tuple[list[Sample], list[Event]]:
    samples, events = [], []
    for turn, value in enumerate(values_mib):
        t = 10.0 + 60.0 * turn
        system = SystemSample(t, t, 8 << 30, 4 << 30, 4 << 30, 0, 0)
        process = ProcessSample((1,), int(value * MIB), anon_bytes=int(value * MIB), swap_bytes=0)
        samples.append(Sample(system, process))
        events.append(Event(t + 0.1, STABILIZED))
    return samples, events


def test_a_soaks_fit_is_check_leaks_and_its_band_holds_the_line() -> None:
    values = [100.0, 101.3, 101.9, 103.2, 104.1, 104.8]  # about 1 MiB a turn (a minute)
    samples, events = soak_samples(values)
    fit = soak_fit(samples, events, origin=10.0)
    assert fit is not None
    points = [(s.t_s, s.process.growth_bytes) for s in samples]
    leak = check_leak(points)
    assert fit["slope_mib_per_min"] == leak.slope_mib_per_min
    assert fit["stderr_mib_per_min"] == pytest.approx(leak.stderr_mib_per_min)
    assert fit["verdict"] == leak.verdict and fit["t_s"][0] == 0.0
    for low, line, high in zip(fit["low_bytes"], fit["fit_bytes"], fit["high_bytes"], strict=True):
        assert low <= line <= high
    ends = fit["high_bytes"][-1] - fit["low_bytes"][-1]
    middle = len(values) // 2
    assert (
        ends > fit["high_bytes"][middle] - fit["low_bytes"][middle]
    )  # it widens away from the mean


def test_a_soak_on_a_straight_line_has_no_band_and_too_few_turns_no_fit() -> None:
    samples, events = soak_samples([100.0, 102.0, 104.0, 106.0])
    fit = soak_fit(samples, events, origin=0.0)
    assert fit is not None
    assert fit["low_bytes"] == pytest.approx(fit["high_bytes"])
    assert math.isclose(fit["slope_mib_per_min"], 2.0, rel_tol=1e-6)
    short_samples, short_events = soak_samples([100.0, 101.0, 102.0])
    assert soak_fit(short_samples, short_events, origin=0.0) is None


def test_a_run_the_store_lacks_is_not_found(keyed_app: Any) -> None:
    answer = call(keyed_app, "GET", "/dashboard/api/runs/999", headers=cookie(session_token(KEY)))
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "run_not_found"
    assert "999" in answer.json()["error"]["message"]


def test_the_memory_reading_has_each_gpu_when_there_are_some() -> None:
    boards = (RTX_4090_24G, RTX_5060_TI_16G)
    gpus = NvmlGpus(FakeNvml(gpus=boards))
    assert gpus.open()
    service = GatewayService(GatewayConfig(), {})
    try:
        reader = memory_reader(service, gpus)
        point = memory_point(reader.read(), floor_bytes=1 << 30, held_bytes=0)
    finally:
        gpus.close()
        service.close()
    assert [(g["index"], g["used_bytes"], g["free_bytes"]) for g in point["gpus"]] == [
        (index, board.used_bytes, board.free_bytes) for index, board in enumerate(boards)
    ]
    row = timeline_row(point)
    assert row[5] == sum(board.used_bytes for board in boards)
    assert point["floor_bytes"] == 1 << 30 and point["total_bytes"] > 0


def test_a_monitor_searches_the_machine_for_engines_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    searches: list[float] = []
    now = [100.0]

    def search() -> list[int]:
        searches.append(now[0])
        return [os.getpid()]

    monkeypatch.setattr(memory_module, "engine_pids", search)
    engines = memory_module.MachineEngines(every_s=5.0, clock=lambda: now[0])
    for step in range(11):  # a reading a second for ten seconds
        now[0] = 100.0 + step
        assert engines() == [(os.getpid(), psutil.Process().name())]
    assert searches == [100.0, 105.0, 110.0]
