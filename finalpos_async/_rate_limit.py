"""`RateLimiter`: a requests-per-second token bucket, shared by a client and its bulk runs.

The client takes one token before every HTTP attempt (retries included) when it was built with
`rate_limit=`; a bulk run may add its own limiter on top (see `BulkRunner.run`). The bucket never
makes a caller wait past its deadline: `acquire(timeout=...)` declines, without taking a token,
when the wait would be longer than the time left.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable

from ._constants import MAX_MISSED_SLOTS, MIN_LATE_LIMIT, RATE_LIMIT_BURST_SECONDS

__all__ = ["RateLimiter", "take_on_time"]

TakeSlot = Callable[[float | None], Awaitable[float | None]]
"""One slot within a timeout (s): None when declined, else how late (s) its caller woke up."""


async def take_on_time(
    take: TakeSlot,
    timeout: float | None,
    late_limit: float,
    clock: Callable[[], float],
    on_miss: Callable[[], None],
) -> bool:
    """`take` slots until one is used on time (at most `late_limit` late), giving up at most
    `MAX_MISSED_SLOTS` of them (`on_miss` for each) and using the next whatever its delay;
    within `timeout` in all. True once a slot is used, False when one is declined."""
    started = clock()
    left = timeout
    for _ in range(MAX_MISSED_SLOTS):
        late = await take(left)
        if late is None or late <= late_limit:
            return late is not None
        on_miss()
        left = None if timeout is None else timeout - (clock() - started)
    return await take(left) is not None


class RateLimiter:
    """Token bucket: on average `rate` acquisitions per second, with bursts of up to `burst`.

    `await limiter.acquire()` returns at once while tokens are left, else sleeps until its turn.
    Waiters are served in arrival order: each one reserves its token (the balance may go negative)
    and sleeps for exactly the time the bucket needs to earn it back, so there is no queue and no
    busy polling. `burst` defaults to `RATE_LIMIT_BURST_SECONDS` worth of tokens (at least 1).

    One instance may be shared by any number of tasks, and by clients on different event loops
    (the sync facade's private loops, for instance): the bookkeeping is guarded by a lock and the
    sleep happens on each caller's own loop. Pass the same instance as `rate_limit=` to several
    clients, or to several `client.bulk.run(...)` calls, to cap them together.

    `clock` (seconds, monotonic) and `sleep` are injectable so tests can drive the bucket
    without waiting for real time.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise TypeError(f"rate must be a number of requests per second, got {rate!r}")
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        if burst is not None and (
            isinstance(burst, bool)
            or not isinstance(burst, (int, float))
            or not (burst >= 1 and math.isfinite(burst))
        ):
            raise ValueError(f"burst must be a finite number of at least 1, got {burst!r}")
        self._rate = float(rate)
        self._burst = (
            float(burst) if burst is not None else max(1.0, self._rate * RATE_LIMIT_BURST_SECONDS)
        )
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self._burst
        self._updated = clock()
        self._acquired = 0
        # A slot woken up for later than this is not used (see `acquire`).
        self._late_limit = max(MIN_LATE_LIMIT, self._burst / self._rate / 2)
        self._missed = 0

    @property
    def rate(self) -> float:
        """Average acquisitions per second."""
        return self._rate

    @property
    def burst(self) -> float:
        """How many acquisitions may happen back to back after a quiet period."""
        return self._burst

    @property
    def tokens(self) -> float:
        """Tokens in the bucket now; negative when waiters have reserved tokens not yet earned."""
        with self._lock:
            self._refill()
            return self._tokens

    @property
    def acquired(self) -> int:
        """Tokens handed out so far (each one an attempt the limiter let through)."""
        return self._acquired

    @property
    def missed(self) -> int:
        """Slots a caller woke up for too late and gave up for new ones (see `acquire`)."""
        return self._missed

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def reserve(self, *, max_wait: float | None = None) -> float | None:
        """Take a token now and return how long to wait before using it (0.0: at once).

        With `max_wait`, a token that would need a longer wait is not taken and None is
        returned, so a caller with a deadline never books a slot it cannot use.
        """
        with self._lock:
            self._refill()
            wait = 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self._rate
            if max_wait is not None and wait > max_wait:
                return None
            self._tokens -= 1.0
            self._acquired += 1
            return wait

    async def acquire(self, *, timeout: float | None = None) -> bool:
        """Take one token, sleeping until the bucket has earned it.

        Returns True once the token is ours; False at once (no token taken, no sleep) when the
        wait would exceed `timeout` seconds. If the sleep is cancelled the token stays spent:
        the limiter errs on the slow side.

        A slot the caller wakes up for too late (its event loop was busy past it, by more than
        half the burst's worth of time) is not used: the callers whose slots passed during the
        stall would all go out at once, a burst the bucket never granted. A new token is
        reserved instead, up to `MAX_MISSED_SLOTS` times in a row.
        """
        return await take_on_time(self._take, timeout, self._late_limit, self._clock, self._miss)

    def _miss(self) -> None:
        self._missed += 1

    async def _take(self, timeout: float | None) -> float | None:
        """One token: None when declined, else how late (s) the caller woke up for its slot."""
        wait = self.reserve(max_wait=timeout)
        if wait is None:
            return None
        if wait <= 0:
            return 0.0
        slot = self._clock() + wait
        await self._sleep(wait)
        return max(0.0, self._clock() - slot)

    def __repr__(self) -> str:
        # A constructor that raised leaves `self` in a traceback's locals, half built.
        if not hasattr(self, "_burst"):
            return "<RateLimiter (not constructed)>"
        return f"RateLimiter(rate={self._rate:g}, burst={self._burst:g})"
