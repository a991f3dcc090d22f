"""The whole request path against a real server on 127.0.0.1 playing scripted sequences.

Each scenario checks the attempts the server saw, the idempotency key (one per logical call,
reused on every attempt), that the deadline holds, and that no connection is left checked out.
Backoff is made fast by configuration (`backoff_base`/`backoff_cap` in milliseconds); the
waits decided are read from the client's debug log. Run with `-s` to see the scenario table.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from conftest import (
    HANG,
    RESET,
    ScriptedServer,
    Step,
    backoff_waits,
    checked_out,
    ok,
    status,
)

from finalpos_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncFinalPOS,
    InternalServerError,
    RateLimitError,
)


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


async def test_get_retries_through_two_503s(scripted_server: ScriptedServer) -> None:
    scripted_server.play(status(503), status(503), ok({"id": "c1"}))
    async with scripted_server.client() as client:
        started = time.perf_counter()
        raw = await client.send("GET", "/v1/api/customer/c1")
        elapsed = time.perf_counter() - started
        assert raw.json() == {"id": "c1"}
        assert raw.attempts == 3
        assert scripted_server.attempts == 3
        assert keys_seen(scripted_server) == {None}  # GET needs no key
        assert checked_out(client) == 0
    report("GET 503,503,200", scripted_server.attempts, elapsed, "200 after 3 attempts")


async def test_post_reuses_one_idempotency_key_across_503_retry_after(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.play(status(503, Retry_After="0"), status(503, Retry_After="0"), ok())
    async with scripted_server.client() as client:
        started = time.perf_counter()
        raw = await client.send("POST", "/v1/api/customer", json={"name": "Ada"})
        elapsed = time.perf_counter() - started
        assert scripted_server.attempts == 3
        keys = keys_seen(scripted_server)
        assert len(keys) == 1
        assert raw.idempotency_key in keys
        assert raw.idempotency_key is not None
        assert all(seen.body == b'{"name":"Ada"}' for seen in scripted_server.seen)
        assert checked_out(client) == 0
    report(
        "POST 503+Retry-After:0 x2, 200",
        scripted_server.attempts,
        elapsed,
        "200; one Idempotency-Key on all 3",
    )


async def test_post_503_without_retry_after_is_not_retried(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.play(status(503), ok())
    async with scripted_server.client() as client:
        with pytest.raises(InternalServerError) as info:
            await client.send("POST", "/v1/api/customer", json={})
        assert scripted_server.attempts == 1
        assert info.value.attempts == 1
        assert checked_out(client) == 0


async def test_429_retry_after_one_second_is_honoured(scripted_server: ScriptedServer) -> None:
    scripted_server.play(status(429, Retry_After="1"), ok())
    async with scripted_server.client() as client:
        started = time.perf_counter()
        with backoff_waits() as waits:
            raw = await client.send("POST", "/v1/api/customer", json={"name": "Ada"})
        elapsed = time.perf_counter() - started
        assert raw.attempts == 2
        assert scripted_server.attempts == 2
        # The wait asked for, exactly, without jitter (and slept: 1 s).
        assert waits == [1.0]
        assert elapsed >= 1.0
        assert len(keys_seen(scripted_server)) == 1
        assert checked_out(client) == 0
    report(
        "POST 429 Retry-After:1, 200",
        scripted_server.attempts,
        elapsed,
        f"200; waited {waits} s",
    )


async def test_retry_after_ms_is_slept_for_real(scripted_server: ScriptedServer) -> None:
    scripted_server.play(status(429, retry_after_ms="150"), ok())
    async with scripted_server.client() as client:
        started = time.perf_counter()
        raw = await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        assert raw.attempts == 2
        assert scripted_server.attempts == 2
        assert elapsed >= 0.15
        assert raw.elapsed >= 0.15
        assert checked_out(client) == 0
    report("GET 429 retry-after-ms:150, 200", scripted_server.attempts, elapsed, "200")


async def test_retry_after_beyond_cap_raises_at_once(scripted_server: ScriptedServer) -> None:
    scripted_server.play(status(429, Retry_After="3600"), ok())
    async with scripted_server.client() as client:
        started = time.perf_counter()
        with pytest.raises(RateLimitError) as info:
            await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        assert info.value.retry_after == 3600.0
        assert scripted_server.attempts == 1
        assert elapsed < 1.0
        assert checked_out(client) == 0
    report(
        "GET 429 Retry-After:3600 (cap 60)",
        scripted_server.attempts,
        elapsed,
        "RateLimitError(retry_after=3600) at once",
    )


async def test_retry_after_past_the_deadline_is_not_slept(scripted_server: ScriptedServer) -> None:
    scripted_server.play(status(429, Retry_After="1"), ok())
    async with scripted_server.client(deadline=0.5) as client:
        started = time.perf_counter()
        with pytest.raises(APITimeoutError) as info:
            await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        assert info.value.kind == "deadline"
        assert info.value.attempts == 1
        assert "1 attempt" in str(info.value)
        assert isinstance(info.value.last_error, RateLimitError)
        assert scripted_server.attempts == 1
        assert elapsed < 0.5
        assert checked_out(client) == 0
    report(
        "GET 429 Retry-After:1, deadline 0.5 s",
        scripted_server.attempts,
        elapsed,
        "APITimeoutError(deadline) without sleeping",
    )


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


async def test_deadline_stops_backoff_and_says_how_many_attempts(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.play(status(503))
    client = scripted_server.client(
        # Enough retries that the deadline, never the retry count, ends the call.
        max_retries=50,
        backoff_base=0.1,
        backoff_cap=0.1,
        deadline=0.35,
    )
    async with client:
        started = time.perf_counter()
        with pytest.raises(APITimeoutError) as info:
            await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        assert info.value.kind == "deadline"
        assert info.value.attempts == scripted_server.attempts
        assert f"{scripted_server.attempts} attempts" in str(info.value)
        assert elapsed < 0.35 + 0.1  # no sleep crossed the deadline
        assert isinstance(info.value.last_error, InternalServerError)
        assert checked_out(client) == 0
    report(
        "GET 503 forever, backoff<=0.1 s, deadline 0.35 s",
        scripted_server.attempts,
        elapsed,
        f"APITimeoutError(deadline) after {info.value.attempts} attempts",
    )


async def test_html_502_gives_a_readable_typed_error(scripted_server: ScriptedServer) -> None:
    page = (
        "<html><head><title>502 Bad Gateway</title></head>"
        "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
    )
    scripted_server.play(Step(502, page, content_type="text/html"))
    async with scripted_server.client(max_retries=2) as client:
        started = time.perf_counter()
        with pytest.raises(InternalServerError) as info:
            await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        error = info.value
        assert error.status_code == 502
        assert error.message == "502 Bad Gateway"
        assert error.body is None
        assert "nginx" in error.text
        assert error.attempts == 3
        assert scripted_server.attempts == 3
        assert str(error).startswith("HTTP 502 Bad Gateway: 502 Bad Gateway")
        assert checked_out(client) == 0
    report("GET HTML 502 x3 (max_retries=2)", scripted_server.attempts, elapsed, str(error))


async def test_post_answered_500_is_not_retried(scripted_server: ScriptedServer) -> None:
    scripted_server.play(status(500), ok())
    async with scripted_server.client() as client:
        started = time.perf_counter()
        with pytest.raises(InternalServerError) as info:
            await client.send("POST", "/v1/api/customer", json={"name": "Ada"})
        elapsed = time.perf_counter() - started
        assert scripted_server.attempts == 1
        assert info.value.attempts == 1
        sent_key = scripted_server.seen[0].headers["Idempotency-Key"]
        assert info.value.idempotency_key == sent_key
        assert info.value.message == "scripted 500"
        assert checked_out(client) == 0
    report("POST 500", scripted_server.attempts, elapsed, "InternalServerError, no retry")


async def test_post_500_is_retried_with_retry_unsafe(scripted_server: ScriptedServer) -> None:
    scripted_server.play(status(500), ok())
    async with scripted_server.client() as client:
        result = await client.request("POST", "/v1/api/customer", json={}, retry_unsafe=True)
        assert result == {"ok": True}
        assert scripted_server.attempts == 2
        assert len(keys_seen(scripted_server)) == 1
        assert checked_out(client) == 0


async def test_connection_refused_is_retried_even_for_post() -> None:
    # Bind then close a socket to get a port nobody listens on.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = AsyncFinalPOS(
        "sk_test", base_url=f"http://127.0.0.1:{port}", backoff_base=0.001, backoff_cap=0.002
    )
    async with client:
        started = time.perf_counter()
        with pytest.raises(APIConnectionError) as info:
            await client.send("POST", "/v1/api/customer", json={})
        elapsed = time.perf_counter() - started
        assert info.value.attempts == 4  # never reached the server: safe to retry a POST
        assert info.value.idempotency_key is not None
        assert checked_out(client) == 0
    report("POST to a closed port", 0, elapsed, "APIConnectionError after 4 attempts")


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
