"""`AsyncFinalPOS(rate_limit=...)`: one token per HTTP attempt, shared, never past the deadline.

The limiter's clock and sleep are injected, so pacing is asserted on the waits it asks for and on
its token count, not by sleeping through real seconds. Attempts go through `MockTransport`
(the `scripted` fixture): tokens are taken per attempt, whatever carries it.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from pathlib import Path

import pytest
from conftest import ScriptedTransport, ok, status

from finalpos_async import (
    APITimeoutError,
    AsyncFinalPOS,
    MockTransport,
    RateLimiter,
    RateLimiterUnavailable,
    Request,
    TransportResponse,
)
from finalpos_async._constants import MAX_MISSED_SLOTS, RATE_LIMIT_BURST_SECONDS
from finalpos_async.bulk import ItemStatus, Journal
from finalpos_sync import FinalPOS


class FakeTime:
    """A clock that moves only when told, and a sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        await asyncio.sleep(0)


def limiter(rate: float, *, burst: float, fake: FakeTime) -> RateLimiter:
    return RateLimiter(rate, burst=burst, clock=fake.clock, sleep=fake.sleep)


async def test_a_burst_of_requests_is_paced_after_the_bucket_empties(
    scripted: ScriptedTransport,
) -> None:
    fake = FakeTime()
    bucket = limiter(10, burst=2, fake=fake)
    async with scripted.client(rate_limit=bucket) as client:
        await asyncio.gather(*(client.request("GET", "/v1/api/customers") for _ in range(6)))
    assert scripted.attempts == 6
    # Two go at once (the burst), the next four queue 0.1 s apart (10 per second).
    assert sorted(fake.sleeps) == [0.1, 0.2, 0.3, 0.4]
    assert bucket.acquired == 6


async def test_the_bucket_refills_with_time(scripted: ScriptedTransport) -> None:
    fake = FakeTime()
    bucket = limiter(10, burst=2, fake=fake)
    async with scripted.client(rate_limit=bucket) as client:
        for _ in range(2):
            await client.request("GET", "/v1/api/customers")
        fake.now += 0.1  # one token earned
        await client.request("GET", "/v1/api/customers")
        assert fake.sleeps == []
        await client.request("GET", "/v1/api/customers")
    assert fake.sleeps == [0.1]


async def test_every_retry_takes_a_token(scripted: ScriptedTransport) -> None:
    scripted.play(status(503), status(503), ok())
    fake = FakeTime()
    bucket = limiter(10, burst=10, fake=fake)
    async with scripted.client(rate_limit=bucket) as client:
        await client.request("GET", "/v1/api/customers")
    assert scripted.attempts == 3
    assert bucket.acquired == 3
    assert bucket.tokens == pytest.approx(7)


async def test_a_token_wait_that_would_cross_the_deadline_fails_without_sending(
    scripted: ScriptedTransport,
) -> None:
    fake = FakeTime()
    bucket = limiter(1, burst=1, fake=fake)
    async with scripted.client(rate_limit=bucket) as client:
        await client.request("GET", "/v1/api/customers")
        with pytest.raises(APITimeoutError) as excinfo:
            await client.request("GET", "/v1/api/customers", deadline=0.5)
        error = excinfo.value
        assert error.kind == "deadline"
        assert error.attempts == 0
        assert "rate-limit token" in str(error)
        assert scripted.attempts == 1
        assert bucket.acquired == 1  # the token it could not use was not taken
        # A wait that fits in the deadline is made, then the request goes out.
        await client.request("GET", "/v1/api/customers", deadline=5)
    assert fake.sleeps == [1.0]
    assert scripted.attempts == 2


