"""Chaos: ``yoyu serve`` under load while engines are killed and memory runs short.

    PYTHONPATH=src python benchmarks/chaos.py [--requests 1500] [--clients 6]
        [--engine llama-server|llama-cpp-python] [--tiny-only] [--quick] [--json]
        [--time-limit 240] [--chaos-only]

One real ``yoyu serve`` on 127.0.0.1 serves the real Gemma 3 270M and two tiny
models (one budget holds two of the three at once), a remote API that fails
every 5th request, routes that fall back (``chat`` = gemma then tiny-b,
``cloud-first`` = the remote then tiny-a) and an alias (``default`` -> chat).
The same seeded mix of whole and streamed requests runs twice, in one run of
this script: calm (no faults), then with chaos (an engine SIGKILLed every ~4 s,
a memory hog into the guard's caution zone every 12 s, one streaming client in
ten hanging up after the first event). See ``yoyu/testing/chaos.py``.

Goals (issue 16): no unclean failure (reset, hang, truncated stream, malformed
error), no floor crossing, no orphan engine after the stop, no lease leaked,
and the gateway's own memory (anonymous + swapped) not growing over the second
half of the run (``no_leak``; the first half is its allocator settling). The ratios compare the
chaos run with the calm one: the share answered, and answer latency.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from yoyu.backends.llamacpp_build import found_program
from yoyu.testing.chaos import ChaosModels, ChaosReport, ChaosSettings, run_chaos
from yoyu.testing.real_models import GEMMA3_270M, real_model_path
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.units import GIB, MIB


def main() -> None:
    args = _arguments()
    settings = ChaosSettings(
        requests=args.requests, clients=args.clients, time_limit_s=args.time_limit
    )
    if args.quick:
        settings = dataclasses.replace(
            settings, requests=150, kill_every_s=1.5, hog_every_s=3.0, hog_hold_s=1.0
        )
    with tempfile.TemporaryDirectory(prefix="yoyu-chaos-") as scratch:
        folder = Path(scratch)
        models = _models(folder, args.engine, args.tiny_only)
        reports: dict[str, ChaosReport] = {}
        runs = [("calm", settings.calm()), ("chaos", settings)]
        for name, run_settings in runs[1:] if args.chaos_only else runs:
            (folder / name).mkdir()
            reports[name] = run_chaos(models, run_settings, folder / name)
    if args.json:
        print(json.dumps({k: dataclasses.asdict(r) for k, r in reports.items()}, indent=2))
        return
    _print(models, settings, reports)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument(
        "--engine", choices=["llama-server", "llama-cpp-python"], default="llama-server"
    )
    parser.add_argument("--tiny-only", action="store_true", help="leave the real Gemma out")
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds per run")
    parser.add_argument("--chaos-only", action="store_true", help="no calm run (a long soak)")
    parser.add_argument("--quick", action="store_true", help="150 requests, faults every 1-3 s")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def _models(folder: Path, engine: str, tiny_only: bool) -> ChaosModels:
    tiny = (
        write_tiny_model(folder / "tiny-a.gguf").path,
        write_tiny_model(folder / "tiny-b.gguf").path,
    )
    binary = found_program("llama-server") if engine == "llama-server" else None
    if engine == "llama-server" and binary is None:
        raise SystemExit("llama-server is not built: run `yoyu engine install` first")
    real = None if tiny_only else real_model_path(GEMMA3_270M)
    return ChaosModels(tiny, real, Path(binary) if binary else None)


def _print(models: ChaosModels, settings: ChaosSettings, reports: dict[str, ChaosReport]) -> None:
    """A column per run (calm, chaos), then the chaos run's details and the ratios."""
    chaos, calm = reports["chaos"], reports.get("calm")
    print(f"engine {models.engine_kind}; {settings.clients} clients; seed {settings.seed}")
    print(
        "needs (the gateway's plans): "
        + ", ".join(f"{name} {size / MIB:.0f} MiB" for name, size in chaos.needs_bytes.items())
        + f"; budget {chaos.budget_bytes / MIB:.0f} MiB; floor {chaos.floor_bytes / GIB:.2f} GiB"
    )
    print(f"{'':28}" + "".join(f"{name:>14}" for name in reports))
    for label, figure in _rows():
        print(f"{label:28}" + "".join(f"{figure(report)!s:>14}" for report in reports.values()))
    print(f"clean errors (chaos): {chaos.clean_errors or 'none'}")
    print(f"answers by route (chaos): {chaos.routes}")
    print(f"gateway anonymous memory, second half (chaos): {chaos.gateway_growth.reason}")
    for name, report in reports.items():
        if report.first_traceback:
            print(f"first traceback in the gateway's log ({name}):\n{report.first_traceback}")
    if calm is not None and _share(calm) and calm.answer_p50_s and calm.answer_p95_s:
        share = _share(chaos) / _share(calm)
        p50, p95 = chaos.answer_p50_s / calm.answer_p50_s, chaos.answer_p95_s / calm.answer_p95_s
        print(
            f"ratio chaos/calm: answered share {share:.3f}, answer p50 {p50:.2f}x, p95 {p95:.2f}x"
        )


Figure = Callable[[ChaosReport], object]


def _rows() -> list[tuple[str, Figure]]:
    return [
        ("requests sent", lambda r: r.sent),
        ("answered", lambda r: r.answered),
        ("left mid-stream (on purpose)", lambda r: r.left),
        ("clean errors", lambda r: sum(r.clean_errors.values())),
        ("unclean (goal 0)", lambda r: r.unclean_total),
        ("fallbacks taken", lambda r: r.fallbacks),
        ("engines SIGKILLed", lambda r: r.engine_kills),
        ("memory hogs", lambda r: r.hogs),
        ("guard actions", lambda r: sum(r.guard_actions.values())),
        ("floor crossings (goal 0)", lambda r: r.floor_crossings),
        ("least headroom MiB", lambda r: f"{r.least_headroom_bytes / MIB:.0f}"),
        ("orphan engines (goal 0)", lambda r: r.orphan_engines),
        ("leases leaked (goal 0)", lambda r: r.leases_leaked),
        ("tracebacks in the log", lambda r: r.tracebacks_in_log),
        ("gateway settling MiB/min", lambda r: f"{r.gateway_settling.slope_mib_per_min:+.2f}"),
        ("gateway growth MiB/min", lambda r: f"{r.gateway_growth.slope_mib_per_min:+.2f}"),
        ("gateway growth verdict", lambda r: r.gateway_growth.verdict),
        ("gateway RSS MiB first", lambda r: f"{r.gateway_rss_mib[0]:.0f}"),
        ("gateway RSS MiB last", lambda r: f"{r.gateway_rss_mib[1]:.0f}"),
        ("answer p50 ms", lambda r: f"{r.answer_p50_s * 1e3:.0f}"),
        ("answer p95 ms", lambda r: f"{r.answer_p95_s * 1e3:.0f}"),
        ("duration s", lambda r: f"{r.duration_s:.0f}"),
    ]


def _share(report: ChaosReport) -> float:
    asked = report.sent - report.left
    return report.answered / asked if asked else 0.0


if __name__ == "__main__":
    main()
