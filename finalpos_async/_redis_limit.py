"""`RedisRateLimiter`: one requests-per-second cap shared by every process that names the same key.

Each `acquire` is ONE Redis round trip: a Lua script (GCRA, on the Redis server's own clock
`TIME`, so the hosts' clocks do not matter) reserves the caller's slot atomically and answers how
long to wait for it; the caller then sleeps locally. A slot that would need a longer wait than
the call's `timeout` is not reserved (`acquire` returns False at once), exactly like the
in-process `RateLimiter`. The script goes once per event loop (EVAL), then runs by SHA (redis-py's
`register_script`). Each limiter sends along the latest slot time Redis named to it, from which
the script restores the bucket if the key was lost (FLUSHALL, an eviction): see `GCRA_SCRIPT`.

`redis` is an optional dependency (`pip install 'finalpos[redis]'`), imported on first use.
A redis-py client is bound to one event loop, so the limiter keeps one client per loop, created
inside that loop on its first `acquire` (the sync facade runs clients on private loops).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qsl, urlsplit

from ._constants import MIN_LATE_LIMIT
from ._exceptions import RateLimiterUnavailable
from ._logging import logger
from ._rate_limit import RateLimiter, take_on_time
from ._secret import Secret, SecretURL, mask_text, redact_url

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = [
    "DEFAULT_REDIS_KEY",
    "RateLimiterUnavailable",
    "RedisRateLimiter",
    "redact_url",
    "tenant_key",
]

DEFAULT_REDIS_KEY = "finalpos:rate-limit"

INSTALL_HINT = "pip install 'finalpos[redis]'"


def tenant_key(credentials_fingerprint: str) -> str:
    """The Redis key of one API key's own shared cap: `DEFAULT_REDIS_KEY:<fingerprint>` (the
    client's `credentials_fingerprint`, never the key), so tenants never share a bucket."""
    return f"{DEFAULT_REDIS_KEY}:{credentials_fingerprint}"


# Connections per event loop to Redis (see `_redis_from_url`).
REDIS_CONNECTIONS = 16

# GCRA: KEYS[1] holds the theoretical arrival time (TAT, µs on the server clock) of the next
# slot. ARGV: interval (µs per token), tolerance (burst * interval), max_wait (µs; -1: none),
# floor (µs: the latest TAT this limiter was answered; 0 at first), unanswered (this limiter's
# scripts sent before this one and not yet answered). Returns {wait in µs for a reserved slot,
# or -1 - wait when the slot was declined; the TAT now}.
# The floor is what keeps the cap when the key is lost (FLUSHALL, an eviction, a restart without
# persistence): callers sleeping on slots they reserved still go out, and a missing key alone
# would read as a full bucket beside them (141 grants in a second at rate 100, burst 10). The
# key is never below a floor in normal running (it only grows, and expires once it is in the
# past), so the floor changes nothing then. A floor is stale by the scripts still unanswered
# when it was sent (Redis may have granted each of them a slot past it: on a busy loop, answers
# wait unread while new scripts go out), so a restore also skips one slot per such script; a
# loop stalled 50 ms at a time otherwise let up to 117 through in a second at rate 100, burst 10.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local stored = tonumber(redis.call('GET', KEYS[1]) or 0)
local floor = tonumber(ARGV[4])
if stored < floor and floor > now then
  floor = floor + tonumber(ARGV[5]) * interval
end
local tat = math.max(stored, floor, now)
local new_tat = tat + interval
local wait = math.max(new_tat - tolerance - now, 0)
if max_wait >= 0 and wait > max_wait then
  if tat > stored and tat > now then
    local ttl = math.ceil((tat - now) / 1000) + 1000
    redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', ttl)
  end
  return {-1 - wait, tat}
end
local ttl = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl)
return {wait, new_tat}
"""


def _where(url: str) -> str:
    """host:port (or the socket path) of a Redis URL, for messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


class _LoopClient:
    """A redis-py client and its loaded script, bound to one event loop."""

    __slots__ = ("client", "loaded", "loading", "loop", "script")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: Redis, script: AsyncScript):
        self.loop = loop
        self.client = client
        self.script = script
        self.loaded = False  # the script was sent (EVAL) to this client's Redis
        self.loading = asyncio.Lock()


