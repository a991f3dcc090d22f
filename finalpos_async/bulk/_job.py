"""A bulk run: one operation over many inputs, bounded, streaming, resumable, never twice.

Shape of a run (`BulkJob._run`)::

    [journal: bind to target + operation; spot-check that the target holds what it recorded]
    input --pull one at a time, only while a slot is free-->
        journal says created?          -> SKIPPED (or CHANGED when its content differs)
        journal says outcome unknown?  -> looked up later (`lookup`), resent (`resend_unknown`),
                                          or reported UNKNOWN again
        else  -> task: [rate limiter] -> operation(**item, idempotency_key=k)
    asyncio.wait(in-flight, FIRST_COMPLETED) -> record in journal -> yield result
    [lookup: one streamed pass over the target for items whose answer was lost; found ones
     count as created, the others are sent again]

At most `concurrency` tasks exist at any time, so memory does not grow with the input. Every
attempt and every re-run of the same job sends an item under the same idempotency key
(`_items`). The engine does not rely on the server honouring it: inside a run, a POST is
repeated by the client only where it provably did not take effect (`safe_retries_only`), and an
item whose answer was lost is never sent again blindly (`_outcome`, `_lookup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Mapping,
)
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import attrs

from ._items import (
    ContentIdentities,
    Items,
    KeySpec,
    content_digest,
    identity_rule,
    item_idempotency_key,
    read_field,
)
from ._journal import Journal
from ._limiter import Limiter
from ._lookup import TargetSearch, spot_check
from ._outcome import FatalWatch, Pending, not_processed, pending_of, result_of, send_item
from ._results import BulkReport, ItemResult, ItemStatus
from ._target import Binding, operation_name

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
        journal: str | os.PathLike[str] | Journal | None,
        client_limiter: Limiter | None = None,
        key: KeySpec,
        content: KeySpec = None,
        job_id: str | None,
        drain_timeout: float,
        lookup: Callable[[], AsyncIterable[Any]] | None = None,
        lookup_key: KeySpec = None,
        retrieve: Callable[[str], Awaitable[Any]] | None = None,
        resend_unknown: bool = False,
        stop_on_fatal: bool = True,
        binding: Binding | None = None,
    ) -> None:
        self._operation = operation
        self._items = items
        self._concurrency = concurrency
        self._limiter = limiter
        self._client_limiter = client_limiter
        self._journal = (
            journal if journal is None or isinstance(journal, Journal) else Journal(journal)
        )
        # A journal opened here from a path is this job's to close; a `Journal` is the caller's.
        self._owns_journal = journal is not None and not isinstance(journal, Journal)
        self._key = key
        self._content = content
        self._job_id = job_id
        self._drain_timeout = drain_timeout
        self._lookup = lookup
        self._lookup_key = lookup_key if lookup_key is not None else key
        self._retrieve = retrieve
        self._resend_unknown = resend_unknown
        self._stop_on_fatal = stop_on_fatal
        self._binding = binding or Binding(None, None, operation_name(operation), "content")
        self._started = False
        self._bound = False
        self._stopping = False
        self._aborted = False
        self._stop_deadline = 0.0
        self._wakeup: asyncio.Future[None] | None = None
        self._iterator: AsyncGenerator[ItemResult[_T], None] | None = None
        self._contents = ContentIdentities()
        self._seen_keys: set[str] = set()
        self._watch = FatalWatch(concurrency)
        self._deferred: dict[str, Pending] = {}
        self.report = BulkReport()

    @property
    def concurrency(self) -> int:
        """Items in flight at most (after capping at the pool size)."""
        return self._concurrency

    @property
    def journal(self) -> Journal | None:
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

    def open_journal(self) -> Journal | None:
        """Open and bind the journal now (idempotent; the run does it when it starts).

        Call it before the run to have a `JournalMismatchError` or `JournalLockedError` raised
        before anything else happens, and to read the journal (`Journal.lookup`) beforehand.
        """
        journal = self._journal
        if journal is not None and not self._bound:
            journal.open()
            try:
                journal.bind(self._binding.resolve(), job_id=self._job_id)
            except BaseException:
                if self._owns_journal:
                    # Refused: release the file (and its lock) now, or the next run on it would
                    # find it locked by this job until the garbage collector closes it.
                    journal.close()
                raise
            self._job_id = journal.job_id
            self._bound = True
        return journal

    def stop(self, *, drain_timeout: float | None = None) -> None:
        """Stop pulling new items; in-flight ones get `drain_timeout` seconds to finish.

        `drain_timeout` defaults to the run's. Safe to call from a signal handler installed
        with `loop.add_signal_handler`, and more than once: a later call can only bring the
        deadline closer (`stop(drain_timeout=0)` cancels what is in flight now).
        """
        deadline = time.monotonic() + (
            self._drain_timeout if drain_timeout is None else max(0.0, drain_timeout)
        )
        if self._stopping:
            deadline = min(deadline, self._stop_deadline)
        self._stopping = True
        self._stop_deadline = deadline
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called (or the run was cancelled or aborted)."""
        return self._stopping

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
                self._job_id = uuid.uuid4().hex
            self._wakeup = asyncio.get_running_loop().create_future()
            if self._stopping:
                self._wakeup.set_result(None)
            # Nested generators are closed explicitly: a consumer leaving early closes this one
            # at a `yield`, and `_pump` must then drain and record what it has in flight now,
            # not whenever the garbage collector finalizes it (after the journal is closed).
            async with (
                contextlib.aclosing(self._pull(self._job_id)) as source,
                contextlib.aclosing(self._pump(source)) as results,
            ):
                async for result in results:
                    yield result
            if self._deferred and not self._stopping:
                async with contextlib.aclosing(self._resolve_deferred()) as resolved:
                    async for result in resolved:
                        yield result
            while self._deferred:
                # Stopped before the lookup: they stay unknown (recorded so), for a later run.
                # Taken out first: one finished here is not finished again if the consumer
                # leaves at this `yield`.
                pending = self._deferred.pop(next(iter(self._deferred)))
                result = result_of(pending, ItemStatus.UNKNOWN, note=pending.reason)
                self._finish(result)
                yield result
            if self._aborted:
                report.outcome = "aborted"
            else:
                report.outcome = "stopped" if self._stopping else "completed"
        except BaseException:
            if report.outcome == "running":
                report.outcome = "cancelled"
            raise
        finally:
            # Cancelled or closed early with items held for the lookup: they end UNKNOWN here
            # (counted and journaled, not yielded), or a re-run would send them as new.
            for pending in self._deferred.values():
                self._finish(result_of(pending, ItemStatus.UNKNOWN, note=pending.reason))
            self._deferred.clear()
            report.finish()
            if journal is not None:
                if self._owns_journal:
                    journal.close()
                else:
                    journal.flush()

    async def _pull(self, job_id: str) -> AsyncGenerator[Pending | ItemResult[_T], None]:
        """The inputs, one at a time: an item to send, or a result known without sending."""
        source = self._items
        index = -1
        if isinstance(source, AsyncIterable):
            async for item in source:
                index += 1
                yield self._prepare(index, item, job_id)
        else:
            for item in source:
                index += 1
                yield self._prepare(index, item, job_id)

    async def _pump(
        self, source: AsyncIterator[Pending | ItemResult[_T]]
    ) -> AsyncGenerator[ItemResult[_T], None]:
        """Send what `source` yields, `concurrency` at a time; yield every result as it ends."""
        report = self.report
        in_flight: set[asyncio.Future[ItemResult[_T]]] = set()
        exhausted = False
        try:
            while True:
                while not exhausted and not self._stopping and len(in_flight) < self._concurrency:
                    try:
                        pulled = await source.__anext__()
                    except StopAsyncIteration:
                        exhausted = True
                        break
                    report.submitted += 1
                    if isinstance(pulled, ItemResult):
                        self._finish(pulled)
                        yield pulled
                    elif pulled.key in self._deferred:
                        pass  # resolved by the lookup at the end of the run
                    else:
                        in_flight.add(asyncio.ensure_future(self._send(pulled)))
                if not in_flight:
                    break
                for task in await self._finished_tasks(in_flight):
                    in_flight.discard(task)
                    result = task.result()
                    self._check_fatal(result)
                    if self._defer(result):
                        continue
                    self._finish(result)
                    yield result
        except BaseException:
            # Cancelled, closed early, or the input raised: stop pulling and drain (bounded).
            drain = self._drain_timeout
            if self._stopping:  # stop() came first: its deadline still holds
                drain = min(drain, max(0.0, self._stop_deadline - time.monotonic()))
            self._stopping = True
            await self._abandon(in_flight, drain)
            raise

    async def _finished_tasks(
        self, in_flight: set[asyncio.Future[ItemResult[_T]]]
    ) -> set[asyncio.Future[ItemResult[_T]]]:
        """Wait until an item finishes, `stop()` is called, or the drain deadline passes."""
        assert self._wakeup is not None
        if self._wakeup.done():
            # Consumed: a later stop() (a closer deadline) must wake the wait again.
            self._wakeup = asyncio.get_running_loop().create_future()
        waiters: set[asyncio.Future[Any]] = {*in_flight, self._wakeup}
        timeout: float | None = None
        if self._stopping:
            timeout = max(0.0, self._stop_deadline - time.monotonic())
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        done.discard(self._wakeup)
        if not done and self._stopping and time.monotonic() >= self._stop_deadline:
            # The drain deadline passed: cancel what is left; each task turns its
            # cancellation into a result, so nothing is dropped.
            for task in in_flight:
                task.cancel()
            await asyncio.wait(in_flight)
            return set(in_flight)
        return cast("set[asyncio.Future[ItemResult[_T]]]", done)

    async def _send(self, pending: Pending) -> ItemResult[_T]:
        return await send_item(
            self._operation,
            pending,
            limiter=self._limiter,
            resend_unknown=self._resend_unknown,
            name=self._binding.operation,
        )

    def _prepare(
        self, index: int, item: Mapping[str, Any], job_id: str
    ) -> Pending | ItemResult[_T]:
        """The item's identity, digest and key, checked against the journal."""
        try:
            if not isinstance(item, Mapping):
                raise TypeError(
                    f"bulk item {index} is a {type(item).__name__}; items must be mappings of "
                    "field names to values (the operation's keyword arguments)"
                )
            digest = content_digest(read_field(self._content, item, index, "content"))
            key = self._identity(index, item, digest)
            idem = item_idempotency_key(job_id, key, digest)
        except Exception as exc:
            return ItemResult(
                index=index,
                key=str(index),
                status=ItemStatus.FAILED,
                item=item if isinstance(item, Mapping) else {"value": item},
                idempotency_key="",
                error=exc,
            )
        pending = Pending(index=index, key=key, item=item, digest=digest, idempotency_key=idem)
        entry = self._journal.lookup(key) if self._journal is not None else None
        if entry is None or entry.status == ItemStatus.FAILED.value:
            return pending
        if not entry.matches(digest):
            return result_of(
                pending,
                ItemStatus.CHANGED,
                note=(
                    f"{entry.status} in an earlier run with other content "
                    f"(record {entry.created_id or 'unknown'}); not sent: an import creates "
                    "records, it does not update them"
                ),
            )
        # Same content as journaled: the key it was sent under is the one to use again.
        pending = attrs.evolve(pending, idempotency_key=entry.idempotency_key)
        if entry.status == ItemStatus.SUCCEEDED.value:
            return result_of(pending, ItemStatus.SKIPPED, created_id=entry.created_id)
        if self._resend_unknown:
            return pending
        note = f"outcome unknown since an earlier run ({entry.error or 'its answer was lost'})"
        if self._lookup is not None:
            self._deferred[key] = attrs.evolve(pending, reason=note)
            return pending  # `_pump` sees it is deferred and does not send it
        return result_of(pending, ItemStatus.UNKNOWN, note=note + "; not sent again")

    def _identity(self, index: int, item: Mapping[str, Any], digest: str) -> str:
        if self._key is None:
            return self._contents.name(digest)
        value = read_field(self._key, item, index, "key")
        if value is None or value == "":
            raise ValueError(f"bulk item {index} has an empty key ({identity_rule(self._key)})")
        key = str(value)
        if key in self._seen_keys:
            raise ValueError(
                f"bulk item {index} repeats the key {key!r} of an earlier item; keys must be "
                "unique (it was not sent)"
            )
        self._seen_keys.add(key)
        return key

    def _defer(self, result: ItemResult[_T]) -> bool:
        """Hold an item whose answer was lost for the lookup at the end (True when held)."""
        if (
            result.status is not ItemStatus.UNKNOWN
            or self._lookup is None
            or self._resend_unknown
            or self._stopping
            or result.key in self._deferred
        ):
            return False
        self._deferred[result.key] = pending_of(result)
        return True

    async def _resolve_deferred(self) -> AsyncGenerator[ItemResult[_T], None]:
        """One streamed pass over the target; found items are created, the rest sent again."""
        assert self._lookup is not None
        report = self.report
        deferred = self._deferred
        search = TargetSearch(self._lookup, self._lookup_key, report)
        async with contextlib.aclosing(search.find(deferred, lambda: self._stopping)) as found:
            async for result in found:
                self._finish(result)
                yield result
        if search.failed or self._stopping:
            return
        # Not in the target: send them again (same key). A second lost answer is final here.
        again = list(deferred.values())
        deferred.clear()
        resent = 0

        async def source() -> AsyncGenerator[Pending | ItemResult[_T], None]:
            nonlocal resent
            for pending in again:
                resent += 1
                report.submitted -= 1  # counted when first pulled; `_pump` counts it again
                yield pending

        lookup, self._lookup = self._lookup, None  # nothing is deferred twice
        try:
            async with contextlib.aclosing(self._pump(source())) as results:
                async for result in results:
                    yield result
        finally:
            self._lookup = lookup
            # Stopped (or closed) before sending them again: the lookup did not find them, so
            # they are not in the target; counted as never sent, and a re-run sends them.
            for pending in again[resent:]:
                note = "not in the target (looked up), and the run stopped before resending it"
                self._finish(result_of(pending, ItemStatus.CANCELLED, note=note))

    def _finish(self, result: ItemResult[_T]) -> None:
        """Count a finished item and record it in the journal (if there is anything to record)."""
        self.report.count(result)
        status = result.status
        journal = self._journal
        if (
            journal is None
            or not result.idempotency_key
            or status in (ItemStatus.SKIPPED, ItemStatus.CHANGED, ItemStatus.CANCELLED)
        ):
            # Skipped/changed: the journal already has its record; cancelled: never sent.
            return
        if status is ItemStatus.FAILED and not_processed(result.error):
            return  # nothing happened in the target; a re-run sends it as if new
        journal.record(
            result.key,
            status.value,
            digest=result.digest,
            idempotency_key=result.idempotency_key,
            created_id=result.created_id,
            attempts=result.attempts,
            error=result.reason or None,
        )

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

    async def _abandon(self, in_flight: set[asyncio.Future[ItemResult[_T]]], drain: float) -> None:
        """Give in-flight items `drain` seconds to finish, cancel the rest, count them all."""
        if not in_flight:
            return
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
        for task in in_flight:
            if task.done() and not task.cancelled():
                self._finish(task.result())
            else:
                self.report.cancelled += 1
        in_flight.clear()
