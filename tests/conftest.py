"""Shared fixtures and helpers.

The suite is grouped by what it tests: `unit/` (pure functions and rules over the source),
`client/` (the async client's request path), `sync/`, `bulk/`, `cli/`, `sandbox/`, and `e2e/`
(subprocesses, type checkers, Prism, schemathesis: slow, and the same on every Python). Every
test under `e2e/` carries the `e2e` marker (`pytest_collection_modifyitems` below), so CI runs
them once; a few end-to-end tests elsewhere are marked one by one.

- `scripted`: a script of `Step`s played through `MockTransport`, the SDK's own testing seam (no
  socket); the default for request-path tests (what is sent, retries, errors, pagination);
- `scripted_server`: the same script played by a real aiohttp server on 127.0.0.1, only where
  the socket is what is under test (resets, hangs, pooling, leaks); `serve_locally` runs any
  handler the same way;
- `http`: a raw aiohttp session to the `finalpos_sandbox` plugin fixture;
- `open_fds`/`settle_fds` (fd counts, polled with a deadline) and `all_customers` (every page);
- `redis_servers`: real redis-servers on free ports (`tests/redis_server.py`);
- `postgres_cluster` (one private PostgreSQL cluster per test process, `tests/postgres_server.py`)
  and `postgres_url` (a URL whose tables live in a fresh schema of it);
- `checked_out` (attempts still holding a pooled connection), `aiohttp_transport`,
  `live_connections` (server-side open connections) and `backoff_waits` (the logged waits).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import attrs
import pytest
import yarl
from aiohttp import web
from postgres_server import PostgresServer, postgres_bin
from redis_server import RedisServer, redis_available

from finalpos_async import (
    AiohttpTransport,
    AsyncFinalPOS,
    FailureKind,
    MockTransport,
    Request,
    TransportError,
    TransportResponse,
)
from finalpos_async.sandbox import Sandbox

E2E_DIR = Path(__file__).parent / "e2e"


@pytest.hookimpl(tryfirst=True)  # before `-m "not e2e"` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under `tests/e2e/` as `e2e`: the folder is the marker."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def python_handles_ctrl_c(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts with Python's own SIGINT handler; one that leaves another is named.

    The Ctrl-C tests send SIGINT to this process and expect `KeyboardInterrupt`: a handler left
    behind by an earlier test in the same worker (an event loop's `add_signal_handler` never
    removed) would swallow it, and that test would hang until its timeout.
    """
    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    left = signal.getsignal(signal.SIGINT)
    if main and left is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        warnings.warn(f"{request.node.nodeid} left SIGINT handled by {left!r}", stacklevel=1)


@attrs.frozen
class Step:
    """One scripted answer.

    - `status`/`body`/`headers`: the response to send (`body` dict/list is sent as JSON, str as
      text with `content_type`);
    - `reset=True`: drop the connection before any response byte;
    - `hang=True`: never answer (until the test ends), to trip the read timeout.
    """

    status: int = 200
    body: Any = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict)
    content_type: str = "application/json"
    reset: bool = False
    hang: bool = False


def ok(body: Any = None) -> Step:
    """A 200 with a JSON body."""
    return Step(200, {"ok": True} if body is None else body)


def status(code: int, body: Any = None, **headers: str) -> Step:
    """An error status with the API's `{statusCode, message, error}` body (or `body`)."""
    if body is None:
        body = {"statusCode": code, "message": f"scripted {code}", "error": "Scripted"}
    return Step(code, body, {k.replace("_", "-"): v for k, v in headers.items()})


RESET = Step(reset=True)
HANG = Step(hang=True)


