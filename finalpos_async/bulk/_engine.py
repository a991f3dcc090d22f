"""The bulk engine: one operation over many inputs, bounded, streaming, resumable, never twice.

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

At most `concurrency` tasks exist at any time, so memory does not grow with the input. Each item
has one idempotency key derived from the job id, the item's identity and its content: every
attempt and every re-run of the same job sends the same key. The engine does not rely on the
server honouring it: inside a run, a POST is repeated by the client only where it provably did not
take effect (`safe_retries_only`), and an item whose answer was lost is never sent again blindly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
)
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import attrs

from .._constants import (
    BULK_CONCURRENCY,
    BULK_DRAIN_TIMEOUT,
    BULK_FAILING_STREAK,
    BULK_SPOT_CHECKS,
    BULK_UNREACHABLE_STREAK,
)
from .._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    FinalPOSError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from .._retry import safe_retries_only
from ._journal import Journal, JournalBinding, JournalError
from ._limiter import RateLimiter
from ._results import BulkReport, ItemResult, ItemStatus, describe_error

__all__ = [
    "BulkJob",
    "BulkRunner",
    "ContentIdentities",
    "Items",
    "KeySpec",
    "Operation",
    "TargetChangedError",
    "content_digest",
    "idempotency_key_for",
]

_T = TypeVar("_T")

log = logging.getLogger("finalpos.bulk")

Operation = Callable[..., Awaitable[_T]]
"""An async callable taking an item's fields as keyword arguments plus `idempotency_key=`."""

Items = Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]]
"""The inputs of a run: any iterable or async iterable of field mappings, pulled lazily."""

KeySpec = str | Callable[[Any], object] | None
"""An item's identity: None (its content), a field name, or a function of the item."""


class TargetChangedError(JournalError):
    """The target no longer holds the records the journal says were created (nothing was sent).

    Raised before a resume when every record checked answers 404: the server was reset, or the
    journal belongs to another server at the same address (an in-memory sandbox restarted).
    """


