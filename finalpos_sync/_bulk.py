"""The sync twin of the bulk engine: `FinalPOS().bulk.run(...)`, driven from a plain thread.

    with FinalPOS() as client:
        for result in client.bulk.run(client.customers.create, rows, journal="import.journal"):
            if not result.ok:
                print(result.index, result.reason)

The async engine (`finalpos_async.bulk`) does all the work on the client's private loop; this
module only carries items and results across the thread boundary, with flat memory both ways:

    caller thread                                private loop
    -------------                                ------------
    next(items) x batch  --call_soon_threadsafe-->  _FeedSource (the engine's async input)
                         <------ "want" ----------  (asked only when the engine pulls and
                                                     the fed batch is used up)
    for result in job    <--- _Channel (bounded) -  pump task: async for result in BulkJob

The caller's iterable is pulled in the caller's own thread (a DB cursor or a CSV reader bound to
that thread keeps working, and a slow `next()` never blocks the loop), one batch of at most
`concurrency` items per request. Results wait in `_Channel`, which holds at most
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
import threading
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from finalpos_async._constants import (
    BULK_CONCURRENCY,
    BULK_DRAIN_TIMEOUT,
    SYNC_BULK_BUFFER,
    SYNC_BULK_POLL,
    SYNC_CANCEL_GRACE,
)

from ._resource import Runner, SyncResource

if TYPE_CHECKING:
    import os

    from finalpos_async._rate_limit import RateLimiter

    # BulkRunner is named in a string (the base class below), which ruff does not see.
    from finalpos_async.bulk import (  # noqa: F401
        BulkJob,
        BulkReport,
        BulkRunner,
        ItemResult,
        Items,
        Journal,
        KeySpec,
    )

    from ._base_client import BaseSyncClient

__all__ = ["SyncBulkJob", "SyncBulkRunner"]

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
        rate_limit: float | RateLimiter | None = None,
        journal: str | os.PathLike[str] | Journal | None = None,
        key: KeySpec = None,
        content: KeySpec = None,
        job_id: str | None = None,
        drain_timeout: float = BULK_DRAIN_TIMEOUT,
        lookup: Callable[[], Iterable[Any]] | None = None,
        lookup_key: KeySpec = None,
        retrieve: Callable[[str], Any] | None = None,
        resend_unknown: bool = False,
        stop_on_fatal: bool = True,
        target: str | None = None,
        operation_name: str | None = None,
    ) -> SyncBulkJob[_T]:
        """Run `operation(**item, idempotency_key=...)` for every item; returns a `SyncBulkJob`.

        Nothing starts until the job is iterated or waited on::

            for result in client.bulk.run(client.customers.create, rows, journal="j.db"):
                if not result.ok:
                    print(result.index, result.reason)

            report = client.bulk.run(client.customers.create, rows).wait()  # counts only

        `operation` is a method of this client's resources (`client.customers.create`, or its
        `with_raw_response` twin); the run calls its async twin on the client's private loop.
        `items` is any iterable of field mappings, pulled lazily in the calling thread (an
        async iterable is also accepted and pulled on the loop). The options are those of
        `finalpos_async.bulk.BulkRunner.run`:

        - `concurrency`: items in flight at once (default 16), capped at the client's pool size.
        - `rate_limit`: items started per second, or a `RateLimiter`; the client's own
          `rate_limit` (every HTTP attempt, retries included) applies too, and paces the run
          alone when this is unset.
        - `journal`: a SQLite file (or `Journal`) recording every outcome, bound to this
          client's target, credentials, operation and identity rule (`JournalMismatchError`
          otherwise); re-running the same job with it skips items that were created, sends the
          refused and unsent ones again under the same keys, and reports those whose answer was
          lost as `UNKNOWN` again unless `lookup` or `resend_unknown` resolves them.
        - `key`: an item's identity across runs: its content by default, a field name such as
          `"email"`, or a function of the item. Keys must be unique.
        - `content`: what of an item is its content (the whole item by default).
        - `job_id`: fixes the job identity without a journal.
        - `drain_timeout`: after `stop()`, Ctrl-C or leaving the loop early, how long in-flight
          items may finish before they are cancelled (and end `UNKNOWN`: they were sent).
        - `lookup`, `lookup_key`: lists the records in the target, to resolve by `key` the
          items whose answer was lost: a list method of this client (`client.customers.list`,
          run on the loop), or any function returning an iterable of records (run, and walked,
          in a worker thread, so it may call this client: `lambda: client.customers.list(...)`).
        - `retrieve`: fetches one record by id, to check before a resume that the target still
          holds what the journal says was created: a retrieve method of this client
          (`client.customers.retrieve`), or any function of the id (run in a worker thread).
        - `resend_unknown`, `stop_on_fatal`, `target`, `operation_name`: as in the async
          `BulkRunner.run`.
        """
        if not isinstance(items, (Iterable, AsyncIterable)):
            raise TypeError(
                f"items must be an iterable of mappings (one per item), got {type(items).__name__}"
            )
        async_operation = _async_twin(operation, self._twin_of(operation))
        feed = None if isinstance(items, AsyncIterable) else _Feed(items)
        # Validates the options here, in the caller's thread, so bad arguments raise at once.
        job: BulkJob[Any] = self._async().run(
            async_operation,
            items if feed is None else feed.source,
            concurrency=concurrency,
            rate_limit=rate_limit,
            journal=journal,
            key=key,
            content=content,
            job_id=job_id,
            drain_timeout=drain_timeout,
            lookup=_async_lookup(lookup, self._twin_of(lookup)) if lookup is not None else None,
            lookup_key=lookup_key,
            retrieve=(
                _async_retrieve(retrieve, self._twin_of(retrieve)) if retrieve is not None else None
            ),
            resend_unknown=resend_unknown,
            stop_on_fatal=stop_on_fatal,
            target=target,
            operation_name=operation_name,
        )
        if feed is not None:
            feed.batch = job.concurrency
        return SyncBulkJob(self._client, self._run, job, feed, drain_timeout=drain_timeout)

    @staticmethod
    def _twin_of(method: Callable[..., Any]) -> Callable[..., Any] | None:
        """The async method behind a sync resource method (None for anything else)."""
        owner = getattr(method, "__self__", None)
        name = getattr(method, "__name__", None)
        if isinstance(owner, SyncResource) and isinstance(name, str):
            resource = cast("SyncResource[object]", owner)
            twin: object = getattr(resource._async(), name, None)
            if callable(twin):
                return twin
        return None


def _is_async(function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def _async_twin(
    operation: Callable[..., Any], twin: Callable[..., Any] | None
) -> Callable[..., Any]:
    """The async method behind a sync resource method (`twin`, found by `SyncBulkRunner`); an
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


