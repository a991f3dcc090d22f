"""A bulk run: one operation over many inputs, bounded, streaming, resumable, never twice.

Shape of a run (`BulkJob._run`)::

    [journal: bind to target + operation; spot-check that the target holds what it recorded]
    input --pulled a window at a time, only while a slot is free-->
        journal says created?          -> SKIPPED (or CHANGED when its content differs)
        journal says outcome unknown?  -> held for the lookup (`lookup`), resent
                                          (`resend_unknown`), or reported UNKNOWN again
        else  -> intent journaled (the window in one commit), then
                 task: fields checked, [rate limiter] ->
                       operation(**item, idempotency_key=k, retry_unsafe=False)  (`_call`)
    completed tasks -> record the outcome in the journal -> yield result
    [settle, in rounds while a round makes progress: look up the items whose answer was lost
     (the target is read once per run, then only what it added: `_target_copy`), count the
     found ones as created, send the others again under the same key, and send again the
     items refused before they were processed]

At most `concurrency` tasks exist at any time. Every attempt and re-run of the same job sends an
item under the same idempotency key (`_items`; the job id comes from what the job is). The engine
does not rely on the server honouring it: an intent is journaled before its request leaves, so
after any crash the item is unknown, never new, and an item whose answer was lost is never sent
again blindly (`_outcome`, `_lookup`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
)
from types import TracebackType
from typing import Any, Generic, TypeVar

from .._constants import (
    BULK_INTENT_WINDOW,
    BULK_LOOKUP_FIRST_CHUNK,
    BULK_SETTLE_PAUSE,
    BULK_SETTLE_ROUNDS,
)
from ._call import ItemCall
from ._held import Held
from ._in_flight import ItemTasks, Stop, abandon
from ._intake import Intake
from ._items import Items, KeySpec, read_field
from ._journal import Intent, JournalError, JournalStore, job_id_for
from ._limiter import Limiter
from ._lookup import TargetSearch, spot_check
from ._outcome import FatalWatch, Pending, not_processed, result_of, send_item
from ._results import BulkReport, ItemResult, ItemStatus, describe_error
from ._stores import journal_store
from ._target import Binding, operation_name
from ._target_copy import Lister, TargetCopy

__all__ = ["BulkJob"]

_T = TypeVar("_T")

log = logging.getLogger("finalpos.bulk")


class BulkJob(Generic[_T]):
    """One bulk run: iterate it for results as they finish, or await it for the final report.

    `report` holds live counters (`BulkReport`) while it runs. `stop()` ends it gracefully: no new
    items are pulled, in-flight ones get `drain_timeout` seconds to finish, then the rest are
    yielded as `UNKNOWN` (cancelled in flight). Cancelling the task that iterates it does the same
    drain (without yielding), records what finished in the journal, and re-raises. A job runs
    once.
    """

    def __init__(
        self,
        operation: Callable[..., Awaitable[_T]],
        items: Items,
        *,
        concurrency: int,
        limiter: Limiter | None,
        journal: str | os.PathLike[str] | JournalStore | None,
        client_limiter: Limiter | None = None,
        key: KeySpec,
        content: KeySpec = None,
        digest: KeySpec = None,
        job_id: str | None,
        drain_timeout: float,
        lookup: Lister | None = None,
        lookup_key: KeySpec = None,
        lookup_by: str = "key",
        retrieve: Callable[[str], Awaitable[Any]] | None = None,
        resend_unknown: bool = False,
        stop_on_fatal: bool = True,
        binding: Binding | None = None,
        rotated_credentials: bool = False,
    ) -> None:
        self.report = BulkReport()
        self._items = items
        self._concurrency = concurrency
        self._limiter = limiter
        self._client_limiter = client_limiter
        self._journal = (
            journal_store(journal) if isinstance(journal, (str, os.PathLike)) else journal
        )
        # A journal opened here from a path or URL is this job's to close; a store is the caller's.
        self._owns_journal = isinstance(journal, (str, os.PathLike))
        self._content = content
        self._job_id = job_id
        self._drain_timeout = drain_timeout
        self._lookup_by_content = lookup_by == "content"
        # What this run read of the target (one pass, then what was added), for every lookup.
        self._target = (
            TargetCopy(
                lookup,
                lookup_key if lookup_key is not None else key,
                self.report,
                by_content=self._lookup_by_content,
            )
            if lookup is not None
            else None
        )
        self._retrieve = retrieve
        self._resend_unknown = resend_unknown
        self._stop_on_fatal = stop_on_fatal
        self._binding = binding or Binding(None, None, operation_name(operation), "content")
        # Errors name the operation as the journal does (`customers.create`), sync or async.
        self._call = ItemCall(operation, self._binding.operation, resend_unknown=resend_unknown)
        self._started = False
        self._bound = False
        self._aborted = False
        self._stop = Stop(drain_timeout)
        self._iterator: AsyncGenerator[ItemResult[_T], None] | None = None
        self._watch = FatalWatch(concurrency)
        self._rotated_credentials = rotated_credentials
        # Held for the settle rounds: items whose answer was lost (to look up), and items
        # refused before they were processed (429, not reached: to send again).
        self._held = Held(resend_unknown=resend_unknown, can_look_up=lookup is not None)
        # Items whose intent is journaled and whose outcome is not yet: key -> what the
        # journal held before (`Pending.prior`), restored if the item is not sent after all.
        self._intended: dict[str, str | None] = {}
        self._journal_error: JournalError | None = None
        self._intake = Intake(
            key=key,
            content=content,
            digest=digest,
            journal=self._journal,
            resend_unknown=resend_unknown,
            deferred=self._held.lost if lookup is not None else None,
        )

    @property
    def concurrency(self) -> int:
        """Items in flight at most (after capping at the pool size)."""
        return self._concurrency

    @property
    def journal(self) -> JournalStore | None:
        """The journal this run records into, if any."""
        return self._journal

    @property
    def rate_limiter(self) -> Limiter | None:
        """The limiter pacing this run: its own `rate_limit`, else the client's (None: no cap)."""
        return self._limiter if self._limiter is not None else self._client_limiter

    @property
    def job_id(self) -> str | None:
        """The job identity in every idempotency key (known once the run has started)."""
        return self._job_id

    def open_journal(self) -> JournalStore | None:
        """Open and bind the journal now (idempotent; the run does it when it starts).

        Call it before the run to have a `JournalMismatchError` or `JournalLockedError` raised
        before anything else happens, and to read the journal (`JournalStore.lookup`) beforehand.
        """
        journal = self._journal
        if journal is not None and not self._bound:
            try:
                journal.open()
                self._job_id = journal.bind(
                    self._binding.resolve(),
                    job_id=self._job_id,
                    rotated_credentials=self._rotated_credentials,
                )
            except BaseException:
                if self._owns_journal:
                    # Refused: release the file (and its lock) now, or the next run on it would
                    # find it locked by this job until the garbage collector closes it.
                    journal.close()
                raise
            self._bound = True
        return journal

    def stop(self, *, drain_timeout: float | None = None) -> None:
        """Stop pulling new items; in-flight ones get `drain_timeout` seconds to finish.

        `drain_timeout` defaults to the run's. Safe to call from a signal handler installed
        with `loop.add_signal_handler`, and more than once: a later call can only bring the
        deadline closer (`stop(drain_timeout=0)` cancels what is in flight now).
        """
        self._stop.request(drain_timeout)

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called (or the run was cancelled or aborted)."""
        return self._stop.requested

    # -- consuming -------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[ItemResult[_T]]:
        if self._started:
            raise RuntimeError("a BulkJob runs once; call client.bulk.run(...) again for a new run")
        self._started = True
        self._iterator = self._run()
        return self._iterator

    async def wait(self) -> BulkReport:
        """Run to the end, dropping the per-item results; returns the report."""
        async for _ in self:
            pass
        return self.report

    def __await__(self) -> Generator[Any, None, BulkReport]:
        return self.wait().__await__()

    async def __aenter__(self) -> BulkJob[_T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Leaving the block early (break, error) ends the run here, draining in-flight items,
        # instead of leaving it to the garbage collector.
        iterator = self._iterator
        if iterator is not None:
            await iterator.aclose()

    # -- the run ---------------------------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[ItemResult[_T], None]:
        report = self.report
        report.start()
        journal = self._journal
        try:
            if journal is not None:
                self.open_journal()
                if self._retrieve is not None:
                    await spot_check(journal, self._retrieve)
            if self._job_id is None:
                self._job_id = job_id_for(self._binding.resolve())
            # Nested generators are closed explicitly: a consumer leaving early closes this one
            # at a `yield`, and `_pump` must then drain and record what it has in flight now,
            # not whenever the garbage collector finalizes it (after the journal is closed).
            first_pass = await self._first_pass()
            async with (
                contextlib.aclosing(self._intake.pull(self._items, self._job_id)) as source,
                contextlib.aclosing(first_pass(source)) as results,
            ):
                async for result in results:
                    yield result
            async with contextlib.aclosing(self._settle()) as settled:
                async for result in settled:
                    yield result
            # Stopped before they were settled: they keep their outcome (unknown, or refused
            # before processing), recorded so, for a later run. Taken out one at a time: one
            # finished here is not finished again if the consumer leaves at this `yield`.
            while (left := self._held.take_one()) is not None:
                self._finish(left)
                yield left
            if self._aborted:
                report.outcome = "aborted"
            else:
                report.outcome = "stopped" if self._stop.requested else "completed"
        except BaseException:
            if report.outcome == "running":
                report.outcome = "cancelled"
            raise
        finally:
            # Cancelled or closed early with items held: they end as they stand here
            # (counted and journaled, not yielded), or a re-run would send them as new.
            for result in self._held.drain():
                self._finish(result)
            report.finish()
            if self._target is not None:
                self._target.close()
            if journal is not None:
                try:
                    if self._owns_journal:
                        journal.close()
                    else:
                        journal.flush()
                except JournalError as exc:
                    self._journal_error = self._journal_error or exc
        if self._journal_error is not None:
            # Every result was yielded; the outcomes that could not be written stay `sending`
            # in the journal, so the next run looks them up rather than sending them as new.
            raise self._journal_error

    async def _first_pass(
        self,
    ) -> Callable[[AsyncIterator[Pending | ItemResult[_T]]], AsyncGenerator[ItemResult[_T], None]]:
        """How the input is sent: as it comes (`_pump`), unless the journal is new (or empty)
        and the target holds records, which an earlier run of this job may have made: then
        every item is looked up first in the run's copy of the target (read here): by key as it
        is pulled (`Intake`), by content `_look_up_first`. Not with `resend_unknown` (the server
        replays). A target that cannot be listed gets nothing."""
        journal, target = self._journal, self._target
        if journal is None or target is None or self._resend_unknown or journal.has_items():
            return self._pump
        try:
            self.report.phase = "reading the target"
            await target.catch_up()
        except Exception as exc:
            reason = FatalWatch.reason_to_stop_before_sending(exc)  # as the first send would
            self._abort(reason or f"the target's records cannot be listed: {describe_error(exc)}")
            return self._pump
        finally:
            self.report.phase = "sending"
        if target.count == 0:
            return self._pump
        if self._lookup_by_content:
            return self._look_up_first
        self._intake.target = target
        return self._pump

    async def _look_up_first(
        self, source: AsyncIterator[Pending | ItemResult[_T]]
    ) -> AsyncGenerator[ItemResult[_T], None]:
        """The first pass of `_first_pass` by content: the items are held for the lookup,
        `BULK_LOOKUP_FIRST_CHUNK` at a time (memory stays bounded), and each chunk is settled
        (matched against the copy of the target; the ones not found are sent) before the next
        is read."""
        report = self.report
        exhausted = False
        while not exhausted and not self._stop.requested:
            count = 0
            while count < BULK_LOOKUP_FIRST_CHUNK:
                try:
                    pulled = await source.__anext__()
                except StopAsyncIteration:
                    exhausted = True
                    break
                report.submitted += 1
                if isinstance(pulled, ItemResult):
                    self._finish(pulled)
                    yield pulled
                elif pulled.key not in self._held.lost:
                    self._held.lost[pulled.key] = pulled
                    count += 1
            async with contextlib.aclosing(self._settle()) as settled:
                async for result in settled:
                    yield result
            if self._held.lost and not self._stop.requested:  # the lookup failed: read no more
                self._abort("the target's records cannot be listed, so no row can be looked up")

    async def _pump(
        self, source: AsyncIterator[Pending | ItemResult[_T]]
    ) -> AsyncGenerator[ItemResult[_T], None]:
        """Send what `source` yields, `concurrency` at a time; yield every result as it ends.

        Items are pulled a window at a time and their intents journaled in one commit before
        the first of them is sent (`_intend`).
        """
        report = self.report
        in_flight: ItemTasks[_T] = ItemTasks()
        ready: collections.deque[Pending] = collections.deque()
        window: list[Pending] = []
        exhausted = False
        try:
            while True:
                if not ready and not exhausted and not self._stop.requested:
                    while not self._stop.requested and self._room(in_flight, window):
                        try:
                            pulled = await source.__anext__()
                        except StopAsyncIteration:
                            exhausted = True
                            break
                        report.submitted += 1
                        if isinstance(pulled, ItemResult):
                            self._finish(pulled)
                            yield pulled
                        elif pulled.key in self._held.lost:
                            pass  # resolved when settling
                        elif self._journal is None:  # no intent to journal: send it now
                            in_flight.start(self._send(pulled))
                        else:
                            window.append(pulled)
                    if self._intend(window):
                        ready.extend(window)
                        window.clear()
                    while window:
                        # Their intents could not be journaled: not sent.
                        result = result_of(window.pop(0), ItemStatus.CANCELLED)
                        self._finish(result)
                        yield result
                while ready and not self._stop.requested and len(in_flight) < self._concurrency:
                    in_flight.start(self._send(ready.popleft()))
                while ready and self._stop.requested:
                    # Journaled as about to be sent, but never sent.
                    result = result_of(ready.popleft(), ItemStatus.CANCELLED)
                    self._finish(result)
                    yield result
                if not in_flight:
                    if exhausted or self._stop.requested:
                        break
                    continue
                for task in await self._stop.finished(in_flight):
                    result = task.result()
                    self._check_fatal(result)
                    if not self._stop.requested and self._held.keep(
                        result, self._intended.get(result.key)
                    ):
                        continue
                    self._finish(result)
                    yield result
        except BaseException:
            # Cancelled, closed early, or the input raised: stop pulling and drain (bounded).
            drain = self._drain_timeout
            if self._stop.requested:  # stop() came first: its deadline still holds
                drain = min(drain, self._stop.remaining())
            self._stop.requested = True
            for pending in (*window, *ready):
                self._finish(result_of(pending, ItemStatus.CANCELLED))
            for result in await abandon(in_flight.tasks, drain):
                self._finish(result)
            self.report.cancelled += len(in_flight)  # lost to a second cancel while draining
            in_flight.tasks.clear()
            raise

    def _room(self, in_flight: ItemTasks[_T], window: list[Pending]) -> bool:
        """Whether to pull one more item now: to fill a window that shares one intent commit,
        or, with no journal, a free slot (the input is read no further ahead than needed)."""
        if self._journal is None:
            return len(in_flight) < self._concurrency
        return len(window) < max(self._concurrency, BULK_INTENT_WINDOW)

    def _intend(self, window: list[Pending]) -> bool:
        """Journal the intents of `window` (one commit) before any of it is sent.

        False when they cannot be written: the run stops, and those items are not sent.
        """
        if not window:
            return False
        journal = self._journal
        if journal is not None and self._journal_error is None:
            try:
                journal.record_intents(Intent(p.key, p.digest, p.idempotency_key) for p in window)
            except JournalError as exc:
                self._journal_failed(exc)
        if self._journal_error is not None:
            return False
        for pending in window:
            self._intended[pending.key] = pending.prior
        return True

    def _journal_failed(self, error: JournalError) -> None:
        """The journal cannot be written: start nothing more (every send needs its intent)."""
        if self._journal_error is None:
            self._journal_error = error
            self._abort(f"the journal cannot be written: {error}")

    async def _send(self, pending: Pending) -> ItemResult[_T]:
        return await send_item(self._call, pending, limiter=self._limiter)

    async def _settle(self) -> AsyncGenerator[ItemResult[_T], None]:
        """Rounds after the main pass, while one makes progress: look up the held items whose
        answer was lost (in the run's copy of the target, brought up to date: found ones are
        created), then send the rest again under the same key, with the items refused before
        processing."""
        report = self.report
        for round_ in range(BULK_SETTLE_ROUNDS):
            held = self._held
            if self._stop.requested or not held:
                return
            settled = report.done
            if held.lost:
                assert self._target is not None
                report.phase = "looking up"
                report.lookup_pending = len(held.lost)
                report.lookup_found = 0
                search = TargetSearch(
                    self._target,
                    report,
                    by_content=self._lookup_by_content,
                    content=lambda p: read_field(self._content, p.item, p.index, "content"),
                    created=self._intake.created_counts,
                )
                finding = search.find(held.lost, lambda: self._stop.requested)
                async with contextlib.aclosing(finding) as found:
                    async for result in found:
                        self._finish(result)
                        yield result
                if search.failed or self._stop.requested:
                    return  # they stay unknown: not found is not known
            # Not in the target (or refused before processing): send them again, same key.
            again = held.to_send_again()
            if not again:
                return
            if round_ > 0:
                # A pause before sending again what a round just saw fail: a transient
                # outage gets time to pass. Interrupted by stop().
                report.phase = "waiting"
                await self._stop.pause(BULK_SETTLE_PAUSE * 2 ** (round_ - 1))
            report.phase = "resending"
            sent = 0

            async def source(
                items: list[Pending] = again,
            ) -> AsyncGenerator[Pending | ItemResult[_T], None]:
                nonlocal sent
                for pending in items:
                    sent += 1
                    report.submitted -= 1  # counted when first pulled; `_pump` counts it again
                    yield pending

            try:
                async with contextlib.aclosing(self._pump(source())) as results:
                    async for result in results:
                        yield result
            finally:
                # Stopped (or closed) before sending them again: they are not in the target
                # (looked up, or refused before processing); counted as never sent, and a
                # re-run sends them.
                for pending in again[sent:]:
                    note = "not in the target, and the run stopped before sending it again"
                    self._finish(result_of(pending, ItemStatus.CANCELLED, note=note))
            report.phase = "sending"
            if report.done == settled and not held.lost:
                return  # nothing settled in this round, and nothing is left to look up

    def _finish(self, result: ItemResult[_T]) -> None:
        """Count a finished item and record it in the journal (if there is anything to record)."""
        self.report.count(result)
        status = result.status
        if self._lookup_by_content:
            self._intake.count_created(result)
        intended = result.key in self._intended
        prior = self._intended.pop(result.key, None)
        journal = self._journal
        if journal is None or not result.idempotency_key:
            return
        if status in (ItemStatus.SKIPPED, ItemStatus.CHANGED):
            return  # the journal already has its record
        if status is ItemStatus.CANCELLED or (
            status is ItemStatus.FAILED and not_processed(result.error)
        ):
            # Never sent, or refused before the target did anything with it: its intent (if
            # one was journaled) gives way to what the journal held before.
            if not intended or self._journal_error is not None:
                return
            if prior is None:
                journal.withdraw(result.key)
                return
            status = ItemStatus(prior)
        self._record(result, status)

    def _record(self, result: ItemResult[_T], status: ItemStatus) -> None:
        journal = self._journal
        if journal is None or self._journal_error is not None:
            return  # after a write failure: those items stay `sending`, unknown next run
        try:
            journal.record(
                result.key,
                status.value,
                digest=result.digest,
                idempotency_key=result.idempotency_key,
                created_id=result.created_id,
                attempts=result.attempts,
                error=result.reason or None,
            )
        except JournalError as exc:
            self._journal_failed(exc)

    def _check_fatal(self, result: ItemResult[_T]) -> None:
        """Stop starting items on errors no item can fix (`stop_on_fatal`, see `FatalWatch`)."""
        if not self._stop_on_fatal or self._aborted:
            return
        reason = self._watch.reason_to_stop(result)
        if reason is not None:
            self._abort(reason)

    def _abort(self, reason: str) -> None:
        self._aborted = True
        self.report.stop_reason = reason
        log.error("bulk run stopped: %s", reason)
        self.stop()
