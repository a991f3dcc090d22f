"""Failures leak nothing: no checked-out connection, no file descriptor, no task.

- 1,000 failures of each kind (read timeout, connection reset, 5xx, unreadable 2xx body,
  oversized body) against a real server on 127.0.0.1: afterwards the pool has no acquired
  connection, the process holds no socket beyond the pool's idle keep-alive ones, and once the
  client is closed the open-file count is back to its baseline;
- a client opened, used and closed 1,000 times leaves no socket, no task and no session behind.

Fast by configuration: tiny timeouts, no retries or zero backoff, calls run concurrently.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from conftest import (
    checked_out,
    live_connections,
    open_fds,
    serve_locally,
    settle_connections,
    settle_fds,
)

from finalpos_async import AsyncFinalPOS, FinalPOSError
from finalpos_async._exceptions import (
    APIConnectionError,
    APITimeoutError,
    InternalServerError,
    ResponseValidationError,
)
from finalpos_async.sandbox import Sandbox

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts file descriptors through /proc"
)

FAILURES = 1000
CONCURRENCY = 50


def client_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of this loop other than the test itself and the in-process server's handlers."""
    out = set()
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and "/aiohttp/web_" in code.co_filename:
            continue
        out.add(task)
    return out


async def wait_for_hits(server: FaultServer, count: int, *, timeout: float = 5.0) -> None:
    """Poll with a deadline until the server has seen `count` requests."""
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout
    while server.hits < count and loop.time() < until:  # noqa: ASYNC110 - a poll, not a wait
        await asyncio.sleep(0.01)


@attrs.define
class FaultServer:
    """Answers by path: /timeout hangs, /reset drops the connection, /5xx answers 500,
    /badbody answers 200 with HTML, /huge a body past the client's limit, /ok answers 200."""

    url: str = ""
    release: asyncio.Event = attrs.field(factory=asyncio.Event)
    hits: int = 0
    # Every connection a request arrived on (server side).
    connections: set[asyncio.BaseTransport] = attrs.field(factory=set)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if request.transport is not None:
            self.connections.add(request.transport)
        kind = request.match_info["kind"]
        if kind == "timeout":
            await self.release.wait()
            return web.Response(status=599)
        if kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=599)
        if kind == "5xx":
            return web.json_response({"statusCode": 500, "message": "boom"}, status=500)
        if kind == "badbody":
            return web.Response(text="<html><title>oops</title></html>", content_type="text/html")
        if kind == "huge":
            return web.Response(body=b"x" * 8192, content_type="application/json")
        return web.json_response({"ok": True})


@pytest.fixture
async def fault_server() -> AsyncIterator[FaultServer]:
    """A real server on 127.0.0.1 (free port); hanging handlers are let go at teardown."""
    server = FaultServer()
    async with serve_locally(server.handle, "/{kind}", server.release, shutdown_timeout=0.2) as url:
        server.url = url
        yield server


def make_client(server: FaultServer, **kwargs: Any) -> AsyncFinalPOS:
    settings: dict[str, Any] = {
        "api_key": "sk_test_leaks",
        "base_url": server.url,
        "timeout": 5.0,
        "max_retries": 0,
        "backoff_base": 0,
        "backoff_cap": 0,
        "max_response_bytes": 4096,
    }
    settings.update(kwargs)
    return AsyncFinalPOS(**settings)


async def run_bounded(n: int, call: Callable[[], Awaitable[Any]]) -> list[BaseException | None]:
    """Run `call` n times, CONCURRENCY at a time; return what each raised (None: no error)."""
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one() -> BaseException | None:
        async with sem:
            try:
                await call()
            except FinalPOSError as exc:
                return exc
            return None

    return list(await asyncio.gather(*(one() for _ in range(n))))


def idle_connections(server: FaultServer) -> int:
    """Connections the client keeps open to `server` (all idle once nothing is checked out)."""
    return live_connections(server.connections)


KINDS: list[tuple[str, type[FinalPOSError], dict[str, Any]]] = [
    ("timeout", APITimeoutError, {"timeout": 0.05}),
    ("reset", APIConnectionError, {}),
    ("5xx", InternalServerError, {}),
    # With one zero-backoff retry, so the retry path is exercised too.
    ("5xx", InternalServerError, {"max_retries": 1, "retry_budget": None}),
    ("badbody", ResponseValidationError, {}),
    ("huge", APIConnectionError, {}),
]


@pytest.mark.parametrize(
    ("kind", "error", "options"),
    KINDS,
    ids=["timeout", "reset", "5xx", "5xx-retried", "badbody", "huge"],
)
async def test_a_thousand_failures_leave_no_connection_and_no_fd(
    fault_server: FaultServer, kind: str, error: type[FinalPOSError], options: dict[str, Any]
) -> None:
    gc.collect()
    baseline = open_fds()
    tasks_before = client_tasks()
    client = make_client(fault_server, **options)
    try:
        await _fail_and_check(client, fault_server, kind, error, baseline)
    finally:
        await client.close()  # idempotent; here for a failed assertion above
    if kind == "timeout":
        fault_server.release.set()  # the server's half of those connections may end now
    after = await settle_fds(baseline)
    assert after == baseline, f"{after - baseline} file descriptors leaked"
    assert client_tasks() - tasks_before == set()


