"""`RedisRateLimiter` against a real redis-server: one cap across processes, deadlines, outages.

Every server is started by the `redis_servers` fixture on 127.0.0.1 (free port, temp dir) and
stopped by it. Timing assertions keep margins a loaded 2-core machine holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import subprocess
import sys
import time
import traceback
from collections.abc import Callable

import pytest
from conftest import ScriptedTransport
from redis_server import RedisServer, free_port

from finalpos_async import (
    APITimeoutError,
    Limiter,
    RateLimiter,
    RateLimiterUnavailable,
    RedisRateLimiter,
)
from finalpos_async._redis_limit import REDIS_CONNECTIONS
from finalpos_sync import FinalPOS

StartRedis = Callable[..., RedisServer]  # the `redis_servers` fixture

WORKER = """
import asyncio, json, sys, time
from finalpos_async import RedisRateLimiter

url, key, start_at, duration = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])

async def main():
    limiter = RedisRateLimiter(url, rate=50, burst=10, key=key)
    await limiter.acquire(timeout=0)  # connect and load the script before the start
    admitted = []
    time.sleep(max(0.0, start_at - time.time()))
    while time.time() < start_at + duration:
        if await limiter.acquire(timeout=start_at + duration - time.time()):
            admitted.append(time.time() - start_at)
    await limiter.aclose()
    print(json.dumps(admitted))

asyncio.run(main())
"""


def test_the_cap_holds_across_three_processes(redis_servers: StartRedis) -> None:
    server = redis_servers()
    key = "cap-test"
    # Each worker's warm-up token (before the start) is earned back by then: a full burst.
    start_at = time.time() + 3.0
    duration = 3.0
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, server.url, key, repr(start_at), repr(duration)],
            stdout=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    times = sorted(t for out in outputs for t in json.loads(out))
    per_worker = [len(json.loads(out)) for out in outputs]
    rate, burst = 50, 10
    # Three processes, one bucket: burst + rate * duration at most (one token of rounding).
    assert len(times) <= burst + rate * duration + 1
    assert len(times) >= 0.6 * rate * duration  # and the cap is used, not starved
    assert all(count > 0 for count in per_worker)
    for second in range(int(duration)):
        window = [t for t in times if second <= t < second + 1]
        assert len(window) <= rate + burst + 1, (second, len(window))


class Slots:
    """When each grant of a limiter is due: a grant with no wait when `acquire` returns, one
    with a wait when its local sleep ends as scheduled (the sleep is injected, so the figures are
    the limiter's decisions, not the event loop's lateness on a loaded machine)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._due: dict[asyncio.Task[object] | None, float] = {}

    async def sleep(self, seconds: float) -> None:
        self._due[asyncio.current_task()] = time.monotonic() + seconds
        await asyncio.sleep(seconds)

    async def take(self, limiter: RedisRateLimiter) -> None:
        task = asyncio.current_task()
        self._due.pop(task, None)
        assert await limiter.acquire(timeout=30)
        self.times.append(self._due.pop(task, None) or time.monotonic())

    def busiest_second(self) -> int:
        """The most grants due in any one-second window (sliding)."""
        times, first, most = sorted(self.times), 0, 0
        for last, due in enumerate(times):
            while times[first] <= due - 1.0:
                first += 1
            most = max(most, last - first + 1)
        return most


# A grant's due time is measured locally, a round trip after Redis decided it: a few of margin.
JITTER = 3


