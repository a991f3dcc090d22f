"""A deadline is never overshot by more than 0.1 s, at any size; `Retry-After` is read as the
protocol writes it (delay-seconds are digits only), through the client against a real server.

aiohttp rounds a timer of 5 s or more up to the next whole second of the loop clock unless told
otherwise, so a 5.05 s deadline used to end anywhere up to a second late. The calls below wait on
a 127.0.0.1 server that never answers; they run side by side, so the test costs one 5 s wait.
Not e2e: the rounding is aiohttp's, so every supported Python and the dependency floors run it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from conftest import HANG, ScriptedServer, ok, status

from finalpos_async import APITimeoutError, AsyncFinalPOS

# The bound, measured from outside the client (task start to exception): it includes
# the loop's own latency, hence deadlines that are not whole seconds.
OVERSHOOT = 0.1


async def _overshoot(client: AsyncFinalPOS, *, deadline: float | None, timeout: float) -> float:
    started = time.perf_counter()
    with pytest.raises(APITimeoutError) as info:
        await client.request(
            "GET", "/v1/api/slow", deadline=deadline, timeout=timeout, max_retries=0
        )
    elapsed = time.perf_counter() - started
    limit = deadline if deadline is not None else timeout
    assert info.value.kind == ("deadline" if deadline is not None else "read")
    return elapsed - limit


async def test_no_deadline_or_read_timeout_is_overshot_by_more_than_a_tenth_of_a_second(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.play(HANG)
    async with scripted_server.client() as client:
        overshoots = await asyncio.gather(
            _overshoot(client, deadline=5.05, timeout=60),  # the call's deadline (total timer)
            _overshoot(client, deadline=0.35, timeout=60),
            _overshoot(client, deadline=None, timeout=5.05),  # the read timeout (socket timer)
        )
    print(f"overshoot (s): deadline 5.05: {overshoots[0]:.3f}, deadline 0.35: "
          f"{overshoots[1]:.3f}, read timeout 5.05: {overshoots[2]:.3f}")  # fmt: skip
    assert all(-0.02 < overshoot < OVERSHOOT for overshoot in overshoots), overshoots


async def test_retry_after_with_an_underscore_is_ignored_not_read_as_ten_seconds(
    scripted_server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="finalpos")
    # int("1_0") == 10: read that way, this call would wait 10 s (its deadline, 5 s, first).
    scripted_server.play(status(503, Retry_After="1_0"), ok())
    async with scripted_server.client(deadline=5) as client:
        started = time.perf_counter()
        # A GET: retried after a 503 with or without Retry-After, after the (tiny) backoff.
        assert await client.request("GET", "/v1/api/customers") == {"ok": True}
        elapsed = time.perf_counter() - started
    assert scripted_server.attempts == 2
    assert elapsed < 2.0  # nowhere near 10 s; the backoff cap here is 5 ms
    assert "ignoring the server's Retry-After header '1_0'" in caplog.text


async def test_retry_after_in_digits_is_honoured(scripted_server: ScriptedServer) -> None:
    scripted_server.play(status(503, Retry_After="1"), ok())
    async with scripted_server.client() as client:
        started = time.perf_counter()
        assert await client.request("GET", "/v1/api/customers") == {"ok": True}
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.99
