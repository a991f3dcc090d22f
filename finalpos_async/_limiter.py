"""`Limiter`: what `rate_limit=` accepts besides a number (the in-process or the Redis bucket).

The client, its `with_options` views, bulk runs and the sync facade only ever call
`await limiter.acquire(timeout=...)`, so any object with that method (and `rate`/`burst` for
display) paces them: `RateLimiter` (one process) and `RedisRateLimiter` (every process that
names the same Redis key) both are.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Limiter"]


@runtime_checkable
class Limiter(Protocol):
    """A requests-per-second limiter: one `acquire` per HTTP attempt (or per bulk item)."""

    @property
    def rate(self) -> float:
        """Average acquisitions per second."""
        ...

    @property
    def burst(self) -> float:
        """How many acquisitions may happen back to back after a quiet period."""
        ...

    async def acquire(self, *, timeout: float | None = None) -> bool:
        """Take one token, waiting for it; False at once (nothing taken) if the wait would
        exceed `timeout` seconds."""
        ...
