"""The bulk engine: one operation over many inputs, bounded, streaming, resumable.

Shape of a run (`BulkJob._run`)::

    input (iterable / async iterable) --pull one at a time, only while a slot is free-->
        journal says done?  -> yield SKIPPED
        else                -> task: [rate limiter] -> operation(**item, idempotency_key=k)
    asyncio.wait(in-flight, FIRST_COMPLETED) -> record in journal -> yield result

At most `concurrency` tasks exist at any time, so memory does not grow with the input: there is no
list of all tasks and no `gather` of everything. Items wait for a slot here, in the engine, never
in the connection pool (`concurrency` is capped at the client's pool size). Retries happen inside
the operation (the client's policy and retry budget); the engine gives each item one idempotency
key derived from the job id, the item's key and its content, so every attempt of one run and every
re-run of the same job send the same key and the server can replay instead of creating twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
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
from typing import Any, Generic, TypeVar

import attrs

from .._constants import BULK_CONCURRENCY, BULK_DRAIN_TIMEOUT
from ._journal import Journal
from ._limiter import RateLimiter
from ._results import BulkReport, ItemResult, ItemStatus, describe_error

__all__ = ["BulkJob", "BulkRunner", "Items", "KeySpec", "Operation"]

_T = TypeVar("_T")

log = logging.getLogger("finalpos.bulk")

Operation = Callable[..., Awaitable[_T]]
"""An async callable taking an item's fields as keyword arguments plus `idempotency_key=`."""

Items = Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]]
"""The inputs of a run: any iterable or async iterable of field mappings, pulled lazily."""

KeySpec = str | Callable[[Mapping[str, Any]], object] | None
"""An item's identity: None (its position), a field name, or a function of the item."""


class BulkRunner:
    """`client.bulk`: runs one operation over many inputs (see `run`).

    It can also be used without a client (`BulkRunner().run(...)`); with one, `concurrency` is
    capped at the client's connection pool size.
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
        job_id: str | None = None,
        drain_timeout: float = BULK_DRAIN_TIMEOUT,
    ) -> BulkJob[_T]:
        """Run `operation(**item, idempotency_key=...)` for every item; returns a `BulkJob`.

        Nothing starts until the job is iterated or awaited::

            async for result in client.bulk.run(client.customers.create, rows, journal="j.db"):
                if not result.ok:
                    print(result.index, result.reason)

            report = await client.bulk.run(client.customers.create, rows)  # counts only

        - `concurrency`: items in flight at once (default 16), capped at the client's pool size.
        - `rate_limit`: items started per second, or a `RateLimiter` shared with other runs.
          How it combines with the client's own `rate_limit` (`AsyncFinalPOS(rate_limit=...)`):
          the client's limiter takes a token for every HTTP attempt it sends, retries included,
          for this run and for everything else the client does; a run's limiter takes one token
          per item, when the item starts. With both, the stricter one sets the pace. Left unset,
          the run is paced by the client's limiter alone (`job.rate_limiter` is then the
          client's); passing the client's own limiter here is the same as leaving it unset.
        - `journal`: a SQLite file (or `Journal`) recording every outcome; re-running the same job
          with it skips items that succeeded and retries the others under the same keys.
        - `key`: an item's identity in the journal and its idempotency key: its position by
          default, a field name such as `"email"`, or a function of the item. Keys must be unique.
        - `job_id`: fixes the job identity without a journal (the journal's own id otherwise, a
          random one if neither), so a re-run with the same id sends the same idempotency keys.
        - `drain_timeout`: after `stop()` or a cancel, how long in-flight items may finish before
          they are cancelled.
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
        if not (key is None or isinstance(key, str) or callable(key)):
            raise TypeError(f"key must be None, a field name or a callable, got {key!r}")
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
            job_id=job_id,
            drain_timeout=drain_timeout,
        )


def _client_limiter(client: object | None) -> RateLimiter | None:
    """The limiter `client` applies to every attempt (`AsyncFinalPOS.rate_limiter`), if any."""
    limiter = getattr(client, "rate_limiter", None) if client is not None else None
    return limiter if isinstance(limiter, RateLimiter) else None


