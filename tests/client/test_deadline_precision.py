"""A deadline is never overshot by more than 0.1 s, at any size, against a real server.

The socket's timers are what is under test, so this keeps a real server on 127.0.0.1; how
`Retry-After` is read (delay-seconds are digits only) is `test_retries.py`'s.

aiohttp rounds a timer of 5 s or more up to the next whole second of the loop clock unless told
otherwise, so a 5.05 s deadline used to end anywhere up to a second late. The calls below wait on
a 127.0.0.1 server that never answers; they run side by side, so the test costs one 5 s wait.
Not e2e: the rounding is aiohttp's, so every supported Python and the dependency floors run it.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import HANG, ScriptedServer

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
