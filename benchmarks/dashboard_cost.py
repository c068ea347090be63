"""What the dashboard costs a gateway: one reading of its feed against one tick of the
gateway's own guard, measured in the same run on the same loaded engine, and the bytes
a page receives.

A gateway serves a tiny GGUF (written here) and loads it through admission; then
``--readings`` feed readings (the Memory page's point: machine, each engine's tree,
GPUs, floors; the timeline row; the models' states; the audit tail) and as many
guard ticks (sample, decide) are timed, interleaved. The feed reads once a second
(four times while a model loads) whatever the number of open pages; each page gets
one event a second, whose size is printed. Also: the weight of the page's files.

    PYTHONPATH=src python benchmarks/dashboard_cost.py [--readings 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from yoyu.gateway.config import BackendConfig, GatewayConfig, ServedModel
from yoyu.gateway.dashboard.feed import LOADING_TICK_S, TICK_S, Feed
from yoyu.gateway.dashboard.memory import memory_point, memory_reader, timeline_row
from yoyu.gateway.dashboard.models import model_states
from yoyu.gateway.dashboard.routes import STATIC_DIR, _event
from yoyu.gateway.service import GatewayService
from yoyu.guard.audit import AuditTail, default_audit_path
from yoyu.testing.tiny_models import write_tiny_model

SETTINGS = {"n_ctx": 256, "n_batch": 64, "n_ubatch": 64}


def timed(call: Callable[[], object]) -> float:
    """CPU seconds of this thread for one call (wall time on a shared machine measures the
    neighbours too)."""
    started = time.thread_time()
    call()
    return time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=300, help="readings of each kind")
    arguments = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="yoyu-dashboard-cost-"))
    tiny = write_tiny_model(folder / "tiny.gguf").path
    served = ServedModel("tiny", "local", path=tiny, settings=SETTINGS)
    config = GatewayConfig(
        backends={"local": BackendConfig("local", "llama.cpp")}, served={"tiny": served}
    )
    service = GatewayService.from_config(config)
    service.start()
    try:
        service.residency.lease(served).release()  # loaded through admission
        measure(service, arguments.readings)
    finally:
        service.close()


def measure(service: GatewayService, readings: int) -> None:
    reader = memory_reader(service)

    def point() -> dict[str, object]:
        memory = service.memory()
        return memory_point(reader.read(), memory.floor_bytes, memory.held_bytes)

    feed = Feed(point, timeline_row, lambda: model_states(service), AuditTail(default_audit_path()))
    guard = service.guard
    assert guard is not None
    feed_s, guard_s = [], []
    for _ in range(readings):
        feed_s.append(timed(feed.tick))
        guard_s.append(timed(guard.tick))
    engines = len(feed.since(0, 0).latest["engines"])  # type: ignore[index]
    update = feed.since(feed.since(0, 0).seq - 1, 10**9)
    event_bytes = len(_event("tick", asdict(update)).encode())
    feed_ms, guard_ms = statistics.median(feed_s) * 1e3, statistics.median(guard_s) * 1e3
    print(f"engines watched: {engines}; {readings} readings each, interleaved (CPU time, medians)")
    print(f"  dashboard feed reading: {feed_ms:.3f} ms")
    print(f"  guard tick (peer):      {guard_ms:.3f} ms")
    print(f"  ratio feed / guard:     {feed_ms / guard_ms:.2f}")
    for label, tick_s in (("idle", TICK_S), ("while loading", LOADING_TICK_S)):
        share = 100 * feed_ms / 1e3 / tick_s
        print(f"  feed CPU {label} ({1 / tick_s:g} Hz): {share:.3f} % of a core")
    print(f"one page's event per second: {event_bytes} bytes")
    files = sorted(STATIC_DIR.iterdir())
    total = sum(path.stat().st_size for path in files)
    print(f"page files: {total} bytes in {len(files)} files ("
          + ", ".join(f"{p.name} {p.stat().st_size}" for p in files) + ")")  # fmt: skip


if __name__ == "__main__":
    main()