def _async_lookup(
    lookup: Callable[[], Iterable[Any]], twin: Callable[..., Any] | None
) -> Callable[[], AsyncIterable[Any]]:
    """`lookup` for the engine on the loop: a list method runs its async twin there; an async
    generator function passes unchanged; any other function is called, and what it returns
    walked, in a worker thread (a chunk at a time), because it may call this sync client, which
    blocks until the loop answers."""
    if twin is not None:
        return twin
    if inspect.isasyncgenfunction(lookup):
        return lookup

    async def listing() -> AsyncIterator[Any]:
        records = await asyncio.to_thread(lookup)
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
        feed: _Feed | None,
        *,
        drain_timeout: float,
    ) -> None:
        self._client = client
        self._run = run
        self._job = job
        self._feed = feed
        self._drain_timeout = drain_timeout
        self._channel = _Channel(SYNC_BULK_BUFFER)
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
    def journal(self) -> Journal | None:
        """The journal this run records into, if any."""
        return self._job.journal

    @property
    def rate_limiter(self) -> RateLimiter | None:
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

    def open_journal(self) -> Journal | None:
        """Open and bind the journal now (idempotent; the run does it when it starts).

        Call it before the run to have a `JournalMismatchError` or `JournalLockedError` raised
        before anything else happens, and to read the journal (`Journal.lookup`) beforehand.
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
                if isinstance(message, _End):
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
            if message is _WANT:
                assert self._feed is not None
                self._feed.fill()
            elif message is _NOTHING:
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
                if isinstance(message, _End):
                    self._finished = True
                    return
                if message is _NOTHING and self._client.is_closed:
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
            self._channel.post(_End(None, cancelled=True))
        else:
            self._channel.post(_End(task.exception(), cancelled=False))


class _End:
    """The last message of a run: how the pump task ended."""

    __slots__ = ("cancelled", "error")

    def __init__(self, error: BaseException | None, *, cancelled: bool) -> None:
        self.error = error
        self.cancelled = cancelled


_WANT = object()  # the engine wants more input (caller: pull a batch and feed it)
_NOTHING = object()  # nothing arrived within the poll interval


class _Channel:
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
        """In the caller: the next message, or `_NOTHING` after `timeout` seconds without one."""
        if not self._local:
            with self._cond:
                if not self._queued and not self._cond.wait(timeout):
                    return _NOTHING
                self._local, self._queued = self._queued, self._local
            acks = sum(1 for m in self._local if m is not _WANT and not isinstance(m, _End))
            if acks and self.loop is not None:
                with contextlib.suppress(RuntimeError):  # loop closed: nobody waits for room
                    self.loop.call_soon_threadsafe(self._acked, acks)
        if not self._local:
            return _NOTHING
        return self._local.popleft()


class _Feed:
    """Carries the caller's sync iterable to the engine: pulled in the caller's thread."""

    def __init__(self, items: Iterable[Mapping[str, Any]]) -> None:
        self._items = items
        self._iterator: Iterator[Mapping[str, Any]] | None = None
        self.batch = 1
        self.source = _FeedSource(self)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.channel: _Channel | None = None

    def bind(self, loop: asyncio.AbstractEventLoop, channel: _Channel) -> None:
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


class _FeedSource:
    """The engine's async input: items fed by the caller; asks for more when it runs dry."""

    def __init__(self, feed: _Feed) -> None:
        self._feed = feed
        self._inbox: deque[Mapping[str, Any]] = deque()
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def __aiter__(self) -> _FeedSource:
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
            self._feed.channel.post(_WANT)
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


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def _on_loop(function: Callable[[], _T]) -> _T:
    return function()
