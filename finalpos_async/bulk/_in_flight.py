"""A bulk run's in-flight items: waiting for them, stopping them, ending them early."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, TypeVar, cast

from ._results import ItemResult

__all__ = ["Stop", "abandon"]

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

    def request(self, drain_timeout: float | None = None) -> None:
        """Stop; in-flight items get `drain_timeout` seconds (default: the run's)."""
        deadline = time.monotonic() + (
            self._drain_timeout if drain_timeout is None else max(0.0, drain_timeout)
        )
        if self.requested:
            deadline = min(deadline, self.deadline)
        self.requested = True
        self.deadline = deadline
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def remaining(self) -> float:
        """Seconds left until the drain deadline (0 when past it)."""
        return max(0.0, self.deadline - time.monotonic())

    async def finished(
        self, in_flight: set[asyncio.Future[ItemResult[_T]]]
    ) -> set[asyncio.Future[ItemResult[_T]]]:
        """Wait until an item finishes, a stop is requested, or the drain deadline passes; at
        the deadline, what is left is cancelled (each task turns that into its result)."""
        wakeup = self._wake_future()
        waiters: set[asyncio.Future[Any]] = {*in_flight, wakeup}
        timeout = self.remaining() if self.requested else None
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        done.discard(wakeup)
        if not done and self.requested and time.monotonic() >= self.deadline:
            for task in in_flight:
                task.cancel()
            await asyncio.wait(in_flight)
            return set(in_flight)
        return cast("set[asyncio.Future[ItemResult[_T]]]", done)

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