def _pool_size(client: object | None) -> int | None:
    """The most connections `client` opens to one host, if it says (None: no cap known)."""
    if client is None:
        return None
    for name in ("pool_limit_per_host", "limit_per_host", "_limit_per_host"):
        value = getattr(client, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class BulkJob(Generic[_T]):
    """One bulk run: iterate it for results as they finish, or await it for the final report.

    `report` holds live counters (`BulkReport`) while it runs. `stop()` ends it gracefully: no new
    items are pulled, in-flight ones get `drain_timeout` seconds to finish, then the rest are
    yielded as `CANCELLED`. Cancelling the task that iterates it does the same drain (without
    yielding), records what finished in the journal, and re-raises. A job runs once.
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
        job_id: str | None,
        drain_timeout: float,
    ) -> None:
        self._operation = operation
        self._items = items
        self._concurrency = concurrency
        self._limiter = limiter
        self._client_limiter = client_limiter
        self._journal = journal
        self._owns_journal = owns_journal
        self._key = key
        self._job_id = job_id
        self._drain_timeout = drain_timeout
        self._started = False
        self._stopping = False
        self._stop_deadline = 0.0
        self._wakeup: asyncio.Future[None] | None = None
        self._iterator: AsyncIterator[ItemResult[_T]] | None = None
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
        """True once `stop()` was called (or the run was cancelled)."""
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
        if iterator is not None and hasattr(iterator, "aclose"):
            await iterator.aclose()

    # -- the run ---------------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[ItemResult[_T]]:
        report = self.report
        report.started_at = time.monotonic()
        journal = self._journal
        if journal is not None:
            journal.open()
            if self._job_id is None:
                self._job_id = journal.job_id
        if self._job_id is None:
            self._job_id = uuid.uuid4().hex
        job_id = self._job_id
        self._wakeup = asyncio.get_running_loop().create_future()
        if self._stopping:
            self._wakeup.set_result(None)

        source = self._items
        async_source: AsyncIterator[Mapping[str, Any]] | None = None
        sync_source: Iterator[Mapping[str, Any]] | None = None
        if isinstance(source, AsyncIterable):
            async_source = source.__aiter__()
        else:
            sync_source = iter(source)
        in_flight: set[asyncio.Future[ItemResult[_T]]] = set()
        index = -1
        exhausted = False
        try:
            while True:
                while not exhausted and not self._stopping and len(in_flight) < self._concurrency:
                    try:
                        if async_source is not None:
                            item = await async_source.__anext__()
                        else:
                            assert sync_source is not None
                            item = next(sync_source)
                    except (StopIteration, StopAsyncIteration):
                        exhausted = True
                        break
                    index += 1
                    report.submitted += 1
                    started = self._start(index, item, job_id)
                    if isinstance(started, ItemResult):
                        self._finish(started)
                        yield started
                    else:
                        in_flight.add(started)
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
                    # cancellation into a CANCELLED result, so nothing is dropped.
                    for task in in_flight:
                        task.cancel()
                    await asyncio.wait(in_flight)
                    done = set(in_flight)
                for task in done:
                    in_flight.discard(task)
                    result = task.result()
                    self._finish(result)
                    yield result
            report.outcome = "stopped" if self._stopping else "completed"
        except BaseException:
            # Cancelled, closed early, or the input raised: stop pulling and drain (bounded).
            report.outcome = "cancelled"
            drain = self._drain_timeout
            if self._stopping:  # stop() came first: its deadline still holds
                drain = min(drain, max(0.0, self._stop_deadline - time.monotonic()))
            self._stopping = True
            await self._abandon(in_flight, drain)
            raise
        finally:
            report.finished_at = time.monotonic()
            if journal is not None:
                if self._owns_journal:
                    journal.close()
                else:
                    journal.flush()

    def _start(
        self, index: int, item: Mapping[str, Any], job_id: str
    ) -> ItemResult[_T] | asyncio.Future[ItemResult[_T]]:
        """Make the item's key and idempotency key; a finished result or a running task."""
        try:
            if not isinstance(item, Mapping):
                raise TypeError(
                    f"bulk item {index} is a {type(item).__name__}; items must be mappings of "
                    "field names to values (the operation's keyword arguments)"
                )
            key = self._key_of(index, item)
            idem = idempotency_key_for(job_id, key, item)
        except Exception as exc:
            return ItemResult(
                index=index,
                key=str(index),
                status=ItemStatus.FAILED,
                item=item if isinstance(item, Mapping) else {"value": item},
                idempotency_key="",
                error=exc,
            )
        if self._journal is not None:
            entry = self._journal.lookup(key)
            if entry is not None and entry.status == ItemStatus.SUCCEEDED.value:
                return ItemResult(
                    index=index,
                    key=key,
                    status=ItemStatus.SKIPPED,
                    item=item,
                    idempotency_key=entry.idempotency_key,
                    created_id=entry.created_id,
                )
        return asyncio.ensure_future(self._call(index, key, item, idem))

    def _key_of(self, index: int, item: Mapping[str, Any]) -> str:
        spec = self._key
        if spec is None:
            return str(index)
        if isinstance(spec, str):
            if spec not in item:
                raise KeyError(f"bulk item {index} has no field {spec!r} (the key= field)")
            return str(item[spec])
        return str(spec(item))

    async def _call(
        self, index: int, key: str, item: Mapping[str, Any], idem: str
    ) -> ItemResult[_T]:
        """One item: wait for the limiter, call the operation, turn any outcome into a result."""
        started = time.monotonic()
        sent = False
        try:
            if self._limiter is not None:
                await self._limiter.acquire()
            sent = True
            value: Any = await self._operation(**item, idempotency_key=idem)
        except asyncio.CancelledError:
            # Only the engine cancels these tasks (drain deadline); report, don't propagate.
            return ItemResult(
                index=index,
                key=key,
                status=ItemStatus.CANCELLED,
                item=item,
                idempotency_key=idem,
                attempts=1 if sent else 0,
                elapsed=time.monotonic() - started,
            )
        except Exception as exc:
            return ItemResult(
                index=index,
                key=key,
                status=ItemStatus.FAILED,
                item=item,
                idempotency_key=idem,
                error=exc,
                attempts=_attempts_of(exc),
                elapsed=time.monotonic() - started,
            )
        attempts = 1
        if _is_raw_response(value):
            attempts = int(value.attempts)
            value = value.parse()
        return ItemResult(
            index=index,
            key=key,
            status=ItemStatus.SUCCEEDED,
            item=item,
            idempotency_key=idem,
            value=value,
            attempts=attempts,
            created_id=_id_of(value),
            elapsed=time.monotonic() - started,
        )

    def _finish(self, result: ItemResult[_T]) -> None:
        """Count a finished item and record it in the journal."""
        self.report.count(result)
        journal = self._journal
        if journal is None or result.status is ItemStatus.SKIPPED or not result.idempotency_key:
            return
        if result.status is ItemStatus.CANCELLED:
            # Not a final outcome: a re-run sends it again (same key, so never twice).
            return
        journal.record(
            result.key,
            result.status.value,
            idempotency_key=result.idempotency_key,
            created_id=result.created_id,
            attempts=result.attempts,
            error=describe_error(result.error) if result.error is not None else None,
        )

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


def idempotency_key_for(job_id: str, key: str, item: Mapping[str, Any]) -> str:
    """The idempotency key of one item: stable for the same job, item key and content.

    Content is part of it so that an item fixed between two runs (after a 400) is not answered
    with the server's replay of the first, failed attempt.
    """
    digest = hashlib.sha256()
    digest.update(job_id.encode())
    digest.update(b"\x00")
    digest.update(key.encode())
    digest.update(b"\x00")
    digest.update(
        json.dumps(item, sort_keys=True, separators=(",", ":"), default=_canonical).encode()
    )
    return f"bulk-{digest.hexdigest()[:40]}"


def _canonical(value: object) -> object:
    """JSON fallback for item values that are not plain JSON (models, decimals, dates)."""
    if attrs.has(type(value)):
        return attrs.asdict(value)  # type: ignore[arg-type]
    return str(value)


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
    twin = getattr(raw_resource, name, None)
    return twin if callable(twin) else operation


def _is_raw_response(value: object) -> bool:
    return isinstance(getattr(value, "attempts", None), int) and callable(
        getattr(value, "parse", None)
    )


def _attempts_of(error: BaseException) -> int:
    attempts = getattr(error, "attempts", None)
    return attempts if isinstance(attempts, int) and attempts > 0 else 1


def _id_of(value: object) -> str | None:
    """The id of what the operation returned (a model's `id` or a mapping's `"id"`)."""
    ident = value.get("id") if isinstance(value, Mapping) else getattr(value, "id", None)
    return ident if isinstance(ident, str) else (str(ident) if ident is not None else None)