async def _fail_and_check(
    client: AsyncFinalPOS,
    server: FaultServer,
    kind: str,
    error: type[FinalPOSError],
    baseline: int,
) -> None:
    outcomes = await run_bounded(FAILURES, lambda: client.request("GET", f"/{kind}"))
    # Every call failed, with the right error: nothing was lost or swallowed.
    assert len(outcomes) == FAILURES
    assert all(isinstance(o, error) for o in outcomes), {type(o).__name__ for o in outcomes}
    # Nothing checked out of the pool...
    assert checked_out(client) == 0
    # ...and no socket beyond the idle keep-alive ones (two ends each: ours and the server's).
    idle = await settle_connections(server.connections, client.pool_limit_per_host)
    assert idle <= client.pool_limit_per_host
    in_use = await settle_fds(baseline + 2 * idle)
    assert in_use <= baseline + 2 * idle, (in_use, baseline, idle)
    # The client stays healthy after all that.
    assert await client.with_options(timeout=5.0).request("GET", "/ok") == {"ok": True}
    assert checked_out(client) == 0


async def test_a_thousand_open_use_close_cycles_leave_nothing_behind(
    fault_server: FaultServer,
) -> None:
    gc.collect()
    baseline = open_fds()
    tasks_before = client_tasks()
    sessions_before = sum(isinstance(o, aiohttp.ClientSession) for o in gc.get_objects())
    for i in range(1000):
        async with make_client(fault_server, timeout=5.0) as client:
            if i % 2:
                assert await client.request("GET", "/ok") == {"ok": True}
            else:
                with pytest.raises(InternalServerError):
                    await client.request("GET", "/5xx")
            assert checked_out(client) == 0
        assert client.is_closed
    del client
    gc.collect()
    assert await settle_fds(baseline) == baseline
    assert client_tasks() - tasks_before == set()
    sessions_after = sum(isinstance(o, aiohttp.ClientSession) for o in gc.get_objects())
    assert sessions_after == sessions_before


def test_the_sync_client_opened_and_closed_leaves_no_thread_and_no_socket() -> None:
    import threading

    from finalpos_sync import FinalPOS

    with Sandbox().run_in_thread() as sandbox:
        with FinalPOS(sandbox.api_key, base_url=sandbox.url) as client:  # warm-up
            client.request("GET", "/v1/api/customers")
        gc.collect()
        fds, threads = open_fds(), threading.active_count()
        for _ in range(200):
            with FinalPOS(sandbox.api_key, base_url=sandbox.url, max_retries=0) as client:
                client.request("GET", "/v1/api/customers")
        gc.collect()
        # Each client's loop thread and sockets are gone once it is closed.
        assert threading.active_count() == threads
        # The sandbox thread closes its ends as it notices: poll for it, with a deadline.
        until = time.monotonic() + 5.0
        while open_fds() > fds and time.monotonic() < until:
            time.sleep(0.01)
        # Not more than before (a leak). Fewer happens: the sandbox's end of the warm-up
        # connection may still be open at the first count (seen once in CI: 20 against 21).
        assert open_fds() <= fds


async def test_with_options_copies_share_the_pool_and_open_no_socket(
    fault_server: FaultServer,
) -> None:
    async with make_client(fault_server, timeout=5.0) as client:
        assert await client.request("GET", "/ok") == {"ok": True}
        baseline = open_fds()
        for i in range(1000):
            view = client.with_options(max_retries=i % 3, default_headers={"X-Run": str(i)})
            if i % 100 == 0:
                assert await view.request("GET", "/ok") == {"ok": True}
            await view.close()  # a no-op on a copy: the pool stays open
        assert not client.is_closed
        assert await settle_fds(baseline) <= baseline
        assert checked_out(client) == 0


async def test_cancelled_calls_release_their_connections(fault_server: FaultServer) -> None:
    # A caller's own timeout (asyncio.wait_for / task cancel) must not strand a connection.
    async with make_client(fault_server, timeout=30.0) as client:
        baseline = open_fds()
        # More calls than pool slots: some hang on the server, the rest wait for a slot.
        tasks = [asyncio.create_task(client.request("GET", "/timeout")) for _ in range(200)]
        in_flight = client.pool_limit_per_host
        await wait_for_hits(fault_server, in_flight)
        assert fault_server.hits == in_flight
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert checked_out(client) == 0
        fault_server.release.set()
        assert await settle_fds(baseline + 2 * idle_connections(fault_server)) <= baseline + 2 * (
            idle_connections(fault_server)
        )


@pytest.mark.skipif(sys.platform == "win32", reason="uses /proc")
async def test_sandbox_clients_opened_and_closed_leave_nothing_behind() -> None:
    gc.collect()
    baseline = open_fds()
    tasks_before = client_tasks()
    for _ in range(25):
        async with AsyncFinalPOS(sandbox=True, timeout=5.0) as client:
            page = await client.request("GET", "/v1/api/customers", params={"limit": 1})
            assert isinstance(page, (dict, list))
    gc.collect()
    assert await settle_fds(baseline) == baseline
    assert client_tasks() - tasks_before == set()
