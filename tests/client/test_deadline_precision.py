"""A deadline is never overshot by more than 0.1 s, at any size, against a real server.

The socket's timers are what is under test, so this keeps a real server on 127.0.0.1; how
`Retry-After` is read (delay-seconds are digits only) is `test_retries.py`'s.

aiohttp rounds a timer of 5 s or more up to the next whole second of the loop clock unless told
otherwise, so a 5.05 s deadline used to end anywhere up to a second late. The calls below wait on
a 127.0.0.1 server that never answers; they run side by side, so a round costs one 5 s wait.
Not e2e: the rounding is aiohttp's, so every supported Python and the dependency floors run it.

A round in which the event loop itself was held up (a 10 ms heartbeat beside the calls woke more
than 50 ms late: the CI machine's two cores are shared with other test processes) says nothing of
the timers, so it is run again, at most three times in all; a client that held the loop up itself
would do so every round and fail.
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
HELD_UP = 0.05  # a heartbeat this late means the machine, not the client, held the loop up
ROUNDS = 3


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


async def _longest_gap(stop: asyncio.Event) -> float:
    """The longest the loop took to wake a 10 ms sleep, beyond the 10 ms, until `stop` is set."""
    longest = 0.0
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        longest = max(longest, time.perf_counter() - started - 0.01)
    return longest


async def test_no_deadline_or_read_timeout_is_overshot_by_more_than_a_tenth_of_a_second(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.play(HANG)
    rounds: list[tuple[float, list[float]]] = []
    async with scripted_server.client() as client:
        while len(rounds) < ROUNDS:
            stop = asyncio.Event()
            heartbeat = asyncio.ensure_future(_longest_gap(stop))
            overshoots = await asyncio.gather(
                _overshoot(client, deadline=5.05, timeout=60),  # the call's deadline (total timer)
                _overshoot(client, deadline=0.35, timeout=60),
                _overshoot(client, deadline=None, timeout=5.05),  # the read timeout (socket timer)
            )
            stop.set()
            rounds.append((await heartbeat, list(overshoots)))
            if rounds[-1][0] <= HELD_UP:
                break
    for gap, (total, short, read) in rounds:
        print(f"loop held up {gap:.3f} s; overshoot (s): deadline 5.05: {total:.3f}, "
              f"deadline 0.35: {short:.3f}, read timeout 5.05: {read:.3f}")  # fmt: skip
    gap, overshoots = rounds[-1]
    assert gap <= HELD_UP, f"the loop was held up in every round: {rounds}"
    assert all(-0.02 < overshoot < OVERSHOOT for overshoot in overshoots), overshoots
