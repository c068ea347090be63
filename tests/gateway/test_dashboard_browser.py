"""The dashboard in a real headless Chromium against a real ``yoyu serve`` on a tiny model.

Before the gateway starts, ``yoyu run`` stores two runs and ``yoyu soak`` a third in
the same data folder, so the Runs page has real runs to show. Each figure a page
shows is checked against where it comes from (psutil, the guard's policy, the
gateway's own API, ``yoyu runs show``, ``yoyu soak``, ``yoyu plan``), not against
itself. Screenshots of every page (wide and light, then phone-sized and dark) are
kept under ``$YOYU_TEST_ARTIFACTS/dashboard`` (``artifacts/`` is git-ignored), else
under the test's temporary folder.

The browser is driven over the DevTools protocol (``yoyu.testing.browser``).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from yoyu.gateway.dashboard.language import ui_table
from yoyu.guard.policy import policy_from_config
from yoyu.testing.browser import CHROMIUM, Browser
from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.testing.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)"),
]
MIB, GIB = 1024**2, 1024**3
PAGES = ("memory", "models", "runs", "plan", "guard")
# Above what is available: the gateway's guard cautions (warns) as it starts, a real
# decision with its samples for the timeline and the Guard log. Its next step, an unload
# once caution lasts past the grace period, is an hour away: the tests load and unload.
CAUTION = "99%"
KEY_VARIABLE = "YOYU_DASHBOARD_TEST_KEY"
KEY = "dashboard-test-key-0123456789"


def _to_fixed(value: float) -> str:
    """JavaScript's ``toFixed(2)``: a tie goes up (84.625 -> "84.63"), where Python's format
    rounds it to even ("84.62"); RSS lands on such a tie once in 64 page counts."""
    return str(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def shown(n_bytes: int | None) -> str:
    """A byte count as the page writes it (app.js ``bytes``)."""
    if n_bytes is None:
        return "–"
    size = abs(n_bytes)
    text = f"{_to_fixed(size / GIB)} GiB" if size >= GIB else f"{_to_fixed(size / MIB)} MiB"
    return ("-" if n_bytes < 0 else "") + text


def yoyu(home: Path, *args: str) -> dict[str, Any]:
    """Run the ``yoyu`` command (a child process, as a user runs it); its ``--json``."""
    result = subprocess.run(
        [sys.executable, "-m", "yoyu", *args, "--json"],
        env={**os.environ, "YOYU_HOME": str(home)}, capture_output=True, text=True,
        timeout=180, check=True,
    )  # fmt: skip
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("YOYU_TEST_ARTIFACTS")
    folder = Path(root) / "dashboard" if root else tmp_path_factory.mktemp("dashboard-screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[OpenAIStub, threading.Event]]:
    """A remote API whose answers wait until the test lets them go (requests in flight)."""
    hold = threading.Event()
    with OpenAIStub(StubBehaviour(models=("stub-model",), hold=hold)) as stub:
        yield stub, hold
        hold.set()


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, upstream: tuple[OpenAIStub, threading.Event]
) -> Iterator[dict[str, Any]]:
    """A gateway serving a tiny model and a remote one, with three runs stored before it
    started."""
    folder = tmp_path_factory.mktemp("dashboard")
    home = folder / "home"
    tiny = write_tiny_model(folder / "tiny.gguf").path
    run_a = yoyu(home, "run", str(tiny), "Say hi.", "--ctx", "256", "--max-tokens", "4")
    run_b = yoyu(home, "run", str(tiny), "Say hi.", "--ctx", "128", "--max-tokens", "8")
    soak = yoyu(home, "soak", str(tiny), "--duration", "3s", "--ctx", "256", "--max-tokens", "4")
    config = folder / "yoyu.toml"
    config.write_text(
        f"""
[server]
memory_floor = 0
health_interval_s = 3600

[backends.local]
kind = "llama.cpp"
start_timeout_s = 60

