"""`keep_lease`: renew a chunk's lease while its rows are sent, and stop them in time when it
cannot be renewed.

The lease is renewed every third of its length by a thread of its own, so a worker whose event
loop is busy (checking a large file, a slow journal call) keeps its lease all the same. When a
renewal finds the chunk gone (`LeaseLostError`), or none has succeeded by `expires - margin`
(the database does not answer, or the process was paused), the callbacks registered with
`LeaseHolder.on_lost` run on the event loop: the import stops and cancels what it has in
flight. `LeaseHolder.guard`, a client middleware, refuses any HTTP attempt from then on, so
nothing of this worker is on its way when the lease runs out and another worker may take the
chunk over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable

from .._middleware import CallNext
from .._request import Request
from .._transport import TransportResponse
from ._journal import JournalError
from ._leases import ChunkBoard, Lease, LeaseLostError

__all__ = ["LeaseHolder", "keep_lease"]

log = logging.getLogger("finalpos.bulk")

RETRY_RENEWAL = 1.0  # seconds between renewals after one failed for another reason


class LeaseHolder:
    """The lease as last renewed, and whether it was lost (see `keep_lease`)."""

    def __init__(self, lease: Lease, loop: asyncio.AbstractEventLoop) -> None:
        self.lease = lease
        self.lost: str | None = None
        """Why the lease was lost (None while it is held)."""
        self._loop = loop
        self._callbacks: list[Callable[[], None]] = []

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the event loop when the lease is lost (at once if it is)."""
        if self.lost is not None:
            callback()
        else:
            self._callbacks.append(callback)

    @property
    def sendable(self) -> bool:
        """A request may leave now: the lease is held, with more than its margin left."""
        lease = self.lease
        return self.lost is None and time.monotonic() < lease.expires - lease.margin

    async def guard(self, request: Request, call_next: CallNext) -> TransportResponse:
        """A client middleware: an HTTP attempt goes out only while `sendable` (else
        `LeaseLostError`: the attempt is not sent, and its row is not created by this worker)."""
        if not self.sendable:
            raise LeaseLostError(
                f"{self.lease.label}: its lease is lost or about to run out; not sent from here",
                path="",
            )
        return await call_next(request)

    def lose(self, why: str) -> None:
        """Mark the lease lost (`why`); the callbacks run on the event loop (once). Safe to
        call from any thread."""
        if self.lost is not None:
            return
        self.lost = why
        log.warning("%s: %s", self.lease.label, why)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to stop
            self._loop.call_soon_threadsafe(self._run_callbacks)

    def _run_callbacks(self) -> None:
        for callback in self._callbacks:
            callback()


@contextlib.asynccontextmanager
async def keep_lease(board: ChunkBoard, lease: Lease) -> AsyncGenerator[LeaseHolder, None]:
    """Renew `lease` while the block runs (see the module); yields its `LeaseHolder`."""
    holder = LeaseHolder(lease, asyncio.get_running_loop())
    done = threading.Event()
    thread = threading.Thread(
        target=_renew, args=(board, holder, done), name=f"finalpos {lease.label}", daemon=True
    )
    thread.start()
    watchdog = asyncio.ensure_future(_watch(holder))
    try:
        yield holder
    finally:
        done.set()
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
        # Bounded: a renewal stuck on a database that does not answer must not hold the worker
        # (the thread is a daemon; its lease runs out by itself).
        await asyncio.to_thread(thread.join, lease.seconds)


async def _watch(holder: LeaseHolder) -> None:
    """On the event loop: the lease's cutoff passed with no renewal (the renewing thread waits
    on a database that does not answer): lost."""
    while holder.lost is None:
        lease = holder.lease
        await asyncio.sleep(max(0.0, lease.expires - lease.margin - time.monotonic()))
        if holder.lease is lease and not holder.sendable:
            holder.lose("its lease could not be renewed in time: stopping its rows now")


def _renew(board: ChunkBoard, holder: LeaseHolder, done: threading.Event) -> None:
    """The renewing thread: until `done`, or the lease is lost."""
    renew_at = time.monotonic() + holder.lease.seconds / 3
    while True:
        lease = holder.lease
        cutoff = lease.expires - lease.margin
        now = time.monotonic()
        if now >= cutoff:
            holder.lose("its lease could not be renewed in time: stopping its rows now")
            return
        if done.wait(max(0.0, min(renew_at, cutoff) - now)):
            return
        if time.monotonic() >= cutoff:
            continue  # lost: said at the top
        try:
            renewed = board.renew(lease)
        except LeaseLostError as exc:
            holder.lose(str(exc))
            return
        except JournalError as exc:
            log.warning("%s: renewing its lease failed (%s); trying again", lease.label, exc)
            renew_at = time.monotonic() + RETRY_RENEWAL
            continue
        holder.lease = renewed
        renew_at = time.monotonic() + renewed.seconds / 3
