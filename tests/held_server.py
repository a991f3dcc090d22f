"""`held_server()`: an HTTP server on 127.0.0.1, in a thread of its own, that holds requests.

Every request is answered `[]` (200), after `hold` seconds or, with `hold=None`, once the test
calls `release()` (or the server stops). It records the `n` query parameter of each request it
received (`seen`), and runs in its own thread and loop so that sync clients (which block their
thread) and async clients (on the test's loop) can both be pointed at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from aiohttp import web

DEADLINE = 30.0  # the longest any request is held, and any start or stop may take


class HeldServer:
    """The running server: its `url`, the `n` values it has `seen`, and `release()`."""

    def __init__(self, hold: float | None) -> None:
        self.hold = hold
        self.url = ""
        self.seen: set[int] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None

    @property
    def hits(self) -> int:
        """Requests received so far."""
        with self._lock:
            return len(self.seen)

    def release(self) -> None:
        """Answer every request held, and every later one at once."""
        loop, event = self._loop, self._release
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the server's loop has already ended
                loop.call_soon_threadsafe(event.set)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        with self._lock:
            self.seen.add(int(request.query.get("n", "-1")))
        assert self._release is not None
        hold = DEADLINE if self.hold is None else self.hold
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._release.wait(), hold)
        return web.json_response([])

    async def serve(self, ready: threading.Event, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        ready.set()
        try:
            await stop.wait()
        finally:
            self._release.set()
            await runner.cleanup()


@contextlib.contextmanager
def held_server(hold: float | None = None) -> Iterator[HeldServer]:
    """Run a `HeldServer` in a thread for the `with` block; it stops (and releases) on exit."""
    server = HeldServer(hold)
    ready = threading.Event()
    stop_box: list[asyncio.Event] = []

    async def main() -> None:
        stop = asyncio.Event()
        stop_box.append(stop)
        await server.serve(ready, stop)

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="held-server", daemon=True)
    thread.start()
    if not ready.wait(DEADLINE):
        raise RuntimeError("the held server did not start")
    try:
        yield server
    finally:
        assert server._loop is not None
        server._loop.call_soon_threadsafe(stop_box[0].set)
        thread.join(DEADLINE)