[served.tiny]
backend = "local"
path = "{tiny}"
settings = {{ n_ctx = 256, n_batch = 64, n_ubatch = 64, seed = 1 }}

[backends.cloud]
kind = "openai"
base_url = "{upstream[0].base_url}"
models = ["stub-model"]
remote = true

[served.cloud]
backend = "cloud"
upstream = "stub-model"
max_concurrent = 1
max_queue = 4

[routes]
steady = ["tiny", "cloud"]

[aliases]
coder = "tiny"

[guard]
caution = "{CAUTION}"
grace = 3600
""",
        encoding="utf-8",
    )
    # YOYU_LANG unset (conftest sets "en", which would force it): each browser chooses.
    env = {"YOYU_HOME": str(home), "YOYU_LANG": ""}
    args = ["--config", str(config), "--no-mcp"]
    with GatewayProcess(args, env=env, log_path=folder / "serve.log") as gateway:
        yield {"gateway": gateway, "home": home, "tiny": tiny, "runs": (run_a, run_b),
               "soak": soak, "profile": folder / "profile"}  # fmt: skip


@pytest.fixture(scope="module")
def browser(site: dict[str, Any]) -> Iterator[Browser]:
    with Browser(site["profile"]) as driver:
        yield driver


def go(browser: Browser, gateway: GatewayProcess, page: str) -> None:
    """Open a page of the dashboard and wait until its script has filled it."""
    if browser.evaluate("location.origin") != gateway.url:
        browser.open(f"{gateway.url}/#{page}")
    else:
        browser.evaluate(f"location.hash = '#{page}'")
    browser.wait_for(f"document.body.dataset.page === '{page}'")


def text(browser: Browser, selector: str) -> str:
    found = f"document.querySelector({json.dumps(selector)})"
    return str(browser.evaluate(f"({found} || {{}}).textContent"))


def proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/PID/status, in bytes."""
    found = re.findall(r"^(\w+):\s+(\d+) kB$", Path(f"/proc/{pid}/status").read_text(), re.M)
    return {name: int(value) * 1024 for name, value in found}


def test_memory_page_shows_the_machine_and_the_guards_floors(
    site: dict[str, Any], browser: Browser, artifacts: Path
) -> None:
    go(browser, site["gateway"], "memory")
    browser.wait_for("document.getElementById('mem-available').textContent.includes('iB')")
    total = psutil.virtual_memory().total
    floors = policy_from_config({"caution": CAUTION}).resolve(total)
    assert text(browser, "#mem-total").endswith(f"of {shown(total)}")
    assert text(browser, "#mem-caution") == shown(floors.caution_bytes)
    assert text(browser, "#mem-abort") == shown(floors.abort_bytes)
    available = browser.evaluate("yoyu.state.latest.available_bytes")
    assert abs(available - psutil.virtual_memory().available) < total * 0.05  # a busy machine
    assert text(browser, "#mem-level") == "caution"  # available is under a 99 % floor
    # The chart has a line for each series and the first readings of the timeline.
    browser.wait_for("yoyu.charts.memory && yoyu.charts.memory.data[0].length >= 2")
    # The gateway's guard wrote its start and its warning: the timeline lists them.
    marks = browser.wait_for("document.getElementById('mem-marks').textContent")
    assert "guard started" in marks and "warn" in marks
    assert browser.errors == []
    browser.screenshot(artifacts / "memory.png")