async def test_a_retry_whose_token_wait_crosses_the_deadline_reports_the_last_error(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(status(503), ok())
    fake = FakeTime()
    bucket = limiter(0.5, burst=1, fake=fake)  # the retry would wait 2 s for its token
    async with scripted.client(rate_limit=bucket) as client:
        with pytest.raises(APITimeoutError) as excinfo:
            await client.request("GET", "/v1/api/customers", deadline=1.0)
    assert excinfo.value.kind == "deadline"
    assert excinfo.value.attempts == 1
    assert excinfo.value.last_error is not None
    assert excinfo.value.last_error.status_code == 503  # type: ignore[attr-defined]
    assert scripted.attempts == 1


async def test_real_clock_pacing(scripted: ScriptedTransport) -> None:
    # The default clock and sleep: 11 requests at 100/s with no burst take at least 0.1 s.
    async with scripted.client(rate_limit=RateLimiter(100, burst=1)) as client:
        started = time.monotonic()
        await asyncio.gather(*(client.request("GET", "/v1/api/customers") for _ in range(11)))
        assert time.monotonic() - started >= 0.095


async def test_with_options_copies_and_bulk_runs_share_the_clients_limiter(
    scripted: ScriptedTransport,
) -> None:
    fake = FakeTime()
    bucket = limiter(1e6, burst=1e6, fake=fake)
    async with scripted.client(rate_limit=bucket) as client:
        view = client.with_options(timeout=5)
        assert view.rate_limiter is client.rate_limiter is bucket
        await view.request("GET", "/v1/api/customers")
        assert bucket.acquired == 1

        async def create(**fields: object) -> object:
            return await client.request("POST", "/v1/api/customer", json=fields)

        job = client.bulk.run(create, [{"n": n} for n in range(5)])
        assert job.rate_limiter is bucket
        assert (await job).succeeded == 5
        assert bucket.acquired == 6  # one per attempt: the run takes no extra tokens

        own = RateLimiter(1e6)
        job = client.bulk.run(create, [{"n": n} for n in range(3)], rate_limit=own)
        assert job.rate_limiter is own
        await job
        assert own.acquired == 3  # one per item started
        assert bucket.acquired == 9  # and the client's, one per attempt

        same = client.bulk.run(create, [{"n": 1}], rate_limit=bucket)
        await same
        assert bucket.acquired == 10  # the client's own limiter is not applied twice


def test_a_number_makes_a_limiter_with_the_default_burst() -> None:
    client = AsyncFinalPOS(api_key="sk_test", base_url="http://127.0.0.1:9", rate_limit=20)
    assert client.rate_limiter is not None
    assert client.rate_limiter.rate == 20
    assert client.rate_limiter.burst == max(1.0, 20 * RATE_LIMIT_BURST_SECONDS)
    assert AsyncFinalPOS(api_key="sk_test", base_url="http://127.0.0.1:9").rate_limiter is None


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (float("inf"), ValueError),
        (float("nan"), ValueError),
        ("10", TypeError),
        (True, TypeError),
    ],
)
def test_bad_rate_limits_name_the_field(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="rate_limit"):
        AsyncFinalPOS(api_key="sk_test", base_url="http://127.0.0.1:9", rate_limit=value)  # type: ignore[arg-type]


def test_bad_limiter_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(10, burst=0.5)
    with pytest.raises(TypeError, match="rate"):
        RateLimiter("10")  # type: ignore[arg-type]


def test_the_sync_client_takes_the_same_option() -> None:
    with FinalPOS(api_key="sk_test", base_url="http://127.0.0.1:9", rate_limit=5) as client:
        assert client.rate_limiter is not None
        assert client.rate_limiter.rate == 5
        assert client.with_options(timeout=3).rate_limiter is client.rate_limiter


class _FailsAfter:
    """A `Limiter` whose store fails from the `n`-th acquire on (as Redis going down)."""

    rate = 100.0
    burst = 100.0

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0

    async def acquire(self, *, timeout: float | None = None) -> bool:
        self.calls += 1
        if self.calls >= self.n:
            raise RateLimiterUnavailable("Redis rate limiter at 127.0.0.1:1 unavailable (test)")
        return True


async def test_a_limiter_failing_on_a_retry_carries_the_calls_attempts() -> None:
    def handler(request: Request) -> TransportResponse:
        return TransportResponse(503, json={"message": "busy"})

    limiter = _FailsAfter(2)
    transport = MockTransport(handler)
    async with AsyncFinalPOS(
        "k", transport=transport, rate_limit=limiter, backoff_base=0.001, backoff_cap=0.002
    ) as client:
        with pytest.raises(RateLimiterUnavailable) as caught:
            await client.customers.create(
                email="a@b.co", first_name="A", last_name="B", idempotency_key="row-1"
            )
    error = caught.value
    # The first attempt reached the server and got a 503: the create may have happened.
    assert (error.attempts, error.maybe_processed, error.method) == (1, True, "POST")
    assert error.idempotency_key == "row-1"
    assert len(transport.requests) == 1


async def test_a_limiter_failing_before_any_attempt_says_nothing_was_sent() -> None:
    transport = MockTransport(lambda request: TransportResponse(201, json={}))
    async with AsyncFinalPOS("k", transport=transport, rate_limit=_FailsAfter(1)) as client:
        with pytest.raises(RateLimiterUnavailable) as caught:
            await client.customers.create(email="a@b.co", first_name="A", last_name="B")
    assert (caught.value.attempts, caught.value.maybe_processed) == (0, False)
    assert transport.requests == []