class BulkRunner:
    """`client.bulk`: runs one operation over many inputs (see `run`).

    It can also be used without a client (`BulkRunner().run(...)`); with one, `concurrency` is
    capped at the client's connection pool size and the journal is bound to the client's target.
    """

    def __init__(self, client: object | None = None) -> None:
        self._client = client

    def run(
        self,
        operation: Callable[..., Awaitable[_T]],
        items: Items,
        *,
        concurrency: int = BULK_CONCURRENCY,
        rate_limit: float | RateLimiter | None = None,
        journal: str | os.PathLike[str] | Journal | None = None,
        key: KeySpec = None,
        content: KeySpec = None,
        job_id: str | None = None,
        drain_timeout: float = BULK_DRAIN_TIMEOUT,
        lookup: Callable[[], AsyncIterable[Any]] | None = None,
        lookup_key: KeySpec = None,
        retrieve: Callable[[str], Awaitable[Any]] | None = None,
        resend_unknown: bool = False,
        stop_on_fatal: bool = True,
        target: str | None = None,
        operation_name: str | None = None,
    ) -> BulkJob[_T]:
        """Run `operation(**item, idempotency_key=...)` for every item; returns a `BulkJob`.

        Nothing starts until the job is iterated or awaited::

            async for result in client.bulk.run(client.customers.create, rows, journal="j.db"):
                if not result.ok:
                    print(result.index, result.reason)

            report = await client.bulk.run(client.customers.create, rows)  # counts only

        - `concurrency`: items in flight at once (default 16), capped at the client's pool size.
        - `rate_limit`: items started per second, or a `RateLimiter` shared with other runs. The
          client's own `rate_limit` takes a token for every HTTP attempt (retries included); with
          both, the stricter one sets the pace.
        - `journal`: a SQLite file (or `Journal`) recording every outcome, bound to this target
          (the client's base URL or `target`), credentials, operation and identity rule; using
          it for anything else raises `JournalMismatchError` before a request is sent. A re-run
          skips items that were created and sends the others under the same keys.
        - `key`: an item's identity across runs: a field name such as `"email"`, or a function
          of the item. By default an item is identified by its content (identical items are told
          apart by their order), so items added to the input are imported and an edited item
          counts as a new one. With a `key`, an item journaled as created whose content changed
          is not sent: it ends `CHANGED`. Keys must be unique.
        - `content`: what of an item is its content (a field name or a function; the whole item
          by default); it goes into the identity and the idempotency key.
        - `job_id`: fixes the job identity (the journal's own id otherwise, a random one if
          neither), so a re-run with the same id sends the same idempotency keys.
        - `drain_timeout`: after `stop()` or a cancel, how long in-flight items may finish.
        - `lookup`: a function listing the records in the target (`client.customers.list`),
          used with `key` to resolve items whose answer was lost: one streamed pass at the end
          of the run, only when there are such items; found ones count as created
          (`found=True`), the others are sent again. `lookup_key` reads the key of a listed
          record (default: `key`, read as a mapping key or an attribute, camelCase or
          snake_case).
        - `retrieve`: a function fetching one record by id (`client.customers.retrieve`); before
          resuming, the run checks that the target still holds the last records the journal
          says were created, and raises `TargetChangedError` if none of them is there.
        - `resend_unknown`: send items whose answer was lost again under the same idempotency
          key, and let the client retry them. Only safe when the server honours
          `Idempotency-Key` (the sandbox does; the API's documentation does not say so) or when
          you checked that they are not in the target. Off by default: they end `UNKNOWN`.
        - `stop_on_fatal`: stop starting items after a 401/403, or when several items in a row
          cannot reach the target: the report says why (`stop_reason`), the outcome is
          "aborted", and the items not started are left for a re-run.
        - `target`, `operation_name`: how the journal names the target and the operation
          (default: the client's base URL; the resource and method, e.g. `customers.create`).
        """
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        pool = _pool_size(self._client)
        if pool is not None and concurrency > pool:
            log.warning(
                "bulk concurrency %d exceeds the client's connection pool (%d); using %d so that "
                "items wait in the bulk engine, not in the pool",
                concurrency,
                pool,
                pool,
            )
            concurrency = pool
        limiter: RateLimiter | None
        if rate_limit is None or isinstance(rate_limit, RateLimiter):
            limiter = rate_limit
        else:
            limiter = RateLimiter(rate_limit)
        client_limiter = _client_limiter(self._client)
        if limiter is client_limiter:
            # The client already takes a token per attempt; one more per item would halve it.
            limiter = None
        if drain_timeout < 0:
            raise ValueError(f"drain_timeout must be >= 0 seconds, got {drain_timeout!r}")
        for name, spec in (("key", key), ("content", content), ("lookup_key", lookup_key)):
            if not (spec is None or isinstance(spec, str) or callable(spec)):
                raise TypeError(f"{name} must be None, a field name or a callable, got {spec!r}")
        if lookup is not None and key is None:
            raise ValueError(
                "lookup= needs key=: a record found in the target is matched by its key "
                "(a natural key such as 'email' or 'externalId')"
            )
        name = operation_name or _operation_name(operation)
        operation = _raw_twin(operation)
        owns_journal = journal is not None and not isinstance(journal, Journal)
        if journal is not None and not isinstance(journal, Journal):
            journal = Journal(journal)
        return BulkJob(
            operation,
            items,
            concurrency=concurrency,
            limiter=limiter,
            client_limiter=client_limiter,
            journal=journal,
            owns_journal=owns_journal,
            key=key,
            content=content,
            job_id=job_id,
            drain_timeout=drain_timeout,
            lookup=lookup,
            lookup_key=lookup_key if lookup_key is not None else key,
            retrieve=retrieve,
            resend_unknown=resend_unknown,
            stop_on_fatal=stop_on_fatal,
            binding=_Binding(self._client, target, name, _identity_rule(key)),
        )


@attrs.frozen
class _Binding:
    """What the journal will be bound to; the client's URL is read when the run starts."""

    client: object | None
    target: str | None
    operation: str
    identity: str

    def resolve(self) -> JournalBinding:
        client = self.client
        target = self.target
        if target is None:
            if getattr(client, "is_embedded_sandbox", False):
                # Its data dies with the client: a unique target, so no later run resumes it.
                log.warning(
                    "bulk journal used with an in-memory sandbox: its records die with this "
                    "client, so the journal cannot be resumed against anything later"
                )
                target = f"embedded in-memory sandbox {uuid.uuid4().hex[:12]}"
            else:
                target = str(getattr(client, "base_url", None) or "(no client)")
        credentials = getattr(client, "credentials_fingerprint", None)
        return JournalBinding(
            target=target,
            credentials=credentials if isinstance(credentials, str) else "-",
            operation=self.operation,
            identity=self.identity,
        )


def _identity_rule(key: KeySpec) -> str:
    if key is None:
        return "content"
    if isinstance(key, str):
        return f"key={key}"
    return f"key={getattr(key, '__qualname__', type(key).__name__)}"


