"""Carrying a sync bulk run's items and results across the thread boundary, flat both ways.

The caller's thread pulls its iterable in batches (`Feed`) and hands them to the engine's async
input on the loop (`FeedSource`), which asks for more (`WANT`) only when it runs dry; results
come back through `Channel`, which holds at most its capacity of them unacknowledged, so the
engine stops pulling inputs until the caller catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["NOTHING", "WANT", "Channel", "End", "Feed", "FeedSource"]


class End:
    """The last message of a run: how the pump task ended."""

    __slots__ = ("cancelled", "error")

    def __init__(self, error: BaseException | None, *, cancelled: bool) -> None:
        self.error = error
        self.cancelled = cancelled


WANT = object()  # the engine wants more input (caller: pull a batch and feed it)
NOTHING = object()  # nothing arrived within the poll interval


class Channel:
    """Loop-to-caller messages; at most `capacity` results unacknowledged by the caller.

    The loop side `put`s results (waiting while the caller is `capacity` behind) and `post`s
    control messages (never waits). The caller takes everything queued in one go and
    acknowledges it with one `call_soon_threadsafe`, so a busy run costs one loop wakeup per
    batch of results, not per result.
    """

    def __init__(self, capacity: int) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._capacity = capacity
        self._cond = threading.Condition(threading.Lock())
        self._queued: deque[Any] = deque()  # guarded by _cond
        self._local: deque[Any] = deque()  # caller thread only
        self._unacked = 0  # loop thread only
        self._space: asyncio.Event | None = None  # loop thread only

    async def put(self, result: object) -> None:
        """On the loop: queue one result, first waiting for room if the caller is behind."""
        while self._unacked >= self._capacity:
            if self._space is None:
                self._space = asyncio.Event()
            self._space.clear()
            await self._space.wait()
        self._unacked += 1
        self.post(result)

    def post(self, message: object) -> None:
        """On the loop: queue a message without waiting (control messages, and `put`)."""
        with self._cond:
            self._queued.append(message)
            self._cond.notify()

    def _acked(self, count: int) -> None:
        self._unacked -= count
        if self._space is not None:
            self._space.set()

    def get(self, timeout: float) -> Any:
        """In the caller: the next message, or `NOTHING` after `timeout` seconds without one."""
        if not self._local:
            with self._cond:
                if not self._queued and not self._cond.wait(timeout):
                    return NOTHING
                self._local, self._queued = self._queued, self._local
            acks = sum(1 for m in self._local if m is not WANT and not isinstance(m, End))
            if acks and self.loop is not None:
                with contextlib.suppress(RuntimeError):  # loop closed: nobody waits for room
                    self.loop.call_soon_threadsafe(self._acked, acks)
        if not self._local:
            return NOTHING
        return self._local.popleft()


class Feed:
    """Carries the caller's sync iterable to the engine: pulled in the caller's thread."""

    def __init__(self, items: Iterable[Mapping[str, Any]]) -> None:
        self._items = items
        self._iterator: Iterator[Mapping[str, Any]] | None = None
        self.batch = 1
        self.source = FeedSource(self)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.channel: Channel | None = None

    def bind(self, loop: asyncio.AbstractEventLoop, channel: Channel) -> None:
        self.loop = loop
        self.channel = channel

    def fill(self) -> None:
        """In the caller: pull up to `batch` items and hand them to the loop."""
        batch: list[Mapping[str, Any]] = []
        ended = False
        error: BaseException | None = None
        try:
            if self._iterator is None:
                self._iterator = iter(self._items)
            for _ in range(self.batch):
                batch.append(next(self._iterator))
        except StopIteration:
            ended = True
        except Exception as exc:  # the input's own error: the engine raises it, as in async
            error = exc
        assert self.loop is not None
        with contextlib.suppress(RuntimeError):  # loop closed: the caller notices on its poll
            self.loop.call_soon_threadsafe(self.source.deliver, batch, ended, error)


class FeedSource:
    """The engine's async input: items fed by the caller; asks for more when it runs dry."""

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        self._inbox: deque[Mapping[str, Any]] = deque()
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def __aiter__(self) -> FeedSource:
        return self

    async def __anext__(self) -> Mapping[str, Any]:
        while not self._inbox:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            assert self._feed.channel is not None
            self._feed.channel.post(WANT)
            await self._waiter
        return self._inbox.popleft()

    def deliver(
        self, batch: list[Mapping[str, Any]], ended: bool, error: BaseException | None
    ) -> None:
        """On the loop: what the caller pulled."""
        self._inbox.extend(batch)
        self._ended = self._ended or ended
        if error is not None:
            self._error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
