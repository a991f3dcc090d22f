"""The sandbox under 500 concurrent connections: it keeps answering and closes cleanly.

1. 500 requests held open at once (a scripted `delay` step), so 500 connections are really
   concurrent, not queued in the client's pool;
2. for a bounded time, 500 workers hammer it (reads and writes) through a rate limit: every
   request gets an answer, 2xx or 429 with `Retry-After`; never a crash, a reset, a 5xx or a
   request left hanging;
3. the client and the sandbox close within a bound, leaving no socket and no task behind.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
from typing import Any

import aiohttp
import pytest
from conftest import checked_out, open_fds, settle_fds

from finalpos_async import AsyncFinalPOS, FinalPOSError
from finalpos_async._exceptions import RateLimitError
from finalpos_async.sandbox import Sandbox

CONNECTIONS = 500
HAMMER_SECONDS = float(os.environ.get("FINALPOS_LOAD_SECONDS", "2.5"))
# Generous: two shared cores serve both ends here. A hung request would take the full deadline.
ANSWER_WITHIN = 8.0


def non_server_tasks() -> set[asyncio.Task[Any]]:
    """Tasks other than the test itself."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_500_concurrent_connections_keep_getting_answers_and_close_cleanly() -> None:
    gc.collect()
    fds_before = open_fds()
    tasks_before = non_server_tasks()
    loop = asyncio.get_running_loop()

    sandbox = Sandbox(faults="rate-limit=400,burst=200,retry-after=0.05")
    await sandbox.start()
    client = AsyncFinalPOS(
        sandbox.api_key,
        base_url=sandbox.url,
        pool_limit=CONNECTIONS,
        pool_limit_per_host=CONNECTIONS,
        max_retries=0,  # every 429 surfaces, so it can be counted
        timeout=ANSWER_WITHIN,
        deadline=ANSWER_WITHIN,
        connect_timeout=ANSWER_WITHIN,
        pool_timeout=ANSWER_WITHIN,
    )
    try:
        # 1. 500 connections open at once: each request is held 0.5 s by the sandbox.
        peak = 0
        held = [
            client.request(
                "GET",
                "/v1/api/customers",
                params={"limit": 1},
                extra_headers={"x-sandbox-fault": "delay:0.5"},
            )
            for _ in range(CONNECTIONS)
        ]
        gathered = asyncio.gather(*held)
        while not gathered.done():
            peak = max(peak, checked_out(client))
            await asyncio.sleep(0.005)
        pages = await gathered
        assert len(pages) == CONNECTIONS
        assert peak == CONNECTIONS, f"only {peak} connections were in flight at once"

        # 2. Hammer through the rate limit for a bounded time.
        outcomes: collections.Counter[str] = collections.Counter()
        slowest = 0.0
        stop_at = loop.time() + HAMMER_SECONDS

        async def worker(n: int) -> None:
            nonlocal slowest
            i = 0
            while loop.time() < stop_at:
                i += 1
                started = loop.time()
                try:
                    if i % 4 == 0:
                        await client.customers.create(
                            email=f"w{n}.{i}@example.com", first_name="W", last_name=str(n)
                        )
                    else:
                        await client.request("GET", "/v1/api/customers", params={"limit": 2})
                    outcomes["ok"] += 1
                except RateLimitError as exc:
                    # Rate limiting says when to come back.
                    outcomes["429" if (exc.retry_after or 0) > 0 else "429 without wait"] += 1
                except FinalPOSError as exc:
                    outcomes[type(exc).__name__] += 1
                slowest = max(slowest, loop.time() - started)

        await asyncio.wait_for(
            asyncio.gather(*(worker(n) for n in range(CONNECTIONS))),
            timeout=HAMMER_SECONDS + 2 * ANSWER_WITHIN,
        )
        # Only successes and rate limiting: no reset, no 5xx, no timeout.
        assert set(outcomes) <= {"ok", "429"}, outcomes
        assert outcomes["ok"] > 0
        assert outcomes["429"] > 0, "the rate limit never answered 429 under this load"
        assert slowest < ANSWER_WITHIN
        assert checked_out(client) == 0
        # Still healthy once the storm is over.
        assert isinstance(await client.request("GET", "/v1/api/customers"), (dict, list))
        print(f"\nLOAD | {CONNECTIONS} connections | {HAMMER_SECONDS} s | {dict(outcomes)} "
              f"| slowest {slowest * 1000:.0f} ms")  # fmt: skip
    finally:
        # 3. Both ends close within a bound.
        closing = loop.time()
        await asyncio.wait_for(client.close(), timeout=10)
        await asyncio.wait_for(sandbox.close(), timeout=10)
        close_seconds = loop.time() - closing
    assert close_seconds < 5.0
    gc.collect()
    if fds_before:
        assert await settle_fds(fds_before) == fds_before
    assert non_server_tasks() - tasks_before == set()


@pytest.mark.parametrize("in_flight", [50])
async def test_closing_the_sandbox_mid_request_answers_or_fails_every_call(in_flight: int) -> None:
    # Requests in flight when the sandbox shuts down end (answer or typed error), never hang.
    sandbox = Sandbox()
    await sandbox.start()
    sent = 0

    async def on_headers_sent(_session: object, _ctx: object, _params: object) -> None:
        nonlocal sent
        sent += 1

    # aiohttp's public tracing, on a session of our own: a request whose headers went out
    # holds a connection.
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_headers_sent)
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        AsyncFinalPOS(
            sandbox.api_key,
            base_url=sandbox.url,
            max_retries=0,
            timeout=5.0,
            deadline=5.0,
            session=session,
        ) as client,
    ):
        calls = [
            asyncio.create_task(
                client.request(
                    "GET", "/v1/api/customers", extra_headers={"x-sandbox-fault": "delay:0.3"}
                )
            )
            for _ in range(in_flight)
        ]
        # Wait (polling, with a deadline) until every call holds a connection.
        loop = asyncio.get_running_loop()
        until = loop.time() + 5.0
        while sent < in_flight and loop.time() < until:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        assert sent == in_flight
        await asyncio.wait_for(sandbox.close(), timeout=10)
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=10)
    assert len(results) == in_flight
    for result in results:
        assert isinstance(result, (dict, list, FinalPOSError)), repr(result)
