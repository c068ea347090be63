"""A chaos run: ``yoyu serve`` under load while engines die and memory runs short.

One real ``yoyu serve`` on loopback serves several models (the real Gemma and
tiny ones, a remote API that fails some requests) under a memory budget that
holds only some of them at once, with routes that fall back and an alias.
Clients send a seeded mix of whole and streamed requests across those names
while three faults run against it:

* an engine the gateway started is SIGKILLed at random (``kill_every_s``),
* another process eats memory into the guard's caution zone and holds it
  (``yoyu/testing/memory_hog.py``, every ``hog_every_s``),
* some streaming clients hang up after the first event (``leave_share``).

Floors are placed ``room_bytes`` below the memory available at the start, so
a run uses a few GiB of a big machine and still meets a real floor. What is
reported (``ChaosReport``) is what the promise is made of: every failure a
clean OpenAI error, no floor crossed, no engine left running after the
gateway stops, no lease left held, and the gateway's own memory not growing.

``run_chaos(models, settings, folder)`` is the whole run; ``benchmarks/chaos.py``
prints it against a calm run of the same mix, and a test runs a short one.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import random
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import psutil

from yoyu.backends.engine_main import ORPHAN_GRACE_S, PARENT_POLL_S
from yoyu.estimate.engine import LLAMA_CPP_PYTHON, LLAMA_SERVER_NAME
from yoyu.gateway.config import ServedModel
from yoyu.gateway.sizing import PlanSizer
from yoyu.guard.audit import AUDIT_FILE_NAME, read_audit
from yoyu.monitor.leak import LeakCheck, check_leak
from yoyu.testing.chaos_background import (
    CAUTION_GAP_BYTES,
    Engine,
    Faults,
    Watch,
    identities,
    kill_engine,
)
from yoyu.testing.chaos_client import ANSWERED, LEFT, UNCLEAN, ChaosRequest, Outcome, send
from yoyu.testing.gateway_process import GatewayProcess
from yoyu.testing.openai_stub import OpenAIStub, StubBehaviour
from yoyu.testing.waiting import WaitTimeout, wait_until
from yoyu.units import GIB, MIB

ROUTE_HEADER = "x-yoyu-route"
SETTLE_TIMEOUT_S = 10.0  # for leases to be released after the last answer
WARM_UP_ROUNDS = 3
TINY_SETTINGS = {"n_ctx": 256, "n_batch": 64, "n_ubatch": 64, "seed": 1}
REAL_SETTINGS = {"n_ctx": 512, "seed": 1}


@dataclass(frozen=True)
class ChaosModels:
    """The model files served; ``real`` is the real Gemma (None: tiny models only)."""

    tiny: tuple[Path, Path]
    real: Path | None = None
    server_binary: Path | None = None  # llama-server; None: llama-cpp-python's server

    @property
    def engine_kind(self) -> str:
        return LLAMA_SERVER_NAME if self.server_binary else LLAMA_CPP_PYTHON


@dataclass(frozen=True)
class ChaosSettings:
    requests: int = 300
    clients: int = 6
    min_duration_s: float = 0.0  # keep sending past ``requests`` until this long
    time_limit_s: float = 240.0  # requests not sent by then are not sent
    kill_every_s: float = 4.0  # mean seconds between engine SIGKILLs; 0: none
    hog_every_s: float = 12.0  # seconds between memory hogs; 0: none
    hog_hold_s: float = 2.0
    leave_share: float = 0.1  # streamed requests whose client hangs up after one event
    room_bytes: int = 3 * GIB  # available at start minus the abort floor
    remote_fail_every: int = 5  # the remote API fails every Nth request
    request_timeout_s: float = 60.0  # a request unanswered this long is a hang
    seed: int = 7

    def calm(self) -> ChaosSettings:
        """The same load with no faults: the peer a chaos run is compared with."""
        return replace(self, kill_every_s=0.0, hog_every_s=0.0, leave_share=0.0)


@dataclass(frozen=True)
class ChaosReport:
    sent: int
    answered: int
    left: int  # streams the client hung up on, on purpose
    clean_errors: dict[str, int]  # "503 service_unavailable" -> count
    unclean: dict[str, int]  # "reset", "hang", "truncated", "malformed" -> count
    fallbacks: int  # the gateway's yoyu_fallbacks_total
    routes: dict[str, int]  # served model -> answers it gave
    engine_kills: int
    hogs: int
    guard_actions: dict[str, int]  # audit kinds: warn, unload, terminate, kill
    floor_bytes: int
    floor_crossings: int  # 20 Hz samples of available memory below the floor
    least_headroom_bytes: int  # the lowest available minus floor seen
    orphan_engines: int  # engine processes alive after the gateway stopped
    leases_leaked: int  # requests still counted in flight once all were answered
    tracebacks_in_log: int
    gateway_growth: LeakCheck  # the gateway's anonymous + swapped memory, second half of the run
    gateway_settling: LeakCheck  # the same over the first half, while its allocator settles
    gateway_rss_mib: tuple[float, float]  # its RSS at the first and the last sample
    answer_p50_s: float
    answer_p95_s: float
    duration_s: float
    budget_bytes: int = 0
    needs_bytes: dict[str, int] = field(default_factory=dict)
    first_traceback: str = ""  # the first one in the gateway's log, to read when there is one

    @property
    def unclean_total(self) -> int:
        return sum(self.unclean.values())


# -- the run -----------------------------------------------------------------


def run_chaos(models: ChaosModels, settings: ChaosSettings, folder: Path) -> ChaosReport:
    """One run; ``folder`` gets the config, the gateway's log and its data folder."""
    floor = psutil.virtual_memory().available - settings.room_bytes
    if floor < CAUTION_GAP_BYTES:
        raise RuntimeError(
            f"{settings.room_bytes / GIB:.1f} GiB of room needs more memory available than "
            f"{psutil.virtual_memory().available / GIB:.1f} GiB"
        )
    needs = _needs(models)
    budget = max(needs.values()) + min(needs.values()) + 16 * MIB  # two models, never three
    with OpenAIStub(StubBehaviour(fail_every=settings.remote_fail_every)) as stub:
        config = folder / "yoyu.toml"
        config.write_text(_config(models, stub.base_url, floor, budget), encoding="utf-8")
        gateway = GatewayProcess(
            ["--config", str(config)],
            env={"YOYU_HOME": str(folder / "home")},
            log_path=folder / "serve.log",
        )
        with _started(gateway):
            report, engines = _drive(gateway, models, settings, floor)
            report = replace(report, orphan_engines=_stop_and_count_orphans(gateway, engines))
    audit = folder / "home" / "data" / AUDIT_FILE_NAME
    kinds = collections.Counter(record.kind for record in read_audit(audit) if audit.exists())
    return replace(
        report,
        guard_actions={k: kinds[k] for k in ("warn", "unload", "terminate", "kill") if kinds[k]},
        tracebacks_in_log=gateway.log_text().count("Traceback"),
        first_traceback=_first_traceback(gateway.log_text()),
        budget_bytes=budget,
        needs_bytes=needs,
    )


