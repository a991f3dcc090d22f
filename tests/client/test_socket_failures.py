"""How real sockets fail, through the default aiohttp transport, against 127.0.0.1.

The socket is what is under test here, so these keep a real server (`scripted_server`): a
connection the server resets before answering, a server that never answers (read timeout,
deadline), a port nobody listens on, a TLS handshake with a plain-HTTP server, the pool's wait
and limit, and that every attempt gives its pooled connection back. Which failures the client
retries once the transport has classified them is `test_retries.py`'s, through `MockTransport`.
Run with `-s` to see the scenario table.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web
from conftest import (
    HANG,
    RESET,
    ScriptedServer,
    Step,
    checked_out,
    ok,
    serve_locally,
    status,
)

from finalpos_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncFinalPOS,
    InternalServerError,
    RateLimitError,
)
from finalpos_async._types import RequestOptions

STRICT = RequestOptions(idempotency_key="k-1", retry_unsafe=False)


def report(name: str, server_attempts: int, elapsed: float, outcome: str) -> None:
    """One row of the scenario table (visible with `pytest -s`)."""
    print(
        f"\nSCENARIO | {name} | server attempts={server_attempts} | "
        f"elapsed={elapsed * 1000:.1f} ms | {outcome}"
    )


def open_connections(client: AsyncFinalPOS) -> int:
    return checked_out(client)


def keys_seen(server: ScriptedServer) -> set[str | None]:
    return {seen.headers.get("Idempotency-Key") for seen in server.seen}


async def test_connection_reset_before_response_is_retried_for_get(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.play(RESET, RESET, ok())
    async with scripted_server.client() as client:
        started = time.perf_counter()
        raw = await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        assert raw.attempts == 3
        assert scripted_server.attempts == 3
        assert checked_out(client) == 0
    report("GET reset,reset,200", scripted_server.attempts, elapsed, "200 after 3 attempts")


async def test_connection_reset_on_post_is_not_retried_by_default(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.play(RESET, ok())
    async with scripted_server.client() as client:
        started = time.perf_counter()
        with pytest.raises(APIConnectionError) as info:
            await client.send("POST", "/v1/api/customer", json={"name": "Ada"})
        elapsed = time.perf_counter() - started
        assert not isinstance(info.value, APITimeoutError)
        assert scripted_server.attempts == 1
        assert info.value.attempts == 1
        assert info.value.idempotency_key == scripted_server.seen[0].headers["Idempotency-Key"]
        assert checked_out(client) == 0
    report("POST reset", scripted_server.attempts, elapsed, "APIConnectionError, no retry")


async def test_post_with_caller_key_is_retried_after_reset(scripted_server: ScriptedServer) -> None:
    scripted_server.play(RESET, ok())
    async with scripted_server.client() as client:
        started = time.perf_counter()
        result = await client.request(
            "POST", "/v1/api/customer", json={"name": "Ada"}, idempotency_key="order-42"
        )
        elapsed = time.perf_counter() - started
        assert result == {"ok": True}
        assert scripted_server.attempts == 2
        assert keys_seen(scripted_server) == {"order-42"}
        assert checked_out(client) == 0
    report(
        "POST reset,200 with idempotency_key",
        scripted_server.attempts,
        elapsed,
        "200; key 'order-42' on both",
    )


async def test_response_slower_than_read_timeout_is_retried_for_get(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.play(HANG, ok())
    async with scripted_server.client(timeout=0.2) as client:
        started = time.perf_counter()
        raw = await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        assert raw.attempts == 2
        assert scripted_server.attempts == 2
        assert 0.2 <= elapsed < 2.0
        assert checked_out(client) == 0
    report("GET hang (read timeout 0.2 s), 200", scripted_server.attempts, elapsed, "200")


async def test_post_read_timeout_is_not_retried(scripted_server: ScriptedServer) -> None:
    scripted_server.play(HANG, ok())
    async with scripted_server.client(timeout=0.2) as client:
        started = time.perf_counter()
        with pytest.raises(APITimeoutError) as info:
            await client.send("POST", "/v1/api/customer", json={})
        elapsed = time.perf_counter() - started
        assert info.value.kind == "read"
        assert info.value.attempts == 1
        assert scripted_server.attempts == 1
        assert checked_out(client) == 0
    report(
        "POST hang (read timeout 0.2 s)",
        scripted_server.attempts,
        elapsed,
        "APITimeoutError(read), no retry",
    )


async def test_deadline_cuts_a_hanging_attempt(scripted_server: ScriptedServer) -> None:
    scripted_server.play(HANG)
    async with scripted_server.client(timeout=10.0, deadline=0.3) as client:
        started = time.perf_counter()
        with pytest.raises(APITimeoutError) as info:
            await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        assert info.value.kind == "deadline"
        assert info.value.attempts == 1
        assert 0.3 <= elapsed < 1.0
        assert checked_out(client) == 0
    report(
        "GET hang, read timeout 10 s, deadline 0.3 s",
        scripted_server.attempts,
        elapsed,
        "APITimeoutError(deadline) after 1 attempt",
    )


async def test_connection_refused_is_retried_even_for_post() -> None:
    # Bind then close a socket to get a port nobody listens on.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    key = "sk_live_SECRET_do_not_leak_1234"
    client = AsyncFinalPOS(
        key, base_url=f"http://127.0.0.1:{port}", backoff_base=0.001, backoff_cap=0.002
    )
    async with client:
        started = time.perf_counter()
        with pytest.raises(APIConnectionError) as info:
            await client.send("POST", "/v1/api/customer", json={})
        elapsed = time.perf_counter() - started
        assert info.value.attempts == 4  # never reached the server: safe to retry a POST
        assert info.value.idempotency_key is not None
        # In every mode, `retry_unsafe=False` included, and it did not take effect.
        with pytest.raises(APIConnectionError) as strict:
            await client.send("POST", "/v1/api/customer", json={}, options=STRICT)
        assert strict.value.attempts == 4
        assert strict.value.maybe_processed is False
        with pytest.raises(APIConnectionError) as get:
            await client.request("GET", "/v1/api/customers")
        assert get.value.attempts == 4
        print(str(get.value))
        assert "Connect" in str(get.value)
        assert isinstance(get.value.__cause__, Exception)
        assert key not in str(get.value)
        assert checked_out(client) == 0
    report("POST to a closed port", 0, elapsed, "APIConnectionError after 4 attempts")


async def test_tls_errors_are_not_retried() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({})

    release = asyncio.Event()
    async with serve_locally(handler, "/{tail:.*}", release, shutdown_timeout=1.0) as url:
        # https to a plain-HTTP server: the TLS handshake fails, which is never transient.
        client = AsyncFinalPOS("sk_test", base_url=url.replace("http:", "https:"))
        async with client:
            with pytest.raises(APIConnectionError) as info:
                await client.request("GET", "/v1/api/customers")
    assert info.value.attempts == 1
    assert "SSL" in str(info.value)
    assert seen == []


async def test_pool_wait_timeout_is_its_own_error(scripted_server: ScriptedServer) -> None:
    scripted_server.play(HANG)
    client = scripted_server.client(pool_limit=1, pool_timeout=0.1, max_retries=0)
    async with client:
        hanging = asyncio.create_task(client.send("GET", "/v1/api/slow"))
        # Wait until the first request holds the only connection.
        for _ in range(200):
            if scripted_server.attempts:
                break
            await asyncio.sleep(0.005)
        started = time.perf_counter()
        with pytest.raises(APITimeoutError) as info:
            await client.send("POST", "/v1/api/customer", json={})
        elapsed = time.perf_counter() - started
        assert info.value.kind == "pool"
        assert "free connection" in str(info.value)
        assert scripted_server.attempts == 1  # the second request never reached the server
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        assert checked_out(client) == 0
    report(
        "POST while the 1-slot pool is busy (pool timeout 0.1 s)",
        scripted_server.attempts,
        elapsed,
        "APITimeoutError(pool)",
    )


async def test_many_concurrent_calls_share_the_pool(scripted_server: ScriptedServer) -> None:
    scripted_server.play(ok())
    async with scripted_server.client(pool_limit=4) as client:
        results: list[Any] = await asyncio.gather(
            *(client.request("GET", f"/v1/api/customer/{i}") for i in range(40))
        )
        assert results == [{"ok": True}] * 40
        assert scripted_server.attempts == 40
        assert checked_out(client) == 0
        # The server saw at most 4 connections: the pool's limit held for all 40 calls.
        assert 1 <= len(scripted_server.connections) <= 4


async def test_retried_statuses_give_every_connection_back(scripted_server: ScriptedServer) -> None:
    # The status scenarios of test_retries.py, on real sockets: no attempt keeps its connection.
    async with scripted_server.client() as client:
        scripted_server.play(status(503), status(503), ok({"id": "c1"}))
        assert (await client.send("GET", "/v1/api/customer/c1")).attempts == 3
        scripted_server.play(status(429, Retry_After="0"), ok())
        assert (await client.send("POST", "/v1/api/customer", json={})).attempts == 2
        scripted_server.play(status(500), ok())
        with pytest.raises(InternalServerError):
            await client.send("POST", "/v1/api/customer", json={})
        scripted_server.play(Step(502, "<html>bad gateway</html>", content_type="text/html"))
        with pytest.raises(InternalServerError):
            await client.request("GET", "/v1/api/customers", max_retries=1)
        scripted_server.play(status(429, Retry_After="3600"))
        with pytest.raises(RateLimitError):
            await client.send("GET", "/v1/api/customers")
        assert checked_out(client) == 0


async def test_cancellation_propagates_and_releases() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await release.wait()
        return web.json_response({})

    async with serve_locally(slow, "/{tail:.*}", release, shutdown_timeout=1.0) as url:
        client = AsyncFinalPOS("sk_test", base_url=url)
        async with client:
            task = asyncio.create_task(client.request("GET", "/v1/api/customers"))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert checked_out(client) == 0
