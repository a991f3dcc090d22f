"""The sync twin of the bulk engine: `FinalPOS().bulk.run(...)`, driven from a plain thread.

    with FinalPOS() as client:
        for result in client.bulk.run(client.customers.create, rows, journal="import.journal"):
            if not result.ok:
                print(result.index, result.reason)

The async engine (`finalpos_async.bulk`) does all the work on the client's private loop; this
module only carries items and results across the thread boundary (`_bulk_channel`), with flat
memory both ways:

    caller thread                                private loop
    -------------                                ------------
    next(items) x batch  --call_soon_threadsafe-->  FeedSource (the engine's async input)
                         <------ "want" ----------  (asked only when the engine pulls and
                                                     the fed batch is used up)
    for result in job    <--- Channel (bounded) -  pump task: async for result in BulkJob

The caller's iterable is pulled in the caller's own thread (a DB cursor or a CSV reader bound to
that thread keeps working, and a slow `next()` never blocks the loop), one batch of at most
`concurrency` items per request. Results wait in `Channel`, which holds at most
`SYNC_BULK_BUFFER` of them; when it is full the pump waits, so the engine stops pulling inputs
until the caller catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import logging
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, cast

from finalpos_async._constants import (
    BULK_CONCURRENCY,
    BULK_DRAIN_TIMEOUT,
    SYNC_BULK_BUFFER,
    SYNC_BULK_POLL,
    SYNC_CANCEL_GRACE,
)
from finalpos_async.bulk import check_lookup

from ._bulk_channel import NOTHING, WANT, Channel, End, Feed
from ._resource import Runner, SyncResource, is_resource_method, on_loop, raw_twin

if TYPE_CHECKING:
    import os

    from finalpos_async._limiter import Limiter

    # BulkRunner is named in a string (the base class below), which ruff does not see.
    from finalpos_async.bulk import (  # noqa: F401
        BulkJob,
        BulkReport,
        BulkRunner,
        ItemResult,
        Items,
        JournalStore,
        KeySpec,
    )

    from ._base_client import BaseSyncClient

__all__ = ["SyncBulkJob", "SyncBulkRunner", "SyncLister"]

_T = TypeVar("_T")

log = logging.getLogger("finalpos.bulk")

_CLOSED_DURING_RUN = (
    "this finalpos_sync client was closed (by close() in another thread, or at interpreter "
    "exit) while a bulk run was in progress; the run was abandoned"
)


class SyncBulkRunner(SyncResource["BulkRunner"]):
    """`client.bulk` of the sync client: runs one operation over many inputs (see `run`)."""

    def run(
        self,
        operation: Callable[..., _T],
        items: Items,
        *,
        concurrency: int = BULK_CONCURRENCY,
        rate_limit: float | Limiter | None = None,
        journal: str | os.PathLike[str] | JournalStore | None = None,
        key: KeySpec = None,
        content: KeySpec = None,
        digest: KeySpec = None,
        job_id: str | None = None,
        drain_timeout: float = BULK_DRAIN_TIMEOUT,
        lookup: SyncLister | None = None,
        lookup_key: KeySpec = None,
        lookup_by: Literal["key", "content"] | None = None,
        retrieve: Callable[[str], Any] | None = None,
        resend_unknown: bool = False,
        stop_on_fatal: bool = True,
        target: str | None = None,
        operation_name: str | None = None,
        rotated_credentials: bool = False,
    ) -> SyncBulkJob[_T]:
        """Run `operation(**item, idempotency_key=...)` for every item; returns a `SyncBulkJob`.

        Nothing starts until the job is iterated or waited on::

            for result in client.bulk.run(client.customers.create, rows, journal="j.db"):
                if not result.ok:
                    print(result.index, result.reason)

            report = client.bulk.run(client.customers.create, rows).wait()  # counts only

        The options mean what they mean in `finalpos_async.bulk.BulkRunner.run` (the same
        engine runs the job on the client's private loop); what differs from sync code:

        - `operation`: a method of this client's resources (`client.customers.create`, or its
          `with_raw_response` twin), or an async callable; a method runs on the client's loop,
          through its raw twin (`raw_twin`), with its fields checked as on the async side.
        - `items`: any iterable of field mappings, pulled lazily in the calling thread (an
          async iterable is also accepted and pulled on the loop).
        - `drain_timeout`: also applies to Ctrl-C and to leaving the loop early; in-flight items
          still running then are cancelled and end `UNKNOWN` (they were sent).
        - `lookup`: a list method of this client (`client.customers.list`, run on the loop), or
          any function of `skip` returning an iterable of records (run, and walked, in a worker
          thread, so it may call this client:
          `lambda skip=0: client.customers.list(limit=1000, skip=skip)`).
        - `retrieve`: a retrieve method of this client (`client.customers.retrieve`), or any
          function of the id (run in a worker thread).
        """
        if not isinstance(items, (Iterable, AsyncIterable)):
            raise TypeError(
                f"items must be an iterable of mappings (one per item), got {type(items).__name__}"
            )
        # A resource method runs through its raw twin (`raw_twin`), so that each result's
        # `attempts` counts the client's retries, as on the async side.
        twin = on_loop(raw_twin(operation)) if is_resource_method(operation) else None
        async_operation = _async_twin(operation, twin)
        feed = None if isinstance(items, AsyncIterable) else Feed(items)
        # Validates the options here, in the caller's thread, so bad arguments raise at once.
        job: BulkJob[Any] = self._async().run(
            async_operation,
            items if feed is None else feed.source,
            concurrency=concurrency,
            rate_limit=rate_limit,
            journal=journal,
            key=key,
            content=content,
            digest=digest,
            job_id=job_id,
            drain_timeout=drain_timeout,
            lookup=_async_lookup(lookup, on_loop(lookup)) if lookup is not None else None,
            lookup_key=lookup_key,
            lookup_by=lookup_by,
            retrieve=(
                _async_retrieve(retrieve, on_loop(retrieve)) if retrieve is not None else None
            ),
            resend_unknown=resend_unknown,
            stop_on_fatal=stop_on_fatal,
            target=target,
            operation_name=operation_name,
            rotated_credentials=rotated_credentials,
        )
        if feed is not None:
            feed.batch = job.concurrency
        return SyncBulkJob(self._client, self._run, job, feed, drain_timeout=drain_timeout)


def _is_async(function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def _async_twin(
    operation: Callable[..., Any], twin: Callable[..., Any] | None
) -> Callable[..., Any]:
    """What the engine calls for a sync resource method (`twin`, its raw twin on the loop); an
    async callable passes unchanged."""
    if twin is not None:
        return twin
    if _is_async(operation):
        return operation
    raise TypeError(
        f"operation must be a method of a finalpos_sync resource, such as "
        f"client.customers.create (or an async callable); got {operation!r}. A plain function "
        f"cannot run on the client's event loop without blocking it"
    )


class SyncLister(Protocol):
    """Lists the target's records from the `skip`-th on (`client.customers.list` is one)."""

    def __call__(self, *, skip: int = 0) -> Iterable[Any]: ...