class LoopLag:
    """The longest the event loop was late to wake a 5 ms sleeper while it ran.

    A grant's due time is taken when its answer is processed, so a loop that stalls (a loaded
    machine) makes due times late by up to the stall, and a window may then hold that many
    seconds' worth of grants more: `margin(rate)` is that many, added to `JITTER`."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.monotonic() - before - 0.005)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def margin(self, rate: float) -> int:
        return JITTER + math.ceil(rate * self.worst)


@pytest.mark.parametrize("loss", ["FLUSHALL", "DEL"])
async def test_the_cap_holds_when_the_key_is_lost(redis_servers: StartRedis, loss: str) -> None:
    # 50 callers each hold a reserved slot; the key then goes (FLUSHALL, or DEL as an eviction
    # does). Read as a full bucket, a missing key let 141 go out in one second beside those
    # slots; the limiter restores it from the latest slot Redis named to it.
    server = redis_servers()
    slots = Slots()
    rate, burst = 100, 10
    limiter = RedisRateLimiter(server.url, rate=rate, burst=burst, key="lost", sleep=slots.sleep)
    wanted, lose_at = 300, 100

    async def caller() -> None:
        while len(slots.times) < wanted:
            await slots.take(limiter)
            if len(slots.times) == lose_at:
                words = ("FLUSHALL",) if loss == "FLUSHALL" else ("DEL", "lost")
                assert server.command(*words).startswith((b"+OK", b":1"))

    with LoopLag() as lag:
        await asyncio.gather(*(caller() for _ in range(50)))
    await limiter.aclose()
    assert slots.busiest_second() <= rate + burst + lag.margin(rate), lag.worst
    span = max(slots.times) - min(slots.times)
    assert len(slots.times) <= rate * span + burst + lag.margin(rate), lag.worst


async def test_limiters_that_lose_the_key_keep_the_bound_the_readme_states(
    redis_servers: StartRedis,
) -> None:
    # Two limiters on one key (as two processes): B reserves 50 slots after A's last call (5 at
    # once, 45 callers waiting, for 0.9 s), then the key is lost. A restores only what it saw,
    # so its new grants overlap B's: the README's bound, rate + burst, plus burst + the waiting.
    server = redis_servers()
    slots = Slots()
    rate, burst, waiting = 50, 5, 45
    a, b = (
        RedisRateLimiter(server.url, rate=rate, burst=burst, key="two", sleep=slots.sleep)
        for _ in range(2)
    )
    assert await a.acquire(timeout=0)
    slots.times.clear()
    with LoopLag() as lag:  # from B's first answer: each due time is taken when it is processed
        b_callers = [asyncio.create_task(slots.take(b)) for _ in range(burst + waiting)]
        deadline = time.monotonic() + 30
        while b.acquired < burst + waiting:  # every slot of B reserved: 45 sleep on theirs
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        assert server.command("DEL", "two").startswith(b":1")
        await asyncio.gather(*b_callers, *(slots.take(a) for _ in range(60)))
    await a.aclose()
    await b.aclose()
    # Measured on a quiet machine: 103 of 105 (the overlap is real). How much of it shows
    # depends on how fast A's callers reach Redis after the loss, so only the bound is asserted.
    bound = rate + burst + burst + waiting + lag.margin(rate)
    assert slots.busiest_second() <= bound, lag.worst


async def test_one_round_trip_reserves_and_the_wait_is_local(redis_servers: StartRedis) -> None:
    server = redis_servers()
    limiter = RedisRateLimiter(server.url, rate=10, burst=2, key="pace")
    assert isinstance(limiter, Limiter)
    started = time.monotonic()
    assert all([await limiter.acquire() for _ in range(4)])
    # Two at once (the burst), then two more 0.1 s apart.
    assert 0.17 <= time.monotonic() - started < 2.0
    assert limiter.acquired == 4
    await limiter.aclose()


async def test_a_wait_past_the_timeout_is_declined_without_taking_the_slot(
    redis_servers: StartRedis,
) -> None:
    server = redis_servers()
    limiter = RedisRateLimiter(server.url, rate=2, burst=1, key="deadline")
    assert await limiter.acquire()
    started = time.monotonic()
    assert await limiter.acquire(timeout=0.1) is False
    assert time.monotonic() - started < 0.1  # declined at once, no sleep
    assert limiter.acquired == 1
    # The declined slot was not booked: the next one is 0.5 s after the first, not 1.0 s.
    started = time.monotonic()
    assert await limiter.acquire(timeout=5)
    assert time.monotonic() - started < 0.9  # a booked slot would have meant 1.0 s
    await limiter.aclose()


async def test_a_free_slot_is_granted_even_with_no_time_to_wait(
    redis_servers: StartRedis,
) -> None:
    server = redis_servers()
    limiter = RedisRateLimiter(server.url, rate=10, burst=3, key="zero")
    # timeout=0: the round trip itself takes time, but a slot needing no wait is ours (as with
    # the local RateLimiter); a slot that would need one is declined.
    assert [await limiter.acquire(timeout=0) for _ in range(4)] == [True, True, True, False]
    assert limiter.acquired == 3
    before = server.command("GET", "zero")
    assert await limiter.acquire(timeout=-1) is False  # no round trip, nothing booked
    assert server.command("GET", "zero") == before
    assert limiter.acquired == 3
    await limiter.aclose()


async def test_concurrent_first_calls_send_the_script_once(redis_servers: StartRedis) -> None:
    server = redis_servers()
    limiter = RedisRateLimiter(server.url, rate=1000, key="first")
    assert all(await asyncio.gather(*(limiter.acquire() for _ in range(32))))
    stats = server.command("INFO", "commandstats").decode()
    calls = {
        line.split(":")[0].removeprefix("cmdstat_"): int(line.split("calls=")[1].split(",")[0])
        for line in stats.splitlines()
        if line.startswith("cmdstat_")
    }
    # One EVAL carries the script; every other acquire is one EVALSHA (no NOSCRIPT reloads).
    assert calls.get("eval") == 1
    assert calls.get("evalsha") == 31
    assert "script|load" not in calls
    assert "script" not in calls
    await limiter.aclose()


async def test_more_callers_than_connections_wait_for_one(redis_servers: StartRedis) -> None:
    # redis-py's default pool would raise "Too many connections" past 100 (redis-py 8): a web
    # worker with 400 requests in flight must not read that as Redis being down.
    server = redis_servers()
    # 400 callers share 16 connections, 25 round trips each in turn: on a loaded machine that
    # queue outlasts the default half second, which this test is not about.
    limiter = RedisRateLimiter(server.url, rate=100_000, key="many", redis_timeout=10)
    assert all(await asyncio.gather(*(limiter.acquire() for _ in range(400))))
    assert limiter.acquired == 400
    info = server.command("INFO", "clients").decode()
    connected = int(info.split("connected_clients:")[1].split()[0])
    assert connected <= REDIS_CONNECTIONS + 1  # ours, and the INFO connection itself
    await limiter.aclose()


async def test_the_client_fails_a_call_whose_token_wait_crosses_its_deadline(
    redis_servers: StartRedis, scripted: ScriptedTransport
) -> None:
    server = redis_servers()
    limiter = RedisRateLimiter(server.url, rate=0.5, burst=1, key="client")
    async with scripted.client(rate_limit=limiter) as client:
        assert client.rate_limiter is limiter
        assert client.with_options(timeout=3).rate_limiter is limiter
        await client.request("GET", "/v1/api/customers")
        with pytest.raises(APITimeoutError) as excinfo:
            await client.request("GET", "/v1/api/customers", deadline=0.5)
        assert excinfo.value.kind == "deadline"
        assert excinfo.value.attempts == 0
        assert "rate-limit token" in str(excinfo.value)
        assert scripted.attempts == 1  # nothing sent

        async def create(**fields: object) -> object:
            return await client.request("POST", "/v1/api/customer", json=fields)

        own = RedisRateLimiter(server.url, rate=1000, key="bulk")
        report = await client.bulk.run(create, [{"n": 1}, {"n": 2}], rate_limit=own)
        assert report.succeeded == 2
        assert own.acquired == 2
        await own.aclose()
    await limiter.aclose()


def test_the_sync_client_takes_a_redis_limiter(redis_servers: StartRedis) -> None:
    server = redis_servers()
    limiter = RedisRateLimiter(server.url, rate=1000, key="sync")
    with FinalPOS(sandbox=True, rate_limit=limiter) as client:
        assert client.rate_limiter is limiter
        client.customers.list(limit=1).first_page()
        assert limiter.acquired >= 1  # taken on the facade's private loop, its own client


async def test_redis_down_at_start_raises_a_typed_error_naming_redis() -> None:
    port = free_port()  # nothing listens there
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", rate=10, key="down")
    with pytest.raises(RateLimiterUnavailable) as excinfo:
        await limiter.acquire(timeout=5)
    message = str(excinfo.value)
    assert "Redis" in message
    assert f"127.0.0.1:{port}" in message
    assert limiter.acquired == 0


async def test_redis_down_at_start_with_fallback_paces_locally_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    limiter = RedisRateLimiter(
        f"redis://127.0.0.1:{port}/0", rate=100, burst=4, key="down", fallback_share=0.25
    )
    with caplog.at_level(logging.WARNING, logger="finalpos"):
        assert all([await limiter.acquire(timeout=5) for _ in range(3)])
    assert limiter.using_fallback
    assert limiter.acquired == 3
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "25/s" in warnings[0].getMessage()


async def test_redis_down_mid_run(
    redis_servers: StartRedis, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_servers()
    strict = RedisRateLimiter(server.url, rate=1000, key="mid")
    lenient = RedisRateLimiter(
        server.url, rate=1000, key="mid", fallback_share=0.5, retry_redis_after=0.0
    )
    assert await strict.acquire(timeout=1)
    assert await lenient.acquire(timeout=1)
    server.stop()
    with pytest.raises(
        RateLimiterUnavailable, match=f"Redis rate limiter at 127.0.0.1:{server.port}"
    ):
        await strict.acquire(timeout=1)
    with caplog.at_level(logging.WARNING, logger="finalpos"):
        assert await lenient.acquire(timeout=1)
        assert await lenient.acquire(timeout=1)
    assert lenient.using_fallback
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
    # Back up on the same port: the next acquire shares the Redis bucket again.
    server.start()
    with caplog.at_level(logging.WARNING, logger="finalpos"):
        assert await lenient.acquire(timeout=5)
    assert not lenient.using_fallback
    assert any("is back" in r.getMessage() for r in caplog.records)
    await lenient.aclose()
    await strict.aclose()


async def test_slow_redis_counts_as_down(redis_servers: StartRedis) -> None:
    server = redis_servers()
    limiter = RedisRateLimiter(server.url, rate=1000, key="slow", redis_timeout=0.2)
    assert await limiter.acquire(timeout=1)
    assert server.command("CLIENT", "PAUSE", "1500", "ALL").startswith(b"+OK")
    started = time.monotonic()
    with pytest.raises(RateLimiterUnavailable, match="timed out"):
        await limiter.acquire(timeout=5)
    assert time.monotonic() - started < 1.2
    await limiter.aclose()


async def test_the_password_never_shows(
    redis_servers: StartRedis, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_servers(password="s3cr3t-pa55")
    good = RedisRateLimiter(server.url, rate=100, key="auth")
    assert await good.acquire(timeout=5)
    assert "s3cr3t-pa55" not in repr(good)
    assert "***" in repr(good)
    await good.aclose()

    wrong_url = f"redis://:wr0ng-pa55@127.0.0.1:{server.port}/0"
    wrong = RedisRateLimiter(wrong_url, rate=100, key="auth")
    assert "wr0ng-pa55" not in repr(wrong)
    with pytest.raises(RateLimiterUnavailable) as excinfo:
        await wrong.acquire(timeout=5)
    shown = "".join(traceback.format_exception(excinfo.value)) + repr(excinfo.value)
    assert f"127.0.0.1:{server.port}" in shown
    assert "wr0ng-pa55" not in shown

    fallback = RedisRateLimiter(wrong_url, rate=100, key="auth", fallback_share=0.5)
    with caplog.at_level(logging.DEBUG, logger="finalpos"):
        assert await fallback.acquire(timeout=5)
    assert caplog.records
    assert all("wr0ng-pa55" not in r.getMessage() for r in caplog.records)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="burst"):
        RedisRateLimiter("redis://localhost", rate=10, burst=0.5)
    with pytest.raises(ValueError, match="rate"):
        RedisRateLimiter("redis://localhost", rate=0)
    with pytest.raises(ValueError, match="fallback_share"):
        RedisRateLimiter("redis://localhost", rate=10, fallback_share=2)
    with pytest.raises(ValueError, match="redis_timeout"):
        RedisRateLimiter("redis://localhost", rate=10, redis_timeout=0)
    with pytest.raises(ValueError, match="key"):
        RedisRateLimiter("redis://localhost", rate=10, key="")
    assert isinstance(RateLimiter(1), Limiter)


def test_loops_get_their_own_client(redis_servers: StartRedis) -> None:
    server = redis_servers()
    limiter = RedisRateLimiter(server.url, rate=1000, key="loops")

    async def take() -> bool:
        try:
            return await limiter.acquire(timeout=5)
        finally:
            await limiter.aclose()

    assert asyncio.run(take())
    assert asyncio.run(take())  # a second loop: a new client, not the closed loop's


def test_redis_is_optional_and_its_absence_names_the_extra() -> None:
    code = """