def test_memory_line_moves_while_a_model_loads_and_the_buttons_load_and_unload(
    site: dict[str, Any], browser: Browser, artifacts: Path
) -> None:
    gateway: GatewayProcess = site["gateway"]
    go(browser, gateway, "models")
    browser.wait_for("document.querySelector('[data-model-card=tiny] [data-state]')")
    assert text(browser, "[data-model-card=tiny] [data-state]") == "unloaded"
    engines_before = browser.evaluate("yoyu.state.rows.at(-1)[3]")
    assert engines_before == 0  # no engine yet: the resident line starts at zero
    seq_before = browser.evaluate("yoyu.state.seq")
    clicked_at = browser.evaluate("Date.now() / 1000")

    browser.click("[data-action=load][data-model=tiny]")
    browser.wait_for("document.querySelector('[data-model-card=tiny] [data-state]').textContent"
                     " === 'ready'", 90)  # fmt: skip
    loaded = httpx.get(f"{gateway.url}/yoyu/models", timeout=10).json()["served"]
    assert next(m for m in loaded if m["id"] == "tiny")["loaded"] is True
    # The plan beside the engine's own buffers: its weights buffer is the file's, as the
    # `yoyu run` of the same file measured it.
    weights = site["runs"][0]["engine_buffers"]["model"]
    measured = "[data-model-card=tiny] table.components tbody tr:first-child td:nth-child(3)"
    browser.wait_for(f"document.querySelector({json.dumps(measured)})")
    assert text(browser, measured) == shown(weights)

    # The timeline's engine line rose from zero to the engine's resident memory.
    engine_pids = gateway.engine_pids()
    assert engine_pids, "the gateway started no engine"
    browser.wait_for(f"yoyu.state.seq > {seq_before} && yoyu.state.rows.at(-1)[3] > 0", 10)
    # While it loaded the timeline was read four times a second, not once.
    times = browser.evaluate(f"yoyu.state.rows.map(r => r[0]).filter(t => t >= {clicked_at})")
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps and min(gaps) < 0.5, f"readings during the load came {gaps} s apart"
    resident = browser.evaluate("yoyu.state.rows.at(-1)[3]")
    tree = [psutil.Process(engine_pids[0]), *psutil.Process(engine_pids[0]).children(True)]
    actual = sum(process.memory_info().rss for process in tree)
    assert abs(resident - actual) < max(actual * 0.25, 8 * MIB)
    go(browser, gateway, "memory")
    browser.wait_for("(document.querySelector('#mem-engines tbody td') || {}).textContent"
                     " === 'tiny'")  # fmt: skip
    # Its resident memory split as the kernel counts it (RssAnon, RssFile of its tree).
    engine = browser.evaluate("yoyu.state.latest.engines[0]")
    root = psutil.Process(engine["pid"])
    kernel = [proc_status(process.pid) for process in [root, *root.children(True)]]
    for key, field in (("anon_bytes", "RssAnon"), ("file_bytes", "RssFile")):
        counted = sum(status[field] for status in kernel)
        assert abs(engine[key] - counted) < max(counted * 0.1, 4 * MIB), key
    anon_cell = text(browser, "#mem-engines tbody tr td:nth-child(5)")
    assert anon_cell == shown(engine["anon_bytes"])
    browser.screenshot(artifacts / "memory-loaded.png")

    go(browser, gateway, "models")
    browser.wait_for("!document.querySelector('[data-action=unload][data-model=tiny]').disabled")
    browser.screenshot(artifacts / "models.png")
    browser.click("[data-action=unload][data-model=tiny]")
    browser.wait_for("document.querySelector('[data-model-card=tiny] [data-state]').textContent"
                     " === 'unloaded'", 30)  # fmt: skip
    served = httpx.get(f"{gateway.url}/yoyu/models", timeout=10).json()["served"]
    assert next(m for m in served if m["id"] == "tiny")["loaded"] is False
    wait_until(lambda: not gateway.engine_pids(), 30, "the engine to exit after Unload")
    assert browser.errors == []


def test_models_page_shows_the_plan_and_the_route_graph(
    site: dict[str, Any], browser: Browser
) -> None:
    gateway: GatewayProcess = site["gateway"]
    go(browser, gateway, "models")
    browser.wait_for("document.querySelector('[data-model-card=tiny]')")
    listing = httpx.get(f"{gateway.url}/yoyu/models", timeout=30).json()["served"]
    need = next(m for m in listing if m["id"] == "tiny")["need_bytes"]
    assert f"plan needs: {shown(need)}" in text(browser, "[data-model-card=tiny]")
    graph = text(browser, "#models-graph svg")
    assert all(name in graph for name in ("coder", "steady", "tiny", "cloud"))