@attrs.define
class Seen:
    """What the server (or the mock transport) received for one attempt."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@attrs.define
class Script:
    """A script of `Step`s, one per attempt (the last step repeats once the script runs out)."""

    url: str = ""
    script: list[Step] = attrs.field(factory=list)
    seen: list[Seen] = attrs.field(factory=list)
    release: asyncio.Event = attrs.field(factory=asyncio.Event)

    def play(self, *steps: Step) -> None:
        """Replace the script and forget what was seen."""
        self.script = list(steps)
        self.seen.clear()

    @property
    def attempts(self) -> int:
        """Attempts received."""
        return len(self.seen)

    def next_step(self, seen: Seen) -> Step:
        """Record `seen` and return the step that answers it."""
        self.seen.append(seen)
        index = min(len(self.seen), len(self.script)) - 1
        return self.script[index] if self.script else ok()

    def settings(self, **kwargs: Any) -> dict[str, Any]:
        """Client settings for this script with fast backoff (kwargs override any of them)."""
        settings: dict[str, Any] = {
            "api_key": "sk_test_scripted",
            "base_url": self.url,
            "backoff_base": 0.001,
            "backoff_cap": 0.005,
        }
        settings.update(kwargs)
        return settings


@attrs.define
class ScriptedTransport(Script):
    """Plays the script through `MockTransport`: no socket, the SDK's documented seam.

    `reset` raises `TransportError(DISCONNECTED)` (a connection lost after sending); `hang`
    waits on `release`, so the attempt fails as a read timeout (or on the deadline).
    """

    url: str = "https://scripted.invalid"
    transports: list[MockTransport] = attrs.field(factory=list)

    def client(self, **kwargs: Any) -> AsyncFinalPOS:
        """A client whose transport plays this script (override any setting with kwargs)."""
        transport = MockTransport(self.handle)
        self.transports.append(transport)
        kwargs.setdefault("transport", transport)
        return AsyncFinalPOS(**self.settings(**kwargs))

    async def handle(self, request: Request) -> TransportResponse:
        url = yarl.URL(request.url, encoded=True)
        if request.query:
            url = url.extend_query(request.query)
        body = request.content or b""
        step = self.next_step(Seen(request.method, url.raw_path_qs, request.headers, body))
        if step.reset:
            raise TransportError(FailureKind.DISCONNECTED, "scripted connection reset")
        if step.hang:
            await self.release.wait()
            raise TransportError(FailureKind.DISCONNECTED, "released at the end of the test")
        headers = {"Content-Type": step.content_type, **step.headers}
        if isinstance(step.body, (dict, list)):
            return TransportResponse(step.status, headers=headers, json=step.body)
        return TransportResponse(step.status, headers=headers, content=str(step.body).encode())


@attrs.define
class ScriptedServer(Script):
    """Plays the script from a real HTTP server on 127.0.0.1 (`url` is its base URL)."""

    # Every connection a request arrived on (server side).
    connections: set[asyncio.BaseTransport] = attrs.field(factory=set)

    def client(self, **kwargs: Any) -> AsyncFinalPOS:
        """A client for this server with fast backoff (override any setting with kwargs)."""
        return AsyncFinalPOS(**self.settings(**kwargs))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.transport is not None:
            self.connections.add(request.transport)
        step = self.next_step(Seen(request.method, request.path_qs, dict(request.headers), body))
        if step.reset:
            assert request.transport is not None
            request.transport.abort()
            # The connection is gone; this response is never written.
            return web.Response(status=599)
        if step.hang:
            await self.release.wait()
            return web.Response(status=599)
        if isinstance(step.body, (dict, list)):
            return web.json_response(step.body, status=step.status, headers=step.headers)
        return web.Response(
            status=step.status,
            text=str(step.body),
            content_type=step.content_type,
            headers=step.headers,
        )


@contextlib.asynccontextmanager
async def serve_locally(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    route: str,
    release: asyncio.Event,
    *,
    shutdown_timeout: float,
) -> AsyncIterator[str]:
    """Serve `handler` for any method on `route` on 127.0.0.1 (free port); yields the base URL.

    On exit `release` is set first, so handlers hanging on it let go before the server stops.
    """
    app = web.Application()
    app.router.add_route("*", route, handler)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        release.set()
        await runner.cleanup()


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedTransport]:
    """A script played through `MockTransport` (no socket); hanging attempts let go at the end."""
    script = ScriptedTransport()
    try:
        yield script
    finally:
        script.release.set()


@pytest.fixture
async def scripted_server() -> AsyncIterator[ScriptedServer]:
    """A real HTTP server on 127.0.0.1 (free port) playing a script; stops by itself."""
    server = ScriptedServer()
    async with serve_locally(
        server.handle, "/{tail:.*}", server.release, shutdown_timeout=1.0
    ) as url:
        server.url = url
        yield server


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """An in-memory sandbox server in a thread (127.0.0.1, a free port), stopped after the test:
    what the CLI's tests run `finalpos` against (see tests/cli/cli_run.py)."""
    with Sandbox().run_in_thread() as sb:
        yield sb