def _operation_name(operation: Callable[..., Any]) -> str:
    """`customers.create` for a resource method (async, sync or raw twin), else its qualname."""
    owner = getattr(operation, "__self__", None)
    name = getattr(operation, "__name__", None)
    if owner is not None and isinstance(name, str):
        cls = type(owner).__name__
        cls = re.sub(r"^(Async|Sync)", "", cls)
        cls = re.sub(r"WithRawResponse$", "", cls)
        return f"{re.sub(r'(?<!^)(?=[A-Z])', '_', cls).lower()}.{name}"
    qualname = getattr(operation, "__qualname__", None)
    if isinstance(qualname, str):
        return qualname
    inner = getattr(operation, "func", None)  # functools.partial
    if callable(inner):
        return _operation_name(inner)
    # A callable object: its class, never its repr (which holds a memory address, so the same
    # operation would be named differently on every run and its journal refused).
    return type(operation).__qualname__


def _client_limiter(client: object | None) -> RateLimiter | None:
    """The limiter `client` applies to every attempt (`AsyncFinalPOS.rate_limiter`), if any."""
    limiter = getattr(client, "rate_limiter", None) if client is not None else None
    return limiter if isinstance(limiter, RateLimiter) else None


def _pool_size(client: object | None) -> int | None:
    """The most connections `client` opens to one host, if it says (None: no cap known)."""
    value = getattr(client, "pool_limit_per_host", None) if client is not None else None
    return value if isinstance(value, int) and value > 0 else None


