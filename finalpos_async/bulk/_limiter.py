"""A requests-per-second limiter (token bucket) that bulk runs, or a whole app, can share."""

from __future__ import annotations

import asyncio
import time

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token bucket: on average `rate` acquisitions per second, with bursts of up to `burst`.

    `await limiter.acquire()` returns at once while tokens are left, else sleeps until its turn.
    Waiters are served in arrival order: each one reserves its token (the balance may go negative)
    and sleeps for exactly the time the bucket needs to earn it back, so there is no lock and no
    busy polling. One instance may be shared by any number of tasks of the same event loop; pass the
    same instance to several `client.bulk.run(..., rate_limit=limiter)` calls to cap them together.
    """

    def __init__(self, rate: float, *, burst: float | None = None) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        if burst is not None and not burst >= 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self._rate = float(rate)
        # A burst of one second's worth (at least 1) keeps the average exact without long bursts.
        self._burst = float(burst) if burst is not None else max(1.0, self._rate)
        self._tokens = self._burst
        self._updated = time.monotonic()

    @property
    def rate(self) -> float:
        """Average acquisitions per second."""
        return self._rate

    @property
    def burst(self) -> float:
        """How many acquisitions may happen back to back after a quiet period."""
        return self._burst

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    async def acquire(self) -> None:
        """Take one token, sleeping until the bucket has earned it."""
        self._refill()
        self._tokens -= 1.0
        if self._tokens < 0:
            # If this sleep is cancelled the token stays spent: the limiter errs on the slow side.
            await asyncio.sleep(-self._tokens / self._rate)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self._rate:g}, burst={self._burst:g})"