@pytest.fixture
async def http(finalpos_sandbox: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    """Raw HTTP to the `finalpos_sandbox` plugin fixture, with its API key on every request."""
    async with aiohttp.ClientSession(
        finalpos_sandbox.url, headers={"x-api-key": finalpos_sandbox.api_key}
    ) as session:
        yield session


def open_fds() -> int:
    """File descriptors this process holds right now (0 where there is no /proc)."""
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


async def settle_fds(target: int, *, timeout: float = 5.0) -> int:
    """Poll (never a fixed sleep) until the fd count drops to `target`, or time runs out."""
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout
    count = open_fds()
    while count > target and loop.time() < until:
        await asyncio.sleep(0.01)
        count = open_fds()
    return count


async def all_customers(client: AsyncFinalPOS) -> list[dict[str, Any]]:
    """Every customer on the server, read page by page through the raw escape hatch."""
    found: list[dict[str, Any]] = []
    while True:
        page = await client.request(
            "GET", "/v1/api/customers", params={"skip": len(found), "limit": 1000}
        )
        found.extend(page)
        if len(page) < 1000:
            return found


def aiohttp_transport(client: AsyncFinalPOS) -> AiohttpTransport:
    """The client's default transport (tests read its public `session`, `in_flight`...)."""
    transport = client.transport
    assert isinstance(transport, AiohttpTransport)
    return transport


def checked_out(client: AsyncFinalPOS) -> int:
    """Attempts still waiting for or holding a pooled connection (0: every one was released)."""
    return aiohttp_transport(client).in_flight


def live_connections(connections: set[asyncio.BaseTransport]) -> int:
    """How many of these server-side connections are still open (the client has not closed)."""
    return sum(not transport.is_closing() for transport in connections)


async def settle_connections(
    connections: set[asyncio.BaseTransport], target: int, *, timeout: float = 5.0
) -> int:
    """Poll (never a fixed sleep) until at most `target` connections are open, or time runs out."""
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout
    count = live_connections(connections)
    while count > target and loop.time() < until:
        await asyncio.sleep(0.01)
        count = live_connections(connections)
    return count


class _WaitRecorder(logging.Handler):
    def __init__(self, waits: list[float], on_wait: Callable[[float], None] | None) -> None:
        super().__init__(logging.DEBUG)
        self.waits = waits
        self.on_wait = on_wait

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("retrying ") and isinstance(record.args, tuple):
            delay = record.args[2]
            assert isinstance(delay, float)
            self.waits.append(delay)
            if self.on_wait is not None:
                self.on_wait(delay)


@contextlib.contextmanager
def backoff_waits(on_wait: Callable[[float], None] | None = None) -> Iterator[list[float]]:
    """The backoff waits the client decides on, in order, from its debug log ("retrying ... in
    N s"); `on_wait(delay)` is called as each is logged, just before the client sleeps."""
    waits: list[float] = []
    logger = logging.getLogger("finalpos")
    handler = _WaitRecorder(waits, on_wait)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield waits
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def counting_trace() -> tuple[collections.Counter[str], aiohttp.TraceConfig]:
    """A trace config for a client session that counts the requests it sends, per method."""
    sent = collections.Counter[str]()

    async def on_request_start(
        _session: aiohttp.ClientSession,
        _ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        sent[params.method] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    return sent, trace


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start real redis-servers (`redis_servers(password=...)`); all are stopped afterwards.

    Without the `redis-server` binary the test fails under `CI=true` (.ci/run installs it)
    and is skipped elsewhere.
    """
    if not redis_available():
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    started: list[RedisServer] = []

    def start(*, password: str | None = None) -> RedisServer:
        directory = tmp_path / f"redis{len(started)}"
        directory.mkdir()
        server = RedisServer(directory, password=password)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def _missing(reason: str) -> None:
    """A test needing what is missing: fails under `CI=true` (.ci/run installs it), else skips."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster (initdb + pg_ctl from the Debian package) on a free port,
    started once per test process and stopped at its end, or when the session fails.

    Without the binaries or psycopg the test fails under `CI=true` and is skipped elsewhere.
    """
    bin_dir = postgres_bin()
    if bin_dir is None:
        _missing("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401 - only whether the `postgres` extra is installed
    except ImportError:
        _missing("psycopg is not installed (pip install 'finalpos[postgres]')")
    assert bin_dir is not None
    server = PostgresServer(bin_dir)
    try:  # stopped (pg_ctl stop -m immediate) even when start() fails halfway or a test crashes
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresServer) -> str:
    """A URL (with its password) of the private cluster whose tables go to a new schema."""
    return postgres_cluster.url(postgres_cluster.schema())
