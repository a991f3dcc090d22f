"""`Sandbox`: start and stop the local server, in the running loop or in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any

import attrs
from aiohttp import web

from .._constants import (
    SANDBOX_API_KEY,
    SANDBOX_HOST,
    SANDBOX_MAX_BODY_SIZE,
    SANDBOX_SHUTDOWN_TIMEOUT,
    SANDBOX_START_TIMEOUT,
)
from .._method_info import MethodInfo
from ..operations import OPERATIONS
from ..spec import load_spec
from ._accounts import Accounts
from ._app import SandboxState, build_app
from ._faults import FaultConfig, FaultInjector, parse_faults
from ._request_log import RequestLog
from ._routes import RouteTable, build_route_table
from ._storage import Storage, open_storage

__all__ = ["Sandbox"]


@functools.lru_cache(maxsize=4)
def _route_table(spec_path: str | None, operations: tuple[MethodInfo, ...]) -> RouteTable:
    # parsing the spec takes a few milliseconds; fixtures start many sandboxes per run
    return build_route_table(load_spec(spec_path), operations)


def _keys(api_key: str | None, api_keys: Sequence[str] | None) -> tuple[str, ...]:
    """The accepted keys, checked: `api_key` or `api_keys`, else the default key."""
    if api_key is not None and api_keys is not None:
        raise ValueError("give api_key or api_keys, not both (api_keys' first is the api_key)")
    if isinstance(api_keys, str):
        raise ValueError("api_keys must be a list of keys, not a string (or use api_key=)")
    keys: tuple[str, ...] = (api_key,) if api_key is not None else (SANDBOX_API_KEY,)
    if api_keys is not None:
        keys = tuple(api_keys)
    given: tuple[object, ...] = keys  # as given: callers without a type checker pass anything
    for key in given:
        if not isinstance(key, str) or not key.strip():
            raise ValueError("api_key must be a non-empty string")
    if not keys:
        raise ValueError("api_keys must hold at least one key")
    if len(set(keys)) != len(keys):
        raise ValueError("api_keys: a key is given twice; give each key once")
    return keys


def _release(state: SandboxState) -> None:
    """Close what a started sandbox opened: its store and its request log."""
    state.storage.close()
    if state.request_log is not None:
        state.request_log.close()


class Sandbox:
    """A stateful local Final POS API, driven by the package's OpenAPI spec.

    ::

        async with Sandbox() as sb:
            client = AsyncFinalPOS(api_key=sb.api_key, base_url=sb.url)

    Args:
        host: interface to bind; 127.0.0.1 unless you mean to expose it.
        port: TCP port; 0 (the default) picks a free one, see `port` and `url` after start.
        api_key: the key the sandbox accepts (`x-api-key`); default `sk_sandbox_finalpos`.
        api_keys: several keys instead of `api_key` (not both), each an account of its own, as
            tenants of the API are: one key's records are invisible to another, and the rate
            limit of `faults` applies to each key on its own. `api_key` is the first.
        db: a SQLite file to keep the data in (a restart on the same file loses nothing);
            None keeps everything in memory.
        faults: a `FaultConfig` or its command-line text (``"rate=0.1,kinds=503+reset"``);
            None injects nothing (scripted faults through `x-sandbox-fault` always work).
        seed: seed of the fault-rate generator (overrides the one in `faults`).
        spec: path of another OpenAPI document to serve (default: the package's copy).
        operations: the operation table that says what each operation of the spec does and
            which store its records live in (default: `finalpos_async.operations.OPERATIONS`);
            an operation of the spec with no row answers 501.
        max_body_size: request bodies above this many bytes answer 413.
        access_log: log one line per request to the `aiohttp.access` logger (never headers).
        honour_idempotency: False ignores `Idempotency-Key` (every POST is processed as new: no
            replay, no 409 for a reused key), to prove a client never duplicates records even
            against a server that does not honour the header.
        request_log: a file to append one JSON line per request to (time, key fingerprint,
            method, path, status; see `finalpos_async.sandbox._request_log`), for tests that
            watch the sandbox from outside its process.
    """

    def __init__(
        self,
        *,
        host: str = SANDBOX_HOST,
        port: int = 0,
        api_key: str | None = None,
        api_keys: Sequence[str] | None = None,
        db: str | os.PathLike[str] | None = None,
        faults: FaultConfig | str | None = None,
        seed: int | None = None,
        spec: str | os.PathLike[str] | None = None,
        operations: Sequence[MethodInfo] = OPERATIONS,
        max_body_size: int = SANDBOX_MAX_BODY_SIZE,
        access_log: bool = False,
        honour_idempotency: bool = True,
        request_log: str | os.PathLike[str] | None = None,
    ) -> None:
        keys = _keys(api_key, api_keys)
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {port!r}")
        if isinstance(faults, str):
            faults = parse_faults(faults)
        config = faults or FaultConfig()
        if seed is not None:
            config = attrs.evolve(config, seed=seed)
        self.host = host
        self.api_keys: tuple[str, ...] = keys
        self.api_key: str = keys[0]
        self.db = None if db is None else os.fspath(db)
        self.faults = config
        self.spec = None if spec is None else os.fspath(spec)
        self.operations = tuple(operations)
        self.max_body_size = max_body_size
        self.access_log = access_log
        self.request_log = None if request_log is None else os.fspath(request_log)
        self._honour_idempotency = bool(honour_idempotency)
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._state: SandboxState | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<Sandbox {where} db={self.db!r}>"

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._runner is not None

    @property
    def port(self) -> int:
        """The port the server listens on (the picked one when created with port 0)."""
        if self._port is None:
            raise RuntimeError(
                "the sandbox is not started (or closed): call `await sandbox.start()` first"
            )
        return self._port

    @property
    def url(self) -> str:
        """Base URL to give the client, e.g. ``http://127.0.0.1:8123``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def honours_idempotency(self) -> bool:
        """Whether a repeated `Idempotency-Key` replays its first answer (set when created)."""
        return self._honour_idempotency

    @property
    def storage(self) -> Storage:
        """The record store (for tests that inspect or seed state directly)."""
        if self._state is None:
            raise RuntimeError("the sandbox is not started")
        return self._state.storage

    async def start(self) -> Sandbox:
        """Bind and start serving; returns self. Calling it twice is an error."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already running")
        routes = _route_table(self.spec, self.operations)
        storage = open_storage(self.db)
        state = SandboxState(
            routes=routes,
            storage=storage,
            faults=FaultInjector(self.faults),
            accounts=Accounts(self.api_keys),
            max_body_size=self.max_body_size,
            honour_idempotency=self._honour_idempotency,
            request_log=None if self.request_log is None else RequestLog(self.request_log),
        )
        app = build_app(state)
        runner_kwargs: dict[str, Any] = {} if self.access_log else {"access_log": None}
        runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=SANDBOX_SHUTDOWN_TIMEOUT, **runner_kwargs
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            _release(state)
            raise
        address = runner.addresses[0]
        self._port = int(address[1])
        self._runner = runner
        self._state = state
        return self

    async def close(self) -> None:
        """Stop serving and release the store; safe to call twice."""
        runner, state = self._runner, self._state
        self._runner = None
        self._state = None
        self._port = None
        if runner is not None:
            await runner.cleanup()
        if state is not None:
            _release(state)

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def reset(self) -> None:
        """Forget every record, counter and idempotency key (the server keeps running).

        Safe from any thread: with `run_in_thread`, the clearing runs on the sandbox's own loop.
        """
        storage = self.storage
        loop = self._thread_loop
        if loop is None or threading.current_thread() is self._thread:
            storage.clear()
            return

        async def clear() -> None:
            storage.clear()

        asyncio.run_coroutine_threadsafe(clear(), loop).result(SANDBOX_START_TIMEOUT)

    # ------------------------------------------------------------------ background thread

    @contextlib.contextmanager
    def run_in_thread(
        self, *, timeout: float = SANDBOX_START_TIMEOUT
    ) -> Generator[Sandbox, None, None]:
        """Serve from a private event loop in a daemon thread, for sync code and other processes.

        ::

            with Sandbox().run_in_thread() as sb:
                client = FinalPOS(api_key=sb.api_key, base_url=sb.url)
        """
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # reported to the caller's thread below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.close())
                loop.close()

        thread = threading.Thread(target=serve, name="finalpos-sandbox", daemon=True)
        thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"the sandbox did not start within {timeout} seconds")
        if failure:
            thread.join()
            raise failure[0]
        self._thread_loop = loop
        self._thread = thread
        try:
            yield self
        finally:
            self._thread_loop = None
            self._thread = None
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