async def test_a_bulk_run_stops_when_the_limiter_fails_and_forgets_no_row(
    tmp_path: Path,
) -> None:
    calls: list[str] = []

    def handler(request: Request) -> TransportResponse:
        calls.append(request.method)
        if len(calls) == 3:
            return TransportResponse(503, json={"message": "busy"})
        return TransportResponse(201, json={"id": f"c{len(calls)}"})

    # Acquire 1-3: rows 1-3 (row 3 gets a 503); acquire 4 (row 3's retry) fails.
    limiter = _FailsAfter(4)
    journal = Journal(tmp_path / "j.sqlite")
    async with AsyncFinalPOS(
        "k",
        transport=MockTransport(handler),
        rate_limit=limiter,
        backoff_base=0.001,
        backoff_cap=0.002,
    ) as client:
        items = [{"email": f"u{i}@b.co", "first_name": "A", "last_name": "B"} for i in range(20)]
        job = client.bulk.run(client.customers.create, items, concurrency=1, journal=journal)
        results = [r async for r in job]
    statuses = [r.status for r in sorted(results, key=lambda r: r.index)]
    assert statuses[:3] == [ItemStatus.SUCCEEDED, ItemStatus.SUCCEEDED, ItemStatus.UNKNOWN]
    assert job.report.stop_reason is not None
    assert "Redis rate limiter" in job.report.stop_reason
    # Stopped: the rest of the intent window was never sent (cancelled), nothing after it read.
    sent = [r for r in results if r.status is not ItemStatus.CANCELLED]
    assert len(sent) < 20
    assert all(r.attempts == 0 for r in results if r.status is ItemStatus.CANCELLED)
    # Row 3 may exist: the journal keeps it as unknown (never "not processed").
    entry = journal.lookup(results[2].key)
    assert entry is not None
    assert entry.status == ItemStatus.UNKNOWN.value


class _FailsOnce(_FailsAfter):
    """A `Limiter` whose store fails once (one late Redis answer), then works again."""

    async def acquire(self, *, timeout: float | None = None) -> bool:
        self.calls += 1
        if self.calls == self.n:
            raise RateLimiterUnavailable("Redis rate limiter at 127.0.0.1:1 unavailable (test)")
        return True


async def test_one_late_limiter_answer_delays_one_row_and_the_run_still_finishes() -> None:
    transport = MockTransport(lambda request: TransportResponse(201, json={"id": "c"}))
    async with AsyncFinalPOS("k", transport=transport, rate_limit=_FailsOnce(3)) as client:
        items = [{"email": f"u{i}@b.co", "first_name": "A", "last_name": "B"} for i in range(20)]
        job = client.bulk.run(client.customers.create, items, concurrency=1)
        results = [r async for r in job]
    # The row whose token was refused was never sent; the run sends it again once the main
    # pass is over (a settle round), so the first run ends with every row created once.
    statuses = collections.Counter(r.status for r in results)
    assert statuses == {ItemStatus.SUCCEEDED: 20}
    assert job.report.stop_reason is None
    assert len(transport.requests) == 20


async def test_slots_that_passed_while_the_loop_was_busy_are_not_spent_at_once() -> None:
    # 60 callers hold reserved tokens 10 ms apart; the loop is then busy for 0.3 s, past 30 of
    # them. Sent as they wake, those 30 would go out together: a burst the bucket never granted.
    # A slot woken up for too late is given up and a new token reserved (as RedisRateLimiter).
    rate, burst, callers = 100, 5, 60
    limiter = RateLimiter(rate, burst=burst)
    sent: list[float] = []

    async def caller() -> None:
        assert await limiter.acquire(timeout=30)
        sent.append(time.monotonic())

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    await asyncio.sleep(0)  # every caller has reserved its token and sleeps on it
    assert limiter.acquired == callers
    time.sleep(0.3)  # the loop is busy (a large file checked inline, say)  # noqa: ASYNC251
    await asyncio.gather(*tasks)
    times, first, busiest = sorted(sent), 0, 0
    for last, moment in enumerate(times):
        while times[first] <= moment - 0.1:
            first += 1
        busiest = max(busiest, last - first + 1)
    # any 0.1 s: rate * 0.1 + burst, + what the late limit (half the burst) allows, + 2
    assert busiest <= rate * 0.1 + burst + math.ceil(burst / 2) + 2, busiest
    assert limiter.missed >= 20


async def test_a_caller_woken_up_late_every_time_still_gets_its_token() -> None:
    # A process starved of CPU for good still sends: after MAX_MISSED_SLOTS late wake-ups the
    # next slot is used however late.
    fake = FakeTime()

    async def late_sleep(seconds: float) -> None:
        fake.sleeps.append(round(seconds, 6))
        fake.now += seconds + 0.06  # always woken up past the late limit (0.05 s here)

    bucket = RateLimiter(10, burst=1, clock=fake.clock, sleep=late_sleep)
    assert await bucket.acquire()  # the burst token: no wait
    assert await bucket.acquire()
    assert bucket.missed == MAX_MISSED_SLOTS
    # the first slot, then each new one (the bucket earned 0.6 of a token while it overslept)
    assert fake.sleeps == [0.1] + [0.04] * MAX_MISSED_SLOTS