def test_models_page_shows_the_requests_a_model_answers_and_those_in_its_line(
    site: dict[str, Any], browser: Browser, upstream: tuple[OpenAIStub, threading.Event]
) -> None:
    gateway: GatewayProcess = site["gateway"]
    _, hold = upstream
    go(browser, gateway, "models")
    card = "[data-model-card=cloud]"
    browser.wait_for(f"document.querySelector('{card}')")
    body = {"model": "cloud", "messages": [{"role": "user", "content": "hi"}]}
    url = f"{gateway.base_url}/chat/completions"
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = [pool.submit(httpx.post, url, json=body, timeout=60) for _ in range(3)]
        browser.wait_for(f"document.querySelector('{card} [data-fact=waiting]').textContent"
                         " === '2 of 4'", 30)  # fmt: skip
        assert text(browser, f"{card} [data-fact=answering]") == "1 of 1"
        hold.set()
        assert [answer.result().status_code for answer in answers] == [200, 200, 200]
    browser.wait_for(f"document.querySelector('{card} [data-fact=answering]').textContent"
                     " === '0 of 1'", 30)  # fmt: skip
    assert text(browser, f"{card} [data-fact=waiting]") == "0 of 4"


def test_runs_page_shows_two_stored_runs_side_by_side(
    site: dict[str, Any], browser: Browser, artifacts: Path
) -> None:
    gateway: GatewayProcess = site["gateway"]
    run_a, run_b = site["runs"]
    go(browser, gateway, "runs")
    browser.wait_for("document.querySelectorAll('#runs-a option').length >= 3")
    ids = [str(run["run_id"]) for run in (run_a, run_b)]
    browser.evaluate(
        f"(() => {{ document.getElementById('runs-a').value = '{ids[0]}';"
        f" const b = document.getElementById('runs-b'); b.value = '{ids[1]}';"
        " b.dispatchEvent(new Event('change')); })()"
    )
    browser.wait_for(f"document.querySelector('#runs-detail h2').textContent.includes('#{ids[1]}')")
    for column, run_id in zip("ab", ids, strict=True):
        shown_peak = text(
            browser, f"tr[data-phase=peak][data-figure=process_rss_bytes] td[data-run={column}]"
        )
        stored = yoyu(site["home"], "runs", "show", run_id)
        assert shown_peak == shown(stored["phases"]["peak"]["process_rss_bytes"])
    assert browser.evaluate("yoyu.charts.runs.series.length") == 5  # x, and two lines per run
    browser.screenshot(artifacts / "runs-ab.png")
    assert browser.errors == []


def test_runs_page_shows_a_soaks_slope_and_its_band(
    site: dict[str, Any], browser: Browser, artifacts: Path
) -> None:
    soak = site["soak"]
    go(browser, site["gateway"], "runs")
    browser.wait_for("document.querySelectorAll('#runs-a option').length >= 3")
    browser.evaluate(
        f"(() => {{ const a = document.getElementById('runs-a'); a.value = '{soak['run_id']}';"
        " document.getElementById('runs-b').value = '';"
        " a.dispatchEvent(new Event('change')); })()"
    )
    line = browser.wait_for(f"(document.querySelector('[data-soak=\"{soak['run_id']}\"]') || "
                            "{}).textContent")  # fmt: skip
    leak = soak["leak"]
    slope = f"{'+' if leak['slope_mib_per_min'] >= 0 else ''}{_to_fixed(leak['slope_mib_per_min'])}"
    assert line.startswith(f"{slope} ± {_to_fixed(leak['stderr_mib_per_min'])} MiB/min")
    stored = yoyu(site["home"], "runs", "show", str(soak["run_id"]))
    peak = text(browser, "tr[data-phase=peak] td[data-figure=process_rss_bytes]")
    assert peak == shown(stored["phases"]["peak"]["process_rss_bytes"])
    band = browser.evaluate(f"yoyu.charts['soak{soak['run_id']}'].data")
    low, fit, high = band[3], band[2], band[4]
    assert all(lo <= f <= hi for lo, f, hi in zip(low, fit, high, strict=True))
    browser.screenshot(artifacts / "runs-soak.png")


