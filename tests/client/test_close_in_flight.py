"""Closing a client with calls in flight: each ends with `ClientClosedError`, never a bare
`CancelledError` (unless its own task was cancelled), with `maybe_processed` telling exactly
whether its request reached the server.

500 calls (GET and POST alternately) run against a server on 127.0.0.1 that holds every request
until the test releases it; the pool (64 connections per host) takes 64 of them to the server
and the other 436 wait for a slot. Then the client is closed: from the same loop for the async
client, from another thread for the sync one.
"""

from __future__ import annotations

import asyncio
import gc
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import open_fds, settle_fds
from held_server import HeldServer, held_server

import finalpos_sync
from finalpos_async import (
    APIConnectionError,
    AsyncFinalPOS,
    ClientClosedError,
    FinalPOSError,
    RateLimiter,
)
from finalpos_async.sandbox import Sandbox

CALLS = 500
POOL = 64  # the default pool_limit_per_host: requests that reach the server at once
DEADLINE = 30.0
CLOSED = "closed while this call was in flight"
README = Path(__file__).resolve().parents[2] / "README.md"


def _method(n: int) -> str:
    return "POST" if n % 2 else "GET"


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll (never a fixed sleep) until `condition()` holds; fail after DEADLINE seconds."""
    done = threading.Event()
    for _ in range(int(DEADLINE / 0.01)):
        if condition():
            return
        done.wait(0.01)
    pytest.fail(f"timed out waiting for {what}")


async def _wait_until_async(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + DEADLINE
    while not condition():
        if loop.time() > until:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _check_closed_errors(outcomes: dict[int, BaseException], server: HeldServer) -> None:
    """Every outcome is a `ClientClosedError` whose `maybe_processed` is whether it was sent."""
    assert len(server.seen) == POOL  # exactly the pool's worth reached the server
    for n, error in outcomes.items():
        assert isinstance(error, ClientClosedError), (n, repr(error))
        assert isinstance(error, APIConnectionError)
        assert isinstance(error, FinalPOSError)
        assert CLOSED in str(error)
        assert error.method == _method(n)
        assert error.url == server.url + "/v1/api/customers"
        # Sent: may have been processed. Waiting for a pool slot: provably not.
        assert error.maybe_processed is (n in server.seen), n
        assert error.attempts == (1 if n in server.seen else 0), n
        if _method(n) == "POST":
            assert error.idempotency_key  # what a caller needs to repeat it safely


async def test_async_close_ends_500_calls_in_flight_with_client_closed_error() -> None:
    with held_server() as server:
        client = AsyncFinalPOS(api_key="sk_test", base_url=server.url)

        async def call(n: int) -> Any:
            return await client.request(_method(n), "/v1/api/customers", params={"n": n})

        tasks = {n: asyncio.create_task(call(n)) for n in range(CALLS)}
        transport = client.transport
        await _wait_until_async(lambda: server.hits == POOL, "the pool's requests to arrive")
        await _wait_until_async(
            lambda: getattr(transport, "in_flight", 0) == CALLS, "every call to be in flight"
        )
        # Tasks cancelled by their owner in the same loop turn as close() (some sent, some
        # waiting): they still end cancelled.
        cancelled = set(range(0, CALLS, 10))
        for n in cancelled:
            tasks[n].cancel()
        await client.close()
        # close() returns once every call has unwound, its connection released.
        assert all(task.done() for task in tasks.values())
        assert getattr(transport, "in_flight", None) == 0
        outcomes: dict[int, BaseException] = {}
        for n, task in tasks.items():
            if n in cancelled:
                assert task.cancelled(), n
                continue
            assert not task.cancelled(), n  # never a bare CancelledError
            error = task.exception()
            assert error is not None, n
            outcomes[n] = error
        assert len(outcomes) == CALLS - len(cancelled)
        _check_closed_errors(outcomes, server)
        assert client.is_closed


async def test_async_close_reports_a_call_waiting_for_a_rate_limit_token_as_not_sent() -> None:
    waiting = asyncio.Event()

    async def wait_forever(seconds: float) -> None:  # the limiter's sleep, never ending
        waiting.set()
        await asyncio.Event().wait()

    limiter = RateLimiter(1.0, burst=1, sleep=wait_forever)
    with held_server(hold=0.0) as server:
        client = AsyncFinalPOS(api_key="sk_test", base_url=server.url, rate_limit=limiter)
        assert await client.request("GET", "/v1/api/customers", params={"n": 0}) == []
        call = asyncio.create_task(
            client.request("POST", "/v1/api/customers", params={"n": 1}, json={})
        )
        await asyncio.wait_for(waiting.wait(), DEADLINE)  # the second call waits for a token
        await client.close()
        assert not call.cancelled()
        error = call.exception()
        assert isinstance(error, ClientClosedError)
        assert CLOSED in str(error)
        assert error.maybe_processed is False
        assert error.attempts == 0
        assert server.seen == {0}


async def test_close_while_the_sandbox_starts_ends_the_call_and_stops_that_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starting, proceed = asyncio.Event(), asyncio.Event()
    start = Sandbox.start

    async def held_start(self: Sandbox) -> None:  # the sandbox starts once the test says so
        starting.set()
        await proceed.wait()
        await start(self)

    monkeypatch.setattr(Sandbox, "start", held_start)
    gc.collect()
    fds = open_fds()
    client = AsyncFinalPOS(sandbox=True)
    call = asyncio.create_task(client.request("GET", "/v1/api/customers"))
    await asyncio.wait_for(starting.wait(), DEADLINE)
    await client.close()  # while the call's sandbox is starting
    proceed.set()
    [error] = await asyncio.wait_for(asyncio.gather(call, return_exceptions=True), DEADLINE)
    assert isinstance(error, ClientClosedError)
    assert error.maybe_processed is False
    assert client.base_url is None  # no sandbox was kept
    assert await settle_fds(fds) <= fds  # and the one started meanwhile was stopped


def test_sync_close_from_another_thread_ends_500_calls_in_flight() -> None:
    with held_server() as server:
        client = finalpos_sync.FinalPOS(api_key="sk_test", base_url=server.url)
        outcomes: dict[int, BaseException] = {}

        def call(n: int) -> None:
            try:
                client.request(_method(n), "/v1/api/customers", params={"n": n})
            except BaseException as exc:  # asserted below
                outcomes[n] = exc

        with ThreadPoolExecutor(max_workers=CALLS) as pool:
            futures = [pool.submit(call, n) for n in range(CALLS)]
            _wait_until(lambda: server.hits == POOL, "the pool's requests to arrive")
            _wait_until(
                lambda: getattr(client.transport, "in_flight", 0) == CALLS,
                "every call to be in flight",
            )
            client.close()  # from this thread, while 500 others wait in their calls
            for future in futures:
                future.result(timeout=DEADLINE)
        assert len(outcomes) == CALLS
        _check_closed_errors(outcomes, server)
        assert client.is_closed


def test_readme_says_what_a_call_in_flight_gets_on_close() -> None:
    text = re.sub(r"\s+", " ", README.read_text())
    for words in (
        "`close()` does not wait for calls in flight: each one ends with `ClientClosedError`",
        "never a bare `CancelledError`",
        "`maybe_processed` is true when its request may have been sent",
        "A task that was itself cancelled still gets `CancelledError`",
    ):
        assert words in text, words
