"""A bulk run's in-flight items: waiting for them, stopping them, ending them early."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

from ._results import ItemResult

__all__ = ["ItemTasks", "Stop", "abandon"]

_T = TypeVar("_T")

log = logging.getLogger("finalpos.bulk")


async def abandon(
    in_flight: set[asyncio.Future[ItemResult[_T]]], drain: float
) -> list[ItemResult[_T]]:
    """Give in-flight items `drain` seconds to finish, cancel the rest; returns the results of
    those that ended, and takes them out of `in_flight` (what is left there was lost to a second
    cancel while cancelling: it cannot be counted as anything but cancelled)."""
    if not in_flight:
        return []
    pending: set[asyncio.Future[ItemResult[_T]]] = set(in_flight)
    try:
        _, pending = await asyncio.wait(in_flight, timeout=drain)
    except BaseException:
        # Cancelled again while draining: stop waiting, cancel everything now.
        pending = {task for task in in_flight if not task.done()}
    for task in pending:
        task.cancel()
    if pending:
        try:
            await asyncio.wait(pending)
        except BaseException:
            log.warning("bulk run: %d in-flight items abandoned while cancelling", len(pending))
    ended = [task for task in in_flight if task.done() and not task.cancelled()]
    in_flight.difference_update(ended)
    return [task.result() for task in ended]


class ItemTasks(Generic[_T]):
    """The tasks of the items in flight, and a queue of those that finished, in the order they
    finished: waiting for the next one costs the same with 1 or 1,000 in flight (waiting on
    every task at each turn costs a callback per task added and removed)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Future[ItemResult[_T]]] = set()
        self._done: collections.deque[asyncio.Future[ItemResult[_T]]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self.tasks)

    def start(self, item: Coroutine[Any, Any, ItemResult[_T]]) -> None:
        """Run `item` in a task of its own."""
        task = asyncio.ensure_future(item)
        task.add_done_callback(self._finished)
        self.tasks.add(task)

    def _finished(self, task: asyncio.Future[ItemResult[_T]]) -> None:
        self._done.append(task)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take_done(self) -> list[asyncio.Future[ItemResult[_T]]]:
        """The tasks that finished since the last call (taken out of `tasks`)."""
        done: list[asyncio.Future[ItemResult[_T]]] = []
        while self._done:
            task = self._done.popleft()
            if task in self.tasks:  # not taken already (by `abandon`)
                self.tasks.discard(task)
                done.append(task)
        return done

    def waiter(self) -> asyncio.Future[None]:
        """A future completed when the next task finishes (or by whoever else holds it)."""
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter


class Stop:
    """A run's stop request: whether it was made, and until when in-flight items may finish.

    `request()` is safe from a signal handler installed with `loop.add_signal_handler`, and
    more than once: a later request can only bring the deadline closer. The waits (`finished`,
    `pause`) wake at once when a request is made.
    """

    def __init__(self, drain_timeout: float) -> None:
        self._drain_timeout = drain_timeout
        self.requested = False
        self.deadline = 0.0
        self._wakeup: asyncio.Future[None] | None = None
        self._waiting: asyncio.Future[None] | None = None  # `finished`'s, woken by a request

    def request(self, drain_timeout: float | None = None) -> None:
        """Stop; in-flight items get `drain_timeout` seconds (default: the run's)."""
        deadline = time.monotonic() + (
            self._drain_timeout if drain_timeout is None else max(0.0, drain_timeout)
        )
        if self.requested:
            deadline = min(deadline, self.deadline)
        self.requested = True
        self.deadline = deadline
        for wakeup in (self._wakeup, self._waiting):
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(None)

    def remaining(self) -> float:
        """Seconds left until the drain deadline (0 when past it)."""
        return max(0.0, self.deadline - time.monotonic())

    async def finished(self, in_flight: ItemTasks[_T]) -> list[asyncio.Future[ItemResult[_T]]]:
        """Wait until an item finishes, a stop is requested, or the drain deadline passes; at
        the deadline, what is left is cancelled (each task turns that into its result)."""
        done = in_flight.take_done()
        if done:
            return done
        waiter = in_flight.waiter()
        self._waiting = waiter  # a stop request (a closer deadline) wakes it too
        try:
            if not self.requested:
                await waiter
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(waiter, self.remaining())
        finally:
            self._waiting = None
        done = in_flight.take_done()
        if not done and self.requested and time.monotonic() >= self.deadline:
            for task in in_flight.tasks:
                task.cancel()
            if in_flight.tasks:
                await asyncio.wait(in_flight.tasks)
            done = in_flight.take_done()
        return done

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less when a stop is requested meanwhile."""
        if self.requested:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._wake_future()), seconds)

    def _wake_future(self) -> asyncio.Future[None]:
        """The future a request completes (a new one once a request completed the last)."""
        if self._wakeup is None or self._wakeup.done():
            self._wakeup = asyncio.get_running_loop().create_future()
        return self._wakeup