def test_plan_page_gives_the_planners_verdict_and_the_settings_to_copy(
    site: dict[str, Any], browser: Browser, artifacts: Path
) -> None:
    go(browser, site["gateway"], "plan")
    browser.wait_for("document.querySelectorAll('#plan-machine option').length > 1")
    browser.evaluate(
        "(() => { document.getElementById('plan-model').value = 'llama3.1:8b';"
        " document.getElementById('plan-machine').value = 'linux-rtx4090-24g';"
        " document.getElementById('plan-ctx').value = '4096';"
        " document.getElementById('plan-go').click(); })()"
    )
    browser.wait_for("document.getElementById('plan-verdict')", 60)
    engine = browser.evaluate("fetch('/dashboard/api/plan', {method: 'POST', headers: "
                              "{'Content-Type': 'application/json'}, body: JSON.stringify("
                              "{model: 'llama3.1:8b', machine: 'linux-rtx4090-24g', ctx: 4096})})"
                              ".then(r => r.json()).then(p => p.settings.engine)")  # fmt: skip
    cli = yoyu(
        site["home"], "plan", "llama3.1:8b", "--machine", "linux-rtx4090-24g", "--ctx", "4096",
        "--engine", engine, "--no-history",
    )  # fmt: skip
    assert text(browser, "#plan-verdict") == cli["verdict"]
    assert text(browser, "#plan-total") == shown(cli["totals"]["total_bytes"])
    bars = browser.evaluate("document.querySelectorAll('#plan-result [data-device]').length")
    assert bars == len(cli["devices"])
    emitted = text(browser, "pre[data-emit=llama-server]")
    assert emitted.startswith("llama-server ") and f"-ngl {cli['n_gpu_layers']}" in emitted
    browser.screenshot(artifacts / "plan.png")
    assert browser.errors == []


def test_plan_page_says_what_was_wrong_with_a_model_it_cannot_find(
    site: dict[str, Any], browser: Browser
) -> None:
    go(browser, site["gateway"], "plan")
    browser.evaluate(
        "(() => { document.getElementById('plan-model').value = '/nowhere/missing.gguf';"
        " document.getElementById('plan-go').click(); })()"
    )
    message = browser.wait_for("(document.getElementById('plan-error') || {}).textContent", 30)
    assert "missing.gguf" in message