def request_mix(models: ChaosModels, settings: ChaosSettings) -> Iterator[ChaosRequest]:
    """The seeded mix, without end: every served name, route and alias; half streamed."""
    dice = random.Random(settings.seed)
    names = _names(models)
    for index in itertools.count():
        stream = dice.random() < 0.5
        leave = stream and dice.random() < settings.leave_share
        yield ChaosRequest(index, dice.choice(names), stream, leave)


def _drive(
    gateway: GatewayProcess, models: ChaosModels, settings: ChaosSettings, floor: int
) -> tuple[ChaosReport, set[Engine]]:
    """Warm up, then the clients and the faults together; the figures before the stop,
    and every engine process the gateway ran meanwhile."""
    _warm_up(gateway, models, settings)
    watch = Watch(gateway, floor)
    faults = Faults(gateway, settings, floor)
    started = time.monotonic()
    with watch.running(), faults.running():
        outcomes = _load(gateway, request_mix(models, settings), settings)
    duration = time.monotonic() - started
    report = _report(
        outcomes, watch, faults, floor, duration,
        fallbacks=_fallbacks(gateway), leases=_leases_after(gateway),
    )  # fmt: skip
    return report, watch.engines


def _warm_up(gateway: GatewayProcess, models: ChaosModels, settings: ChaosSettings) -> None:
    """Every name, whole and streamed, a few times, before anything is measured: the
    gateway's first requests grow its heap (pools, caches) once, which is not a leak."""
    with httpx.Client(base_url=gateway.url, timeout=settings.request_timeout_s) as client:
        for _ in range(WARM_UP_ROUNDS):
            for name in _names(models):
                for stream in (False, True):
                    send(client, ChaosRequest(-1, name, stream), ROUTE_HEADER)