import asyncio, sys
sys.modules["redis"] = None  # as if the redis extra were not installed
import finalpos_async
limiter = finalpos_async.RedisRateLimiter("redis://127.0.0.1:1/0", rate=10)
try:
    asyncio.run(limiter.acquire())
except ImportError as exc:
    print(exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'finalpos[redis]'" in out.stdout


async def test_slots_that_passed_while_the_loop_was_busy_are_not_spent_at_once(
    redis_servers: StartRedis,
) -> None:
    # 60 callers hold reserved slots 10 ms apart; the loop is then busy for 0.3 s, past 30 of
    # them. Sent as they wake, those 30 would go out together: a burst the cap never granted
    # (on a busy 2-core machine, 44 requests within 50 ms reached a sandbox that way). A slot
    # woken up for too late is given up and a new one reserved.
    server = redis_servers()
    rate, burst, callers = 100, 5, 60
    limiter = RedisRateLimiter(server.url, rate=rate, burst=burst, key="stall")
    sent: list[float] = []

    async def caller() -> None:
        assert await limiter.acquire(timeout=30)
        sent.append(time.monotonic())

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    deadline = time.monotonic() + 10
    while limiter.acquired < callers:  # every caller sleeps on its slot
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    time.sleep(0.3)  # the loop is busy (a large file checked inline, say)  # noqa: ASYNC251
    await asyncio.gather(*tasks)
    await limiter.aclose()
    times, first, busiest = sorted(sent), 0, 0
    for last, moment in enumerate(times):
        while times[first] <= moment - 0.1:
            first += 1
        busiest = max(busiest, last - first + 1)
    # any 0.1 s: rate * 0.1 + burst, + what the late limit (half the burst) and a few allow
    assert busiest <= rate * 0.1 + burst + math.ceil(burst / 2) + JITTER, busiest
    assert limiter.missed >= 20