def _async_lookup(lookup: SyncLister, twin: Callable[..., Any] | None) -> Callable[..., Any]:
    """`lookup` for the engine on the loop: a list method runs its async twin there; an async
    generator function passes unchanged; any other function is called, and what it returns
    walked, in a worker thread (a chunk at a time), because it may call this sync client, which
    blocks until the loop answers."""
    if twin is not None:
        return twin
    if inspect.isasyncgenfunction(lookup):
        return lookup
    check_lookup(lookup)

    async def listing(*, skip: int = 0) -> AsyncIterator[Any]:
        records = await asyncio.to_thread(functools.partial(lookup, skip=skip))
        if isinstance(records, AsyncIterable):
            # Declared Iterable, but a function may return an async iterable: walked here.
            async for record in cast("AsyncIterable[Any]", records):
                yield record
            return
        iterator = iter(records)
        while True:
            chunk = await asyncio.to_thread(_take, iterator)
            for record in chunk:
                yield record
            if len(chunk) < SYNC_BULK_BUFFER:
                return

    return listing


def _take(iterator: Iterator[Any]) -> list[Any]:
    return list(itertools.islice(iterator, SYNC_BULK_BUFFER))


def _async_retrieve(
    retrieve: Callable[[str], Any], twin: Callable[..., Any] | None
) -> Callable[[str], Awaitable[Any]]:
    """`retrieve` for the engine: a retrieve method runs its async twin; an async callable
    passes unchanged; any other function runs in a worker thread (it may call this client)."""
    if twin is not None:
        return twin
    if _is_async(retrieve):
        return retrieve

    async def fetch(ident: str) -> Any:
        return await asyncio.to_thread(retrieve, ident)

    return fetch


