"""The live dashboard at ``/``: memory, models, runs, plans and the guard's log.

``dashboard_extension(service, api_key, draining)`` gives the routes and the
lifespan of the feed (one reading a second, shared by every open page over
server-sent events) for ``create_app`` to mount behind the trust middleware.
Everything shown comes from the service, the monitor's readers, the run store
and the guard's audit log: the dashboard keeps no state of its own but the last
minutes of readings for its timeline (a few numbers each).

``create_app`` imports this package when it builds the app (this one imports
``gateway.app`` for ``Extension``).

Modules: ``memory`` (the Memory page's reading), ``feed`` (the thread and its
history), ``models``, ``runs``, ``planning``, ``guardlog`` (each page's JSON),
``session`` (the login cookie), ``language`` (its words in English or Japanese),
``routes`` (HTTP). Static files (the page, its
script, and uPlot, MIT, vendored from npm) live in ``static/``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from yoyu.gateway.app import Extension
from yoyu.gateway.dashboard.session import LOGIN_PAGE, LOGIN_PATH
from yoyu.gateway.service import GatewayService

__all__ = ["LOGIN_PAGE", "OPEN_PATHS", "OPEN_PREFIXES", "dashboard_extension"]
# Served without the key: the login page and call, and the page's files (no data in them).
OPEN_PATHS = frozenset({LOGIN_PAGE, LOGIN_PATH})
OPEN_PREFIXES = ("/dashboard/static/",)


def dashboard_extension(
    service: GatewayService, api_key: str | None, draining: threading.Event
) -> Extension:
    """The dashboard's routes over ``service``, and its feed for the server's life."""
    from yoyu.gateway.dashboard.feed import Feed
    from yoyu.gateway.dashboard.memory import memory_point, memory_reader, timeline_row
    from yoyu.gateway.dashboard.models import model_states
    from yoyu.gateway.dashboard.planning import Planner
    from yoyu.gateway.dashboard.routes import DashboardRoutes
    from yoyu.guard.audit import AuditTail, default_audit_path
    from yoyu.machine.bandwidth import with_measured_bandwidth
    from yoyu.machine.probe import probe_machine
    from yoyu.monitor.gpu import NvmlGpus

    gpus = NvmlGpus()
    reader = memory_reader(service, gpus if gpus.open() else None)

    def point() -> dict[str, object]:
        memory = service.memory()
        return memory_point(reader.read(), memory.floor_bytes, memory.held_bytes)

    feed = Feed(point, timeline_row, lambda: model_states(service), AuditTail(default_audit_path()))
    planner = Planner(service, lambda: with_measured_bandwidth(probe_machine()))
    routes = DashboardRoutes(service, feed, planner, api_key, draining)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        feed.start()
        try:
            yield
        finally:
            feed.close()
            gpus.close()

    return Extension(routes=routes.routes(), lifespan=lifespan)