class RedisRateLimiter:
    """Token bucket in Redis: on average `rate` acquisitions per second over every process that
    uses the same `url` and `key`, with bursts of up to `burst` (default: one second's worth).

    - `redis_timeout`: seconds one Redis round trip may take before Redis counts as down.
    - `fallback_share`: None (default) raises `RateLimiterUnavailable` when Redis fails; a
      share in (0, 1] instead paces this process with a local `RateLimiter` at
      `rate * fallback_share` (logged once per outage) and tries Redis again after
      `retry_redis_after` seconds. Pick about 1 / (number of processes) to stay under the cap.
    """

    def __init__(
        self,
        url: str,
        *,
        rate: float,
        burst: float | None = None,
        key: str = DEFAULT_REDIS_KEY,
        redis_timeout: float = 0.5,
        fallback_share: float | None = None,
        retry_redis_after: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if isinstance(url, str):
            # First: a failing check below must not show the password in this frame's locals.
            url = SecretURL(url)
        if not isinstance(url, str) or not url:
            raise TypeError("url must be a Redis URL such as 'redis://localhost:6379/0'")
        bucket = RateLimiter(rate, burst=burst)  # validates rate and burst the same way
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        for name, seconds in (
            ("redis_timeout", redis_timeout),
            ("retry_redis_after", retry_redis_after),
        ):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                raise TypeError(f"{name} must be a number of seconds, got {seconds!r}")
            if not (0 <= seconds < math.inf) or (name == "redis_timeout" and seconds == 0):
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {seconds!r}")
        if fallback_share is not None and not (
            isinstance(fallback_share, (int, float)) and 0 < fallback_share <= 1
        ):
            raise ValueError(f"fallback_share must be in (0, 1] or None, got {fallback_share!r}")
        self._url: SecretURL = url
        self._rate = bucket.rate
        self._burst = bucket.burst
        self._key = key
        self._redis_timeout = float(redis_timeout)
        self._sleep = sleep
        self._interval_us = 1e6 / self._rate
        self._fallback: RateLimiter | None = None
        if fallback_share is not None:
            share = float(fallback_share)
            self._fallback = RateLimiter(self._rate * share, burst=max(1.0, self._burst * share))
        self._fallback_share = fallback_share
        self._retry_redis_after = float(retry_redis_after)
        self._down_until: float | None = None  # monotonic time to try Redis again
        self._lock = threading.Lock()
        self._clients: dict[int, _LoopClient] = {}
        self._acquired = 0
        # The latest TAT (server µs) any answer named: restores the bucket if the key is lost.
        self._floor = 0
        self._unanswered = 0  # scripts sent and not yet answered: how stale the floor may be
        # A slot woken up for later than this is not used (see `acquire`).
        self._late_limit = max(MIN_LATE_LIMIT, self._burst / self._rate / 2)
        self._missed = 0

    @property
    def rate(self) -> float:
        """Average acquisitions per second, over every process sharing the key."""
        return self._rate

    @property
    def burst(self) -> float:
        """How many acquisitions may happen back to back after a quiet period."""
        return self._burst

    @property
    def key(self) -> str:
        """The Redis key holding the bucket."""
        return self._key

    @property
    def acquired(self) -> int:
        """Tokens this process took so far (from Redis or from the fallback bucket)."""
        return self._acquired

    @property
    def missed(self) -> int:
        """Slots this process woke up for too late and gave up for new ones (see `acquire`)."""
        return self._missed

    @property
    def using_fallback(self) -> bool:
        """True while Redis is down and the local fallback bucket paces this process."""
        return self._down_until is not None

    async def acquire(self, *, timeout: float | None = None) -> bool:
        """Take one token from the shared bucket, sleeping locally until its slot.

        One Redis round trip. Returns False at once (no token taken, no sleep) when the slot
        is further away than `timeout` seconds; raises `RateLimiterUnavailable` when Redis
        fails and no `fallback_share` was given.

        A slot this process wakes up for too late (its event loop was busy past it, by more
        than half the burst's worth of time) is not used: the calls whose slots passed during
        the stall would all go out at once, a burst the shared cap never granted. A new slot
        is reserved instead, up to `MAX_MISSED_SLOTS` times in a row.
        """
        return await take_on_time(
            self._acquire_slot, timeout, self._late_limit, time.monotonic, self._miss
        )

    def _miss(self) -> None:
        self._missed += 1

    async def _acquire_slot(self, timeout: float | None) -> float | None:
        """One reservation: None when declined, else how late (s) this process woke for it."""
        if timeout is not None and timeout < 0:
            return None  # as the local bucket: no slot is that close (and no round trip)
        down_until = self._down_until
        if down_until is not None and self._fallback is not None and time.monotonic() < down_until:
            return 0.0 if await self._fallback_acquire(timeout) else None
        start = time.monotonic()
        try:
            wait = await self._reserve(timeout)
        except RateLimiterUnavailable:
            if self._fallback is None:
                raise
            self._note_down()
            granted = await self._fallback_acquire(
                None if timeout is None else timeout - (time.monotonic() - start)
            )
            return 0.0 if granted else None
        if self._down_until is not None:
            self._down_until = None
            logger.warning("Redis rate limiter at %s is back; sharing its cap again", self._where)
        if wait is None:
            return None
        left = None if timeout is None else timeout - (time.monotonic() - start)
        if wait > 0 and left is not None and wait > left:
            # The round trip ate the margin: the reserved slot is given up (one slot of the
            # shared cap unused: the safe side; a refund would cost a second round trip).
            return None
        self._acquired += 1
        if wait > 0:
            await self._sleep(wait)
        # The slot's moment, at the latest `start + wait` here (Redis answered after `start`).
        return max(0.0, time.monotonic() - (start + wait))

    async def _reserve(self, timeout: float | None) -> float | None:
        """One script run: the wait (s) for our reserved slot, or None if it was declined."""
        max_wait = -1 if timeout is None else max(0, math.floor(timeout * 1e6))
        args = [repr(self._interval_us), repr(self._interval_us * self._burst), str(max_wait)]
        conn = self._loop_client()
        errors: tuple[type[BaseException], ...] = (asyncio.TimeoutError, *_redis_errors())
        with self._lock:  # one limiter may serve several loops (threads)
            args += [str(self._floor), str(self._unanswered)]
            self._unanswered += 1
        try:
            answer: object = await asyncio.wait_for(
                self._run_script(conn, args), self._redis_timeout
            )
        except errors as exc:
            # Our wait_for and redis-py's own socket timeout race; either one is a timeout.
            kind = "timed out" if isinstance(exc, _redis_timeouts()) else type(exc).__name__
            detail = self._scrub(str(exc))
            message = f"Redis rate limiter at {self._where} unavailable ({kind}"
            message += f": {detail})" if detail else ")"
            error = RateLimiterUnavailable(message)
        else:
            value, tat = _answer(answer)
            with self._lock:  # one limiter may serve several loops (threads)
                self._floor = max(self._floor, tat)
            return None if value < 0 else value / 1e6
        finally:
            with self._lock:
                self._unanswered -= 1
        # Raised after the `except`: redis-py's exception (and its frames, which hold the
        # connection's settings) is neither the cause nor the context of ours.
        raise error

    async def _run_script(self, conn: _LoopClient, args: list[str]) -> object:
        """One round trip: the first caller of a loop sends the script itself (EVAL, which also
        caches it in Redis), the others wait for that and then run it by SHA. Without this,
        every concurrent first caller would get a NOSCRIPT and load it again. A script flushed
        later (a Redis restart) is reloaded by redis-py's own NOSCRIPT handling."""
        if not conn.loaded:
            async with conn.loading:
                if not conn.loaded:
                    answer: object = await conn.client.eval(GCRA_SCRIPT, 1, self._key, *args)
                    conn.loaded = True
                    return answer
        return await conn.script(keys=[self._key], args=args)

    async def _fallback_acquire(self, timeout: float | None) -> bool:
        assert self._fallback is not None
        if timeout is not None and timeout < 0:
            return False
        if await self._fallback.acquire(timeout=timeout):
            self._acquired += 1
            return True
        return False

    def _note_down(self) -> None:
        if self._down_until is None:
            logger.warning(
                "Redis rate limiter at %s unavailable; pacing this process locally at %g/s "
                "(fallback_share=%g) until it is back",
                self._where,
                self._rate * float(self._fallback_share or 0),
                self._fallback_share,
            )
        self._down_until = time.monotonic() + self._retry_redis_after

    def _loop_client(self) -> _LoopClient:
        """This loop's redis client (created here, inside the running loop, on first use)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            conn = self._clients.get(id(loop))
            if conn is not None and conn.loop is loop:
                return conn
            for loop_id, other in list(self._clients.items()):
                if other.loop.is_closed():
                    del self._clients[loop_id]
            client = _redis_from_url(self._url, self._redis_timeout)
            conn = _LoopClient(loop, client, client.register_script(GCRA_SCRIPT))
            self._clients[id(loop)] = conn
            return conn

    async def aclose(self) -> None:
        """Close the Redis connections of the running loop (the limiter stays usable)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            conn = self._clients.pop(id(loop), None)
        if conn is not None and conn.loop is loop:
            await conn.client.aclose()

    @property
    def _where(self) -> str:
        return _where(self._url)

    def _scrub(self, text: str) -> str:
        return mask_text(text, _passwords(self._url))

    def __repr__(self) -> str:
        # A constructor that raised leaves `self` in a traceback's locals, half built.
        if not hasattr(self, "_acquired"):
            return "<RedisRateLimiter (not constructed)>"
        return (
            f"RedisRateLimiter({self._url!r}, rate={self._rate:g}, "
            f"burst={self._burst:g}, key={self._key!r})"
        )


def _passwords(url: SecretURL) -> list[Secret]:
    """The passwords in a Redis URL (its netloc's, and a `password=` query parameter's)."""
    try:
        parts = urlsplit(url.reveal())
        found = [parts.password or "", *(v for k, v in parse_qsl(parts.query) if k == "password")]
    except ValueError:
        return []
    return [_Password(value) for value in found if value]


class _Password(Secret):
    """A password found in a Redis URL: masked as `***` (never any of its characters)."""

    __slots__ = ()

    @property
    def mask(self) -> str:
        """Always `***`."""
        return "***"


def _answer(answer: object) -> tuple[int, int]:
    """The script's {wait or -1 - wait, TAT}; a reply of another shape declines the slot."""
    if isinstance(answer, list):
        items = cast("list[object]", answer)  # a RESP array: any values
        if len(items) == 2 and isinstance(items[0], int) and isinstance(items[1], int):
            return items[0], items[1]
    return -1, 0


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions  # lazy: redis is an optional dependency (imported by _redis_from_url)

    return (redis.exceptions.RedisError, OSError)


def _redis_timeouts() -> tuple[type[BaseException], ...]:
    import redis.exceptions  # lazy, as above

    return (asyncio.TimeoutError, redis.exceptions.TimeoutError)


def _redis_from_url(url: SecretURL, timeout: float) -> Redis:
    """A client whose callers wait for one of `REDIS_CONNECTIONS` connections.

    redis-py's default pool raises "Too many connections" past its limit (100 in redis-py 8),
    which a web worker with more requests in flight than that would take for Redis being down.
    An acquire holds a connection for one round trip only, so a few serve thousands per second;
    the wait for one counts in `redis_timeout` like the round trip itself.
    """
    try:
        import redis.asyncio  # lazy: `import finalpos_async` must not need the redis extra
    except ImportError as exc:
        raise ImportError(f"RedisRateLimiter needs redis-py: {INSTALL_HINT}") from exc
    try:
        pool = redis.asyncio.BlockingConnectionPool.from_url(  # pyright: ignore[reportUnknownMemberType]  # **kwargs untyped
            url.reveal(),
            max_connections=REDIS_CONNECTIONS,
            timeout=None,  # the wait is bounded by our wait_for (redis_timeout)
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    except (ValueError, TypeError) as exc:
        error = ValueError(
            f"RedisRateLimiter url {url!r} cannot be used: {mask_text(str(exc), _passwords(url))}"
        )
    else:
        return redis.asyncio.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
    # After the `except`: redis-py's frames (holding the URL in clear) are not chained to ours.
    raise error
