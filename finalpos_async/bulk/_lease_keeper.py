"""`keep_lease`: renew a chunk's lease while its rows are sent, and stop them in time when
it cannot be renewed.

The lease is renewed every third of its length, from a thread (a database that does not answer
must not hold up the event loop). When a renewal finds the chunk gone (`LeaseLostError`), or
none has succeeded by `expires - margin` (the database is unreachable, or this process was
paused), the callbacks registered with `LeaseHolder.on_lost` run at once: the import stops and
cancels what it has in flight, so nothing of this worker is on its way when the lease runs out
and another worker may take the chunk over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable

from ._journal import JournalError
from ._leases import ChunkBoard, Lease, LeaseLostError

__all__ = ["LeaseHolder", "keep_lease"]

log = logging.getLogger("finalpos.bulk")

RETRY_RENEWAL = 1.0  # seconds between renewals after one failed for another reason


class LeaseHolder:
    """The lease as last renewed, and whether it was lost (see `keep_lease`)."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.lost: str | None = None
        """Why the lease was lost (None while it is held)."""
        self._callbacks: list[Callable[[], None]] = []

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the lease is lost (at once if it already is)."""
        if self.lost is not None:
            callback()
        else:
            self._callbacks.append(callback)

    def lose(self, why: str) -> None:
        """Mark the lease lost (`why`) and run the callbacks (once)."""
        if self.lost is None:
            self.lost = why
            log.warning("%s: %s", self.lease.label, why)
            for callback in self._callbacks:
                callback()


@contextlib.asynccontextmanager
async def keep_lease(board: ChunkBoard, lease: Lease) -> AsyncGenerator[LeaseHolder, None]:
    """Renew `lease` while the block runs (see the module); yields its `LeaseHolder`."""
    holder = LeaseHolder(lease)
    task = asyncio.ensure_future(_renew(board, holder))
    try:
        yield holder
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _renew(board: ChunkBoard, holder: LeaseHolder) -> None:
    renew_at = time.monotonic() + holder.lease.seconds / 3
    while True:
        lease = holder.lease
        cutoff = lease.expires - lease.margin
        now = time.monotonic()
        if now >= cutoff:
            holder.lose("its lease could not be renewed in time: stopping its rows now")
            return
        await asyncio.sleep(max(0.0, min(renew_at, cutoff) - now))
        if time.monotonic() >= cutoff:
            continue  # lost: said at the top
        try:
            renewed = await asyncio.wait_for(
                asyncio.to_thread(board.renew, lease), timeout=cutoff - time.monotonic()
            )
        except LeaseLostError as exc:
            holder.lose(str(exc))
            return
        except (JournalError, asyncio.TimeoutError) as exc:
            log.warning("%s: renewing its lease failed (%s); trying again", lease.label, exc)
            renew_at = time.monotonic() + RETRY_RENEWAL
            continue
        holder.lease = renewed
        renew_at = time.monotonic() + renewed.seconds / 3