def _load(
    gateway: GatewayProcess, requests: Iterator[ChaosRequest], settings: ChaosSettings
) -> list[Outcome]:
    """``settings.clients`` threads, each with its own keep-alive client, taking the next
    request of the mix until ``requests`` are sent and ``min_duration_s`` has passed (so
    the faults get their time however fast the answers come), or ``time_limit_s``."""
    started = time.monotonic()
    lock = threading.Lock()
    outcomes: list[Outcome] = []

    def next_request() -> ChaosRequest | None:
        with lock:
            elapsed = time.monotonic() - started
            request = next(requests)
            enough = request.index >= settings.requests and elapsed >= settings.min_duration_s
            return None if enough or elapsed > settings.time_limit_s else request

    def client_loop() -> None:
        with httpx.Client(base_url=gateway.url, timeout=settings.request_timeout_s) as client:
            while (request := next_request()) is not None:
                outcome = send(client, request, ROUTE_HEADER)
                with lock:
                    outcomes.append(outcome)

    clients = [threading.Thread(target=client_loop) for _ in range(settings.clients)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    return outcomes


def _report(
    outcomes: Sequence[Outcome],
    watch: Watch,
    faults: Faults,
    floor: int,
    duration: float,
    *,
    fallbacks: int,
    leases: int,
) -> ChaosReport:
    tally = collections.Counter(outcome.result for outcome in outcomes)
    answered = sorted(o.seconds for o in outcomes if o.result == ANSWERED)
    routes = collections.Counter(o.route for o in outcomes if o.result == ANSWERED)
    errors = {k: n for k, n in tally.items() if k not in (ANSWERED, LEFT) and "unclean" not in k}
    unclean = {k.removeprefix(UNCLEAN): n for k, n in tally.items() if k.startswith(UNCLEAN)}
    return ChaosReport(
        sent=len(outcomes),
        answered=tally[ANSWERED],
        left=tally[LEFT],
        clean_errors=dict(sorted(errors.items())),
        unclean=unclean,
        fallbacks=fallbacks,
        routes=dict(sorted(routes.items())),
        engine_kills=faults.kills,
        hogs=faults.hogs,
        guard_actions={},
        floor_bytes=floor,
        floor_crossings=watch.crossings,
        least_headroom_bytes=watch.least_headroom,
        orphan_engines=0,
        leases_leaked=leases,
        tracebacks_in_log=0,
        gateway_growth=check_leak(watch.growth_points[len(watch.growth_points) // 2 :]),
        gateway_settling=check_leak(watch.growth_points[: len(watch.growth_points) // 2]),
        gateway_rss_mib=watch.rss_ends_mib(),
        answer_p50_s=_percentile(answered, 0.50),
        answer_p95_s=_percentile(answered, 0.95),
        duration_s=duration,
    )


# -- the gateway's own figures, and its stop ------------------------------------


@contextmanager
def _started(gateway: GatewayProcess) -> Iterator[None]:
    gateway.start()
    try:
        yield
    finally:
        gateway.stop()  # tidies up anything the run left (after it was counted)


def _fallbacks(gateway: GatewayProcess) -> int:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    lines = [line for line in text.splitlines() if line.startswith("yoyu_fallbacks_total")]
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in lines)


def _leases_after(gateway: GatewayProcess) -> int:
    """Requests the gateway still counts in flight once every client has its answer
    (a stream a client left is released when the gateway notices: waited for)."""

    def in_flight() -> int:
        memory = httpx.get(f"{gateway.url}/yoyu/memory", timeout=10).json()
        return sum(int(model["in_flight"]) for model in memory["loaded"])

    try:
        wait_until(lambda: in_flight() == 0, SETTLE_TIMEOUT_S, "every lease to be released")
    except WaitTimeout:
        return in_flight()
    return 0


def _stop_and_count_orphans(gateway: GatewayProcess, seen: set[Engine]) -> int:
    """Stop the gateway as a user's Ctrl-C would; any engine it ran that is still alive
    once an orphaned engine's own watchdog has had its time is an orphan.

    The gateway stops the engines it holds; an engine it was still starting when the
    signal came is left to the engine's watchdog (``engine_main``: the parent gone, it
    stops itself within ``ORPHAN_GRACE_S``), which is the promise measured here."""
    engines = seen | identities(gateway.engine_pids())
    gateway.terminate()

    def alive() -> list[int]:
        return [pid for pid, created in engines if _alive(pid, created)]

    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not alive(), ORPHAN_GRACE_S + 2 * PARENT_POLL_S, "engines to stop")
    orphans = alive()
    for pid in orphans:  # counted; now tidied, so one bad run does not haunt the next
        kill_engine(pid)
    return len(orphans)


def _alive(pid: int, created: float) -> bool:
    try:
        process = psutil.Process(pid)
        return process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _first_traceback(log: str, most_lines: int = 40) -> str:
    """The first traceback in ``log`` and the lines just before it (what was being done)."""
    lines = log.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), None)
    if start is None:
        return ""
    return "\n".join(lines[max(0, start - 3) : start + most_lines])


def _percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


# -- the served configuration ----------------------------------------------------


def _names(models: ChaosModels) -> list[str]:
    """Every name a client may ask for: the served models, the routes and the alias."""
    return [*_local_models(models), "cloud", "chat", "default", "cloud-first"]


def _needs(models: ChaosModels) -> dict[str, int]:
    """Each local model's need as the gateway's own sizer plans it for this engine."""
    sizer = PlanSizer()
    return {
        name: sizer.size(
            ServedModel(name, "local", path=path, settings=settings), models.engine_kind
        ).need_bytes
        for name, (path, settings) in _local_models(models).items()
    }


def _local_models(models: ChaosModels) -> dict[str, tuple[Path, dict[str, int]]]:
    local = {"tiny-a": (models.tiny[0], TINY_SETTINGS), "tiny-b": (models.tiny[1], TINY_SETTINGS)}
    if models.real is not None:
        local["gemma"] = (models.real, REAL_SETTINGS)
    return local


def _config(models: ChaosModels, remote_url: str, floor: int, budget: int) -> str:
    binary = f'server_binary = "{models.server_binary}"' if models.server_binary else ""
    first = "gemma" if models.real else "tiny-a"
    local = "".join(
        f'[served.{name}]\nbackend = "local"\npath = "{path}"\nsettings = {_inline(settings)}\n\n'
        for name, (path, settings) in _local_models(models).items()
    )
    return f"""
[server]
memory_floor = {floor}
memory_budget = {budget}
cooldown_s = 1
health_interval_s = 2

[guard]
abort = {floor}
caution = {floor + CAUTION_GAP_BYTES}
grace = 1.0

[backends.local]
kind = "llama.cpp"
{binary}

[backends.cloud]
kind = "openai"
base_url = "{remote_url}"
models = ["stub-model"]
remote = true

{local}
[served.cloud]
backend = "cloud"
upstream = "stub-model"

[routes]
chat = ["{first}", "tiny-b"]
cloud-first = ["cloud", "tiny-a"]

[aliases]
default = "chat"
"""


def _inline(settings: dict[str, int]) -> str:
    return "{ " + ", ".join(f"{key} = {value}" for key, value in settings.items()) + " }"
