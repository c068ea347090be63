"""Stop work for a client that left, or ran out of time, by cancelling the task doing it.

A request's work runs in the task that serves it (the engine is called on the
event loop); a client that disconnects must stop it at once, so its engine
stops generating for nobody. ``ClientWatch`` is one watcher task on the ASGI
``receive`` channel (after the body was read only ``http.disconnect`` can come)
and, when asked, a deadline; either cancels the guarded task, and the watch
says which. The guarded code turns that cancellation into its own error.

Starlette's ``StreamingResponse`` does the same for a stream with an anyio task
group, a second task and cancel scopes per response; under load those cost
the gateway about a tenth of its CPU per streamed request (py-spy on
``yoyu serve``), so the relay uses this watch for both its whole answers and
its streams (``RelayResponse``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from types import TracebackType

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class ClientWatch:
    """``with ClientWatch(receive, timeout_s) as watch:`` the current task is cancelled when
    the client disconnects (``watch.left``) or the deadline passes (``watch.timed_out``)."""

    def __init__(self, receive: Receive, timeout_s: float | None = None) -> None:
        self._receive = receive
        self._timeout_s = timeout_s
        self.left = False
        self.timed_out = False
        self._done = False
        self._task: asyncio.Task[object] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __enter__(self) -> ClientWatch:
        self._task = asyncio.current_task()
        self._watcher = asyncio.ensure_future(self._watch())
        if self._timeout_s is not None:
            self._timer = asyncio.get_running_loop().call_later(self._timeout_s, self._expire)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done = True
        if self._watcher is not None:
            self._watcher.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self.fired and self._task is not None and hasattr(self._task, "uncancel"):
            self._task.uncancel()  # the cancellation was ours, and it is handled here

    @property
    def fired(self) -> bool:
        """Whether the watch cancelled the task (the client left or time ran out)."""
        return self.left or self.timed_out

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            continue
        if not self._done:
            self.left = True
            self._cancel()

    def _expire(self) -> None:
        if not self._done and not self.left:
            self.timed_out = True
            self._cancel()

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class RelayResponse(Response):
    """A streamed answer (SSE, NDJSON) whose source stops when the client leaves: the body
    is written as it comes, under a ``ClientWatch``; a client that left ends it quietly
    (the body's own ``finally`` has closed the upstream). Headers as Starlette's
    ``StreamingResponse`` writes them (no length; the media type's charset)."""

    def __init__(
        self, body: AsyncIterator[bytes], media_type: str, headers: Mapping[str, str]
    ) -> None:
        self._body = body
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        with ClientWatch(receive) as watch:
            try:
                async for piece in self._body:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
            except asyncio.CancelledError:
                if not watch.left:
                    raise
                return  # the client is gone: nobody to finish the body for
            finally:  # a body left mid-way (between two pieces) is closed now, not at GC
                await _close(self._body)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _close(body: AsyncIterator[bytes]) -> None:
    close = getattr(body, "aclose", None)
    if close is not None:
        await close()