def fixed(value: float, digits: int) -> str:
    """``value.toFixed(digits)`` as the page's script writes it (a tie rounds up)."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def fit_cells(row: dict[str, Any], words: Mapping[str, str]) -> list[str]:
    """A row of ``yoyu fit --json`` as the What fits here table writes it, in the language
    of ``words`` (the page's table; English: none)."""

    def t(text: str, **values: object) -> str:
        return words.get(text, text).format(**values)

    if not row["runs"]:
        where, figures = t("does not fit"), ["–"] * 3
    else:
        ctx = row["ctx"]
        where = placement_cell(row, t)
        figures = [f"{ctx // 1024}k" if ctx >= 1024 and ctx % 1024 == 0 else str(ctx),
                   fixed(row["decode_tps"], 1), fixed(row["prefill_tps"], 0)]  # fmt: skip
    needs = shown(row["total_bytes"]) if row["runs"] else "–"
    return [row["model"], row["quant"], where, *figures, t(row["verdict"]), t(row["risk"]), needs]


def placement_cell(row: dict[str, Any], t: Any) -> str:
    if row["verdict"] == "CPU_ONLY":
        return str(t("CPU only"))
    if row["n_cpu_moe"]:
        blocks = row["n_layers_total"] - 1
        return str(t("MoE experts of {cpu}/{blocks} blocks on the CPU", cpu=row["n_cpu_moe"],
                     blocks=blocks))  # fmt: skip
    if row["n_gpu_layers"] < row["n_layers_total"]:
        return str(t("{gpu}/{total} layers on the GPU", gpu=row["n_gpu_layers"],
                     total=row["n_layers_total"]))  # fmt: skip
    return str(t("all on the GPU"))


def rank_on(browser: Browser, preset: str, *, every_row: bool) -> list[list[str]]:
    """Rank the catalog on ``preset`` with the page's form; the table's cells."""
    browser.wait_for(f"document.querySelector('#fit-machine option[value=\"{preset}\"]')")
    browser.evaluate(
        f"(() => {{ document.getElementById('fit-machine').value = '{preset}';"
        f" document.getElementById('fit-all').checked = {json.dumps(every_row)};"
        " document.getElementById('fit-form').requestSubmit(); })()"
    )
    browser.wait_for(f"yoyu.state.fit && yoyu.state.fit.machine === '{preset}'", 60)
    cells: list[list[str]] = browser.evaluate(
        "[...document.querySelectorAll('#fit-table tbody tr')]"
        ".map(tr => [...tr.children].map(td => td.textContent))"
    )
    return cells


def test_what_fits_here_lists_yoyu_fits_rows_in_english_and_japanese(
    site: dict[str, Any], browser: Browser, tmp_path: Path, artifacts: Path
) -> None:
    gateway: GatewayProcess = site["gateway"]
    gpu_box = yoyu(site["home"], "fit", "--machine", "linux-rtx3060-12g")["models"]
    go(browser, gateway, "plan")
    # The rows that run, as `yoyu fit --json` ranks them: GPU, some layers, MoE experts.
    shown_rows = rank_on(browser, "linux-rtx3060-12g", every_row=False)
    assert shown_rows == [fit_cells(row, {}) for row in gpu_box if row["runs"]]
    wheres = {row[2] for row in shown_rows}
    assert {"all on the GPU"} < wheres and any("blocks on the CPU" in w for w in wheres)
    # In English the placement reads as the ranking's own words.
    assert [row[2] for row in shown_rows] == [row["placement"] for row in gpu_box if row["runs"]]
    browser.screenshot(artifacts / "plan-fit.png")

    # A row opens the Plan view of its model on the same machine, at the row's context.
    row = next(row for row in gpu_box if row["n_cpu_moe"])
    browser.click(f"#fit-table tr[data-model='{row['model']}']")
    browser.wait_for(f"(document.getElementById('plan-result') || {{dataset: {{}}}})"
                     f".dataset.model === '{row['model']}'", 60)  # fmt: skip
    assert text(browser, "#plan-verdict") == row["verdict"]
    assert browser.evaluate("document.getElementById('plan-result').dataset.ctx") == str(row["ctx"])
    assert browser.evaluate("document.getElementById('plan-machine').value") == "linux-rtx3060-12g"
    emitted = text(browser, "pre[data-emit=llama-server]")
    assert f"--n-cpu-moe {row['n_cpu_moe']}" in emitted
    assert browser.errors == []

    cpu_box = yoyu(site["home"], "fit", "--machine", "linux-cpu-32g")["models"]
    with Browser(tmp_path / "profile-ja") as japanese:
        japanese.accept_language("ja,en")
        go(japanese, gateway, "plan")
        words = ui_table("ja")
        every_row = rank_on(japanese, "linux-cpu-32g", every_row=True)
        assert every_row == [fit_cells(row, words) for row in cpu_box]
        assert {row[2] for row in every_row} == {"CPU のみ", "収まりません"}
        page = japanese.evaluate("document.getElementById('page-plan').innerText")
        assert "ここで動くモデル" in page and "必要メモリ" in page and "最小コンテキスト" in page
        assert "What fits here" not in page and "memory needed" not in page
        japanese.screenshot(artifacts / "plan-fit-ja.png")
        assert japanese.errors == []


def test_guard_log_page_shows_each_decision_with_its_samples(
    site: dict[str, Any], browser: Browser, artifacts: Path
) -> None:
    go(browser, site["gateway"], "guard")
    warn = "document.querySelector('#guard-list details[data-kind=warn]')"
    browser.wait_for(warn)
    browser.evaluate(f"{warn}.open = true")
    # The samples behind the warning: each one's available memory, under the caution floor.
    total = psutil.virtual_memory().total
    caution = policy_from_config({"caution": CAUTION}).resolve(total).caution_bytes
    rows = browser.evaluate(
        f"[...{warn}.querySelectorAll('tbody tr')].map(tr => tr.children[1].textContent)"
    )
    assert rows, "the warning came with no samples"
    assert all(parse_shown(row) < caution for row in rows)
    assert f"threshold: {shown(caution)}" in text(browser, "#guard-list details[data-kind=warn]")
    start = "#guard-list details[data-kind=start] summary"
    assert "guard started" in text(browser, start)
    unloads = "document.querySelectorAll('#guard-list details[data-kind=unload]').length"
    assert browser.evaluate(unloads) == 0  # the grace of an hour: a warning, no more
    browser.screenshot(artifacts / "guard.png")
    assert browser.errors == []


def parse_shown(figure: str) -> float:
    """Bytes from a figure as the page writes it ("21.55 GiB")."""
    number, unit = figure.split()
    return float(number) * (GIB if unit == "GiB" else MIB)


PHONE_WIDTH = 390


def test_every_page_reads_on_a_phone_in_dark_mode(
    site: dict[str, Any], browser: Browser, artifacts: Path
) -> None:
    browser.viewport(PHONE_WIDTH, 844, mobile=True)
    browser.color_scheme("dark")
    try:
        for page in PAGES:
            go(browser, site["gateway"], page)
            browser.evaluate("new Promise(r => setTimeout(r, 300))")  # a layout pass
            # a phone's layout viewport widens to fit what overflows: measure against the screen
            overflow = browser.evaluate("document.documentElement.scrollWidth") - PHONE_WIDTH
            assert overflow <= 0, f"the {page} page is {overflow} px wider than a phone"
            browser.screenshot(artifacts / f"phone-dark-{page}.png")
        background = browser.evaluate("getComputedStyle(document.body).backgroundColor")
        red, green, blue = (int(part) for part in background[4:-1].split(",")[:3])
        assert red + green + blue < 3 * 60, f"dark mode background is {background}"
    finally:
        browser.viewport(1280, 900)
        browser.color_scheme("light")
    assert browser.errors == []


def test_a_japanese_reader_gets_the_memory_and_models_pages_in_japanese(
    site: dict[str, Any], browser: Browser, tmp_path: Path, artifacts: Path
) -> None:
    gateway: GatewayProcess = site["gateway"]
    shown_text = "document.querySelector('main section:not([hidden])').innerText"
    go(browser, gateway, "models")  # Chromium's own Accept-Language (en-US): English
    browser.wait_for("document.querySelector('[data-model-card=tiny]')")
    assert browser.evaluate("document.documentElement.lang") == "en"
    assert "Routes and aliases" in browser.evaluate(shown_text)
    with Browser(tmp_path / "profile-ja") as japanese:
        japanese.accept_language("ja,en")
        go(japanese, gateway, "memory")
        japanese.wait_for("document.getElementById('mem-available').textContent.includes('iB')")
        assert japanese.evaluate("document.documentElement.lang") == "ja"
        nav = japanese.evaluate("document.getElementById('nav').innerText")
        assert "メモリ" in nav and "モデル" in nav and "Memory" not in nav
        memory = japanese.evaluate(shown_text)
        assert "直近数分" in memory and "エンジン" in memory and "利用可能" in memory
        assert "Last minutes" not in memory and "Engines" not in memory
        assert "Available" not in memory and "iB" in memory  # units stay as they are
        go(japanese, gateway, "models")
        japanese.wait_for("document.querySelector('[data-model-card=tiny] [data-state]')")
        models = japanese.evaluate(shown_text)
        assert "ルートとエイリアス" in models and "バックエンド:" in models
        assert "Routes and aliases" not in models and "backend:" not in models
        assert text(japanese, "[data-model-card=tiny] [data-action=load]") == "ロード"
        state = "document.querySelector('[data-model-card=tiny] [data-state]').dataset.state"
        assert japanese.evaluate(state) in ("unloaded", "ready")  # the data stays English
        japanese.screenshot(artifacts / "models-ja.png")
        assert japanese.errors == []


def test_a_keyed_gateway_shows_nothing_before_the_key_is_given(tmp_path: Path) -> None:
    config = tmp_path / "yoyu.toml"
    config.write_text(f'[server]\napi_key_env = "{KEY_VARIABLE}"\n', encoding="utf-8")
    env = {KEY_VARIABLE: KEY, "YOYU_HOME": str(tmp_path / "home")}
    args = ["--config", str(config)]
    with GatewayProcess(args, env=env, command="dashboard") as gateway:
        page = httpx.get(f"{gateway.url}/", headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        for path in ("/dashboard/api/runs", "/dashboard/api/guard", "/dashboard/events"):
            assert httpx.get(gateway.url + path, timeout=10).status_code == 401
        assert httpx.get(f"{gateway.url}/dashboard/static/app.js", timeout=10).status_code == 200
        with Browser(tmp_path / "profile") as browser:
            browser.open(f"{gateway.url}/")
            assert browser.evaluate("location.pathname") == "/login"
            browser.evaluate("document.getElementById('login-key').value = 'wrong'")
            browser.click("#login-go")
            assert "wrong API key" in browser.wait_for(
                "!document.getElementById('login-error').hidden && "
                "document.getElementById('login-error').textContent"
            )
            browser.evaluate(f"document.getElementById('login-key').value = {json.dumps(KEY)}")
            browser.click("#login-go")
            browser.wait_for("location.pathname === '/' && document.body.dataset.page")
            browser.wait_for("document.getElementById('mem-available').textContent.includes('iB')")
            assert browser.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
            browser.click("#logout")
            browser.wait_for("location.pathname === '/login'")
            status = browser.evaluate("fetch('/dashboard/api/runs').then(r => r.status)")
            assert status == 401
            assert browser.errors == []


def test_yoyu_dashboard_is_a_monitor_with_nothing_served(tmp_path: Path, artifacts: Path) -> None:
    env = {"YOYU_HOME": str(tmp_path / "home")}
    with (
        GatewayProcess([], env=env, command="dashboard") as gateway,
        Browser(tmp_path / "profile") as browser,
    ):
        go(browser, gateway, "models")
        message = browser.wait_for("document.querySelector('#models-list p').textContent")
        assert "No model is served" in message
        go(browser, gateway, "memory")
        browser.wait_for("document.getElementById('mem-available').textContent.includes('iB')")
        assert httpx.get(f"{gateway.url}/v1/models", timeout=10).json()["data"] == []
        go(browser, gateway, "runs")  # an empty store, and no guard of its own: each page says so
        assert "No stored runs yet" in browser.wait_for(
            "document.getElementById('runs-view').textContent"
        )
        go(browser, gateway, "guard")
        assert "No decision logged yet" in browser.wait_for(
            "document.getElementById('guard-list').textContent"
        )
        assert browser.errors == []
