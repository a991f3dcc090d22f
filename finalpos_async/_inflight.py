"""The calls in flight on one client, and how `close()` ends them.

`close()` does not wait for calls in flight: it cancels the task of each one (with a message of
its own), waits for them to unwind, and only then closes the transport. The retry loop turns
that cancellation into `ClientClosedError`, so a caller whose task was never cancelled gets a
typed `FinalPOSError`, never a bare `CancelledError`; a task that *was* cancelled (by its owner,
a timeout, a task group) still gets `CancelledError`.

Why cancel the tasks first rather than let the pool's close fail them: aiohttp's connector close
cancels the futures of requests waiting for a pool slot, which raises `CancelledError` in tasks
that nobody cancelled, and nothing distinguishes that from a real cancellation. Closing the
transport after every call has unwound leaves nothing for it to cancel.

Telling close()'s cancellation from a real one: on Python 3.11+ by the task's cancel count
(`uncancel()`, as `asyncio.timeout` does); on 3.10, which has no count, by the cancel message
(so there, a real cancellation requested after close()'s, before the task next runs, is lost
and the call reported as closed, as two cancellations collapse into one on 3.10 anyway).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Collection
from typing import Any

from ._exceptions import ClientClosedError

__all__ = ["InFlight", "closed_in_flight"]

_ABORT = "finalpos: the client was closed while this call was in flight"

Task = asyncio.Task[Any]


class InFlight:
    """The tasks running a call of one client (shared by its `with_options` copies).

    `enter`/`leave` bracket one call in its task; `abort` (from `close()`) cancels the others
    and waits for them; `claims` tells the retry loop whether a `CancelledError` is that abort.
    Loop-thread only, like the client.
    """

    __slots__ = ("_aborted", "_tasks", "_unsent", "closed")

    def __init__(self) -> None:
        self._tasks: dict[Task, int] = {}  # task -> calls it runs (a hook may nest one)
        self._aborted: set[Task] = set()  # cancelled by abort(), not yet claimed
        self._unsent: set[Task] = set()  # aborted while provably nothing was sent
        self.closed = False

    def enter(self) -> Task | None:
        """Register the current task's call (pair with `leave`); returns the task."""
        task = asyncio.current_task()
        if task is not None:
            tasks = self._tasks
            tasks[task] = tasks.get(task, 0) + 1
        return task

    def leave(self, task: Task | None) -> None:
        """The call registered by `enter` has ended (however it ended)."""
        if task is None:
            return
        tasks = self._tasks
        count = tasks.pop(task, 1) - 1
        if count:
            tasks[task] = count
            return
        if not self._aborted and not self._unsent:  # the usual case: close() has not run
            return
        self._unsent.discard(task)
        if task in self._aborted:
            # Aborted, but the cancellation never reached `claims` (swallowed on the way):
            # take back our request so the task's own cancel count stays right.
            self._aborted.discard(task)
            if sys.version_info >= (3, 11):
                task.uncancel()

    def claims(self, task: Task | None, exc: asyncio.CancelledError) -> bool:
        """True when `exc` is `abort()`'s cancellation alone (nobody else cancelled the task)."""
        if task is None or task not in self._aborted:
            return False
        self._aborted.discard(task)
        if sys.version_info >= (3, 11):
            return task.uncancel() == 0
        return exc.args == (_ABORT,)

    def sent(self, task: Task | None) -> bool:
        """False when `task` was waiting for a connection when aborted (nothing was sent)."""
        return task not in self._unsent

    async def abort(self, *, unsent: Collection[Task], timeout: float) -> None:
        """Cancel every call in flight but the current task's; wait up to `timeout` s for them.

        `unsent`: tasks whose attempt is known to be waiting for a pool slot right now.
        """
        self.closed = True
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current and not task.done()]
        for task in tasks:
            self._aborted.add(task)
            if task in unsent:
                self._unsent.add(task)
            task.cancel(_ABORT)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def closed_in_flight(*, maybe_processed: bool, **context: Any) -> ClientClosedError:
    """The error of a call the client's `close()` ended; `context`: method, url, attempts, key."""
    error = ClientClosedError(
        "the client was closed while this call was in flight (close() does not wait for calls "
        "in flight; await them before closing)"
        + ("; the request may have been sent" if maybe_processed else ""),
        **context,
    )
    error.maybe_processed = maybe_processed
    return error