class SyncBulkJob(Generic[_T]):
    """One bulk run driven from sync code: iterate it for results as they finish, or `wait()`.

    It mirrors `finalpos_async.bulk.BulkJob`: `report` holds live counters (the same
    `BulkReport` object the engine updates, safe to read from any thread); `stop()` ends it
    gracefully (no new items, in-flight ones get `drain_timeout` seconds, the rest are yielded
    as `UNKNOWN`: they were sent and may have been created). A job runs once.

    **Ctrl-C** while iterating (or leaving the loop early, or `close()`) does what cancelling the
    async job's task does: no new items are pulled, in-flight ones get `drain_timeout` seconds to
    finish and the rest are cancelled, every outcome is counted in `report` and recorded in the
    journal, then `KeyboardInterrupt` is re-raised (a second Ctrl-C cancels what is still in
    flight at once). Results already finished but not yet handed to the loop body are not
    yielded then; they are in `report` and the journal.

    **Threads**: iterate it from one thread; `stop()` may be called from any thread.
    """

    report: BulkReport

    def __init__(
        self,
        client: BaseSyncClient,
        run: Runner,
        job: BulkJob[_T],
        feed: Feed | None,
        *,
        drain_timeout: float,
    ) -> None:
        self._client = client
        self._run = run
        self._job = job
        self._feed = feed
        self._drain_timeout = drain_timeout
        self._channel = Channel(SYNC_BULK_BUFFER)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None  # on the loop only
        self._results_iter: Generator[ItemResult[_T], None, None] | None = None
        self._started = False
        self._finished = False
        self.report = job.report

    @property
    def concurrency(self) -> int:
        """Items in flight at most (after capping at the pool size)."""
        return self._job.concurrency

    @property
    def journal(self) -> JournalStore | None:
        """The journal this run records into, if any."""
        return self._job.journal

    @property
    def rate_limiter(self) -> Limiter | None:
        """The limiter pacing this run: its own `rate_limit`, else the client's (None: no cap)."""
        return self._job.rate_limiter

    @property
    def job_id(self) -> str | None:
        """The job identity in every idempotency key (known once the run has started)."""
        return self._job.job_id

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called (or the run was interrupted)."""
        return self._job.stopping

    def open_journal(self) -> JournalStore | None:
        """Open and bind the journal now (idempotent; the run does it when it starts).

        Call it before the run to have a `JournalMismatchError` or `JournalLockedError` raised
        before anything else happens, and to read the journal (`JournalStore.lookup`) beforehand.
        It runs on the client's loop, like the run that will write the journal.
        """
        return self._run(_on_loop(self._job.open_journal))

    def stop(self, *, drain_timeout: float | None = None) -> None:
        """Stop pulling new items; in-flight ones get `drain_timeout` seconds to finish.

        Safe from any thread (the stop is handed to the loop), and more than once: a later call
        can only bring the deadline closer (`stop(drain_timeout=0)` cancels what is in flight).
        Keep iterating (or call `wait()`) to receive the remaining results.
        """
        stop = functools.partial(self._job.stop, drain_timeout=drain_timeout)
        loop = self._loop
        if loop is None:
            stop()  # not started: nothing runs on the loop yet
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: nothing left to stop
            loop.call_soon_threadsafe(stop)

    # -- consuming -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[ItemResult[_T]]:
        if self._started:
            raise RuntimeError(
                "a SyncBulkJob runs once; call client.bulk.run(...) again for a new run"
            )
        self._started = True
        # Starts the private loop if needed; raises on a closed client or from the loop thread.
        self._loop = self._run(_running_loop())
        self._channel.loop = self._loop
        if self._feed is not None:
            self._feed.bind(self._loop, self._channel)
        self._loop.call_soon_threadsafe(self._spawn)
        self._results_iter = self._results()
        return self._results_iter

    def wait(self) -> BulkReport:
        """Run to the end, dropping the per-item results; returns the report."""
        for _ in self:
            pass
        return self.report

    def close(self) -> None:
        """End the run now, as leaving `async with job:` does: drain in-flight items and wait.

        Call it from the thread that iterates (other threads use `stop()`). Idempotent.
        """
        results = self._results_iter
        if results is not None:
            results.close()

    def __enter__(self) -> SyncBulkJob[_T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncBulkJob {self.report!r}>"

    # -- caller side -----------------------------------------------------------------------------

    def _results(self) -> Generator[ItemResult[_T], None, None]:
        try:
            while True:
                message = self._next_message()
                if isinstance(message, End):
                    self._finished = True
                    if message.error is not None:
                        raise message.error
                    if message.cancelled:
                        raise RuntimeError("the bulk run was cancelled on the client's loop")
                    return
                yield message
        finally:
            if not self._finished:
                self._abort()

    def _next_message(self) -> Any:
        """The next result or end marker; answers the engine's requests for input meanwhile."""
        channel = self._channel
        while True:
            message = channel.get(SYNC_BULK_POLL)
            if message is WANT:
                assert self._feed is not None
                self._feed.fill()
            elif message is NOTHING:
                if self._client.is_closed:
                    raise RuntimeError(_CLOSED_DURING_RUN)
            else:
                return message

    def _abort(self) -> None:
        """Cancel the run on the loop (the engine drains, records, counts) and wait for it."""
        if self._finished or self._loop is None:
            return
        self._request_cancel()
        deadline = time.monotonic() + self._drain_timeout + SYNC_CANCEL_GRACE
        while True:
            try:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("bulk run: gave up waiting for in-flight items to unwind")
                    return
                message = self._channel.get(min(left, SYNC_BULK_POLL))
                if isinstance(message, End):
                    self._finished = True
                    return
                if message is NOTHING and self._client.is_closed:
                    return
                # Results yielded by the engine before the cancel reached it are dropped here;
                # they are already counted in the report and recorded in the journal.
            except KeyboardInterrupt:
                # A second Ctrl-C: cancel what is still in flight now, wait only briefly.
                self._request_cancel()
                deadline = min(deadline, time.monotonic() + SYNC_CANCEL_GRACE)

    def _request_cancel(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing left to cancel
                loop.call_soon_threadsafe(self._cancel_on_loop)

    # -- loop side -------------------------------------------------------------------------------

    def _spawn(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pump())
        self._task.add_done_callback(self._pump_done)

    def _cancel_on_loop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _pump(self) -> None:
        # `async with` closes the engine's generator if the pump is cancelled while it waits
        # for buffer space, so the engine drains exactly as on a cancel inside it.
        async with self._job:
            async for result in self._job:
                await self._channel.put(result)

    def _pump_done(self, task: asyncio.Task[None]) -> None:
        report = self.report
        if report.outcome == "running":  # cancelled before the engine even started
            report.outcome = "cancelled"
            report.finish()
        if task.cancelled():
            self._channel.post(End(None, cancelled=True))
        else:
            self._channel.post(End(task.exception(), cancelled=False))


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def _on_loop(function: Callable[[], _T]) -> _T:
    return function()