@attrs.frozen(kw_only=True)
class _Pending:
    """An item to send (or to resolve by lookup): everything its task needs."""

    index: int
    key: str
    item: Mapping[str, Any]
    digest: str
    idempotency_key: str
    attempts: int = 0
    reason: str = ""


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
        limiter: RateLimiter | None,
        journal: Journal | None,
        owns_journal: bool,
        client_limiter: RateLimiter | None = None,
        key: KeySpec,
        content: KeySpec = None,
        job_id: str | None,
        drain_timeout: float,
        lookup: Callable[[], AsyncIterable[Any]] | None = None,
        lookup_key: KeySpec = None,
        retrieve: Callable[[str], Awaitable[Any]] | None = None,
        resend_unknown: bool = False,
        stop_on_fatal: bool = True,
        binding: _Binding | None = None,
    ) -> None:
        self._operation = operation
        self._items = items
        self._concurrency = concurrency
        self._limiter = limiter
        self._client_limiter = client_limiter
        self._journal = journal
        self._owns_journal = owns_journal
        self._key = key
        self._content = content
        self._job_id = job_id
        self._drain_timeout = drain_timeout
        self._lookup = lookup
        self._lookup_key = lookup_key
        self._retrieve = retrieve
        self._resend_unknown = resend_unknown
        self._stop_on_fatal = stop_on_fatal
        self._binding = binding or _Binding(None, None, _operation_name(operation), "content")
        self._started = False
        self._bound = False
        self._stopping = False
        self._aborted = False
        self._stop_deadline = 0.0
        self._wakeup: asyncio.Future[None] | None = None
        self._iterator: AsyncGenerator[ItemResult[_T], None] | None = None
        self._contents = ContentIdentities()
        self._seen_keys: set[str] = set()
        self._unreachable_streak = 0
        self._lost_streak = 0
        self._deferred: dict[str, _Pending] = {}
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
    def rate_limiter(self) -> RateLimiter | None:
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
                await self._spot_check(journal)
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
                result = self._result(pending, ItemStatus.UNKNOWN, note=pending.reason)
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
                self._finish(self._result(pending, ItemStatus.UNKNOWN, note=pending.reason))
            self._deferred.clear()
            report.finish()
            if journal is not None:
                if self._owns_journal:
                    journal.close()
                else:
                    journal.flush()

    async def _spot_check(self, journal: Journal) -> None:
        """Refuse to resume when the target holds none of the last records the journal made."""
        if self._retrieve is None:
            return
        ids = journal.created_ids(BULK_SPOT_CHECKS)
        if not ids:
            return
        missing = 0
        for ident in ids:
            try:
                await self._retrieve(ident)
            except NotFoundError:
                missing += 1
            except FinalPOSError as exc:
                # Inconclusive (a 5xx, a timeout): the check cannot tell, so it does not refuse;
                # an unreachable target is then stopped by the run itself (`stop_on_fatal`).
                log.warning("bulk run: could not check record %s in the target: %s", ident, exc)
        if missing == len(ids):
            binding = journal.binding
            where = binding.target if binding is not None else "the target"
            raise TargetChangedError(
                f"journal {journal.path!r} says {ids[-1]!r} and others were created in {where}, "
                f"but the target answers 404 for all {missing} checked: it was reset, or it is "
                "not the server the journal was written for. Nothing was sent; give this run a "
                "new journal file to import every row into it"
            )

    async def _pull(self, job_id: str) -> AsyncGenerator[_Pending | ItemResult[_T], None]:
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
        self, source: AsyncIterator[_Pending | ItemResult[_T]]
    ) -> AsyncGenerator[ItemResult[_T], None]:
        """Send what `source` yields, `concurrency` at a time; yield every result as it ends."""
        report = self.report
        in_flight: set[asyncio.Future[ItemResult[_T]]] = set()
        exhausted = False
        assert self._wakeup is not None
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
                        in_flight.add(asyncio.ensure_future(self._call(pulled)))
                if not in_flight:
                    break
                if self._wakeup.done():
                    # Consumed: a later stop() (a closer deadline) must wake the wait again.
                    self._wakeup = asyncio.get_running_loop().create_future()
                waiters: set[asyncio.Future[Any]] = {*in_flight, self._wakeup}
                timeout: float | None = None
                if self._stopping:
                    timeout = max(0.0, self._stop_deadline - time.monotonic())
                done, _ = await asyncio.wait(
                    waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                done.discard(self._wakeup)
                if not done and self._stopping and time.monotonic() >= self._stop_deadline:
                    # The drain deadline passed: cancel what is left; each task turns its
                    # cancellation into a result, so nothing is dropped.
                    for task in in_flight:
                        task.cancel()
                    await asyncio.wait(in_flight)
                    done = set(in_flight)
                for task in done:
                    in_flight.discard(task)
                    result = task.result()
                    self._watch(result)
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

    def _prepare(
        self, index: int, item: Mapping[str, Any], job_id: str
    ) -> _Pending | ItemResult[_T]:
        """The item's identity, digest and key, checked against the journal."""
        try:
            if not isinstance(item, Mapping):
                raise TypeError(
                    f"bulk item {index} is a {type(item).__name__}; items must be mappings of "
                    "field names to values (the operation's keyword arguments)"
                )
            digest = content_digest(_read(self._content, item, index, "content"))
            key = self._identity(index, item, digest)
            idem = _idempotency_key(job_id, key, digest)
        except Exception as exc:
            return ItemResult(
                index=index,
                key=str(index),
                status=ItemStatus.FAILED,
                item=item if isinstance(item, Mapping) else {"value": item},
                idempotency_key="",
                error=exc,
            )
        pending = _Pending(index=index, key=key, item=item, digest=digest, idempotency_key=idem)
        entry = self._journal.lookup(key) if self._journal is not None else None
        if entry is None or entry.status == ItemStatus.FAILED.value:
            return pending
        if not entry.matches(digest):
            return self._result(
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
            return self._result(pending, ItemStatus.SKIPPED, created_id=entry.created_id)
        if self._resend_unknown:
            return pending
        note = f"outcome unknown since an earlier run ({entry.error or 'its answer was lost'})"
        if self._lookup is not None:
            self._deferred[key] = attrs.evolve(pending, reason=note)
            return pending  # `_pump` sees it is deferred and does not send it
        return self._result(pending, ItemStatus.UNKNOWN, note=note + "; not sent again")

    def _identity(self, index: int, item: Mapping[str, Any], digest: str) -> str:
        if self._key is None:
            return self._contents.name(digest)
        value = _read(self._key, item, index, "key")
        if value is None or value == "":
            raise ValueError(f"bulk item {index} has an empty key ({_identity_rule(self._key)})")
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
        self._deferred[result.key] = _Pending(
            index=result.index,
            key=result.key,
            item=result.item,
            digest=result.digest,
            idempotency_key=result.idempotency_key,
            attempts=result.attempts,
            reason=result.reason,
        )
        return True

    async def _resolve_deferred(self) -> AsyncGenerator[ItemResult[_T], None]:
        """One streamed pass over the target; found items are created, the rest sent again."""
        assert self._lookup is not None
        report = self.report
        deferred = self._deferred
        started = time.monotonic()
        try:
            async for record in self._lookup():
                report.lookup_records += 1
                found = _read(self._lookup_key, record, report.lookup_records, "lookup_key")
                pending = deferred.pop(str(found), None) if found is not None else None
                if pending is not None:
                    result = self._result(
                        pending, ItemStatus.SUCCEEDED, created_id=_id_of(record), found=True
                    )
                    self._finish(result)
                    yield result
                if not deferred or self._stopping:
                    break
        except Exception as exc:
            note = f"outcome unknown, and the lookup failed: {describe_error(exc)}"
            for key, pending in list(deferred.items()):
                deferred[key] = attrs.evolve(pending, reason=note)
            return
        finally:
            report.lookup_seconds += time.monotonic() - started
        if self._stopping:
            return
        # Not in the target: send them again (same key). A second lost answer is final here.
        again = list(deferred.values())
        deferred.clear()
        resent = 0

        async def source() -> AsyncGenerator[_Pending | ItemResult[_T], None]:
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
                self._finish(self._result(pending, ItemStatus.CANCELLED, note=note))

    async def _call(self, pending: _Pending) -> ItemResult[_T]:
        """One item: wait for the limiter, call the operation, turn any outcome into a result."""
        started = time.monotonic()
        sent = False
        try:
            if self._limiter is not None:
                await self._limiter.acquire()
            sent = True
            if self._resend_unknown:
                value: Any = await self._operation(
                    **pending.item, idempotency_key=pending.idempotency_key
                )
            else:
                with safe_retries_only():
                    value = await self._operation(
                        **pending.item, idempotency_key=pending.idempotency_key
                    )
        except asyncio.CancelledError:
            # Only the engine cancels these tasks (drain deadline); report, don't propagate.
            if not sent:
                return self._result(pending, ItemStatus.CANCELLED)
            return self._result(
                pending,
                ItemStatus.UNKNOWN,
                attempts=pending.attempts + 1,
                elapsed=time.monotonic() - started,
                note="cancelled in flight: it may have been created",
            )
        except Exception as exc:
            unknown = isinstance(exc, FinalPOSError) and exc.maybe_processed
            return self._result(
                pending,
                ItemStatus.UNKNOWN if unknown else ItemStatus.FAILED,
                error=exc,
                attempts=pending.attempts + _attempts_of(exc),
                elapsed=time.monotonic() - started,
            )
        attempts = 1
        if _is_raw_response(value):
            attempts = int(value.attempts)
            value = value.parse()
        return self._result(
            pending,
            ItemStatus.SUCCEEDED,
            value=value,
            attempts=pending.attempts + attempts,
            created_id=_id_of(value),
            elapsed=time.monotonic() - started,
        )

    def _result(self, pending: _Pending, status: ItemStatus, **fields: Any) -> ItemResult[_T]:
        fields.setdefault("attempts", pending.attempts)
        return ItemResult(
            index=pending.index,
            key=pending.key,
            status=status,
            item=pending.item,
            idempotency_key=pending.idempotency_key,
            digest=pending.digest,
            **fields,
        )

    def _finish(self, result: ItemResult[_T]) -> None:
        """Count a finished item, record it in the journal, stop on errors no item can fix."""
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
        if status is ItemStatus.FAILED and _not_processed(result.error):
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

    def _watch(self, result: ItemResult[_T]) -> None:
        """Stop starting items on errors no item can fix (`stop_on_fatal`).

        A 401/403 stops at once. A run of items that cannot reach the target, or of items whose
        answers are all lost (an outage behind a proxy answering 5xx), stops after a few in a
        row: each further item would only fail too, or worse, leave one more unknown outcome.
        """
        if not self._stop_on_fatal or self._aborted:
            return
        error = result.error
        if isinstance(error, (AuthenticationError, PermissionDeniedError)):
            self._abort(describe_error(error))
            return
        unreachable = error is not None and _unreachable(error)
        lost = result.status is ItemStatus.UNKNOWN and error is not None
        self._unreachable_streak = self._unreachable_streak + 1 if unreachable else 0
        self._lost_streak = self._lost_streak + 1 if lost else 0
        if self._unreachable_streak >= BULK_UNREACHABLE_STREAK:
            assert error is not None
            self._abort(
                f"the target is unreachable ({self._unreachable_streak} items in a row): "
                f"{describe_error(error)}"
            )
        elif self._lost_streak >= self._concurrency + BULK_FAILING_STREAK:
            # Past `concurrency`: not only the items in flight during one stall (they time out
            # together) but also items started after it lost their answers.
            assert error is not None
            self._abort(
                f"the target keeps failing ({self._lost_streak} items in a row with no answer): "
                f"{describe_error(error)}"
            )

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


class ContentIdentities:
    """Names items by their content: the first of a content is its digest, the n-th repeat
    `digest#n`, so identical items stay distinct and a re-run names them the same way.

    Memory: a set of 64-bit ints for the contents seen (a 64-bit prefix is plenty to tell the
    contents of one input apart), plus a counter that holds only the repeated ones.
    """

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._repeats: collections.Counter[str] = collections.Counter()

    def name(self, digest: str) -> str:
        """The identity of the next item whose content has this `content_digest`."""
        short = int(digest[:16], 16)
        if short in self._seen:
            self._repeats[digest] += 1
            return f"{digest}#{self._repeats[digest]}"
        self._seen.add(short)
        return digest


def content_digest(content: object) -> str:
    """A hash of an item's content (canonical JSON, keys sorted): 32 hex digits."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def idempotency_key_for(job_id: str, key: str, content: object) -> str:
    """The idempotency key of one item: stable for the same job, identity and content.

    Content is part of it so that an item fixed between two runs (after a 400) is not answered
    with the server's replay of the first, refused attempt.
    """
    return _idempotency_key(job_id, key, content_digest(content))


def _idempotency_key(job_id: str, key: str, digest: str) -> str:
    hashed = hashlib.sha256(f"{job_id}\x00{key}\x00{digest}".encode()).hexdigest()
    return f"bulk-{hashed[:40]}"


def _read(spec: KeySpec, item: Any, index: int, name: str) -> Any:
    """Apply a key/content spec to an item: None is the item itself."""
    if spec is None:
        return item
    if callable(spec):
        return spec(item)
    if isinstance(item, Mapping):
        fields = cast("Mapping[str, Any]", item)
        if spec in fields:
            return fields[spec]
        raise KeyError(f"bulk item {index} has no field {spec!r} (the {name}= field)")
    for attr in (spec, _snake(spec)):
        if hasattr(item, attr):
            return getattr(item, attr)
    raise KeyError(f"bulk item {index} has no field {spec!r} (the {name}= field)")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _canonical(value: object) -> object:
    """JSON fallback for item values that are not plain JSON (models, decimals, dates)."""
    if attrs.has(type(value)):
        return attrs.asdict(value)  # type: ignore[arg-type]
    return str(value)


def _not_processed(error: BaseException | None) -> bool:
    """True when the target did nothing with the item: never reached, or refused for the
    credentials or the rate (nothing to remember about it, nothing about the row to fix)."""
    if isinstance(error, (AuthenticationError, PermissionDeniedError, RateLimitError)):
        return True
    return isinstance(error, APIConnectionError) and not error.maybe_processed


def _unreachable(error: BaseException) -> bool:
    """The target cannot be reached at all (refused, DNS, TLS), as opposed to a busy pool."""
    if not isinstance(error, APIConnectionError) or error.maybe_processed:
        return False
    return not (isinstance(error, APITimeoutError) and error.kind in ("pool", "deadline"))


def _raw_twin(operation: Callable[..., Awaitable[_T]]) -> Callable[..., Awaitable[_T]]:
    """For a generated resource method, its `with_raw_response` twin; else the operation itself.

    The twin answers a `RawResponse`, which the engine unwraps to the same model while reading
    its attempt count, so every result's `attempts` includes the client's retries.
    """
    owner = getattr(operation, "__self__", None)
    name = getattr(operation, "__name__", None)
    if owner is None or not isinstance(name, str):
        return operation
    try:
        raw_resource = owner.with_raw_response
    except AttributeError:
        return operation
    twin: object = getattr(raw_resource, name, None)
    if not callable(twin):
        return operation
    # The raw twin answers `RawResponse[_T]`; the engine unwraps it (see the docstring).
    return cast("Callable[..., Awaitable[_T]]", twin)


def _is_raw_response(value: object) -> bool:
    return isinstance(getattr(value, "attempts", None), int) and callable(
        getattr(value, "parse", None)
    )


def _attempts_of(error: BaseException) -> int:
    attempts = getattr(error, "attempts", None)
    return attempts if isinstance(attempts, int) and attempts > 0 else 1


def _id_of(value: object) -> str | None:
    """The id of what the operation returned (a model's `id` or a mapping's `"id"`)."""
    ident: object = (
        cast("Mapping[str, Any]", value).get("id")
        if isinstance(value, Mapping)
        else getattr(value, "id", None)
    )
    return ident if isinstance(ident, str) else (str(ident) if ident is not None else None)
