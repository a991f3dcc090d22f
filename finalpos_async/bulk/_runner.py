"""`client.bulk`: checks a run's options and builds its `BulkJob` (nothing is sent before that
job is iterated or awaited)."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, cast

from .._constants import BULK_CONCURRENCY, BULK_DRAIN_TIMEOUT, IMPORT_BURST_SECONDS
from .._resource import is_resource_method, raw_twin
from ._items import Items, KeySpec, identity_rule
from ._job import BulkJob
from ._journal import JournalStore
from ._limiter import Limiter, RateLimiter
from ._target import Binding, BulkClient
from ._target import operation_name as name_of  # `run` has a parameter `operation_name`
from ._target_copy import Lister, check_lookup

__all__ = ["BulkOperation", "BulkRunner"]

_T = TypeVar("_T")

log = logging.getLogger("finalpos.bulk")

BulkOperation = Callable[..., Awaitable[_T]]
"""An async callable taking an item's fields as keyword arguments plus `idempotency_key=` (and
`retry_unsafe=`, if it declares it: see `BulkRunner.run`)."""


class BulkRunner:
    """`client.bulk`: runs one operation over many inputs (see `run`).

    It can also be used without a client (`BulkRunner().run(...)`); with one, `concurrency` is
    capped at the client's connection pool size and the journal is bound to the client's target.
    """

    def __init__(self, client: BulkClient | None = None) -> None:
        self._client = client

    def run(
        self,
        operation: Callable[..., Awaitable[_T]],
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
        lookup: Lister | None = None,
        lookup_key: KeySpec = None,
        lookup_by: Literal["key", "content"] | None = None,
        retrieve: Callable[[str], Awaitable[Any]] | None = None,
        resend_unknown: bool = False,
        stop_on_fatal: bool = True,
        target: str | None = None,
        operation_name: str | None = None,
        rotated_credentials: bool = False,
    ) -> BulkJob[_T]:
        """Run `operation(**item, idempotency_key=...)` for every item; returns a `BulkJob`,
        which starts when it is iterated or awaited::

            async for result in client.bulk.run(client.customers.create, rows, journal="j.db"):
                if not result.ok:
                    print(result.index, result.reason)

            report = await client.bulk.run(client.customers.create, rows)  # counts only

        - `operation`: a resource method (`client.customers.create`, run through its raw twin,
          `finalpos_async.raw_twin`, so each result's `attempts` counts the client's retries),
          or any async callable. Each item's field names are checked against its signature
          first: an item with a field it does not take (or without a required one) ends
          `FAILED`, naming the field, and nothing is sent. Where the operation declares
          `retry_unsafe` (every resource method does), it is called with `retry_unsafe=False`
          (see `resend_unknown`); a wrapper that calls the client should take it and pass it on.
        - `concurrency`: items in flight at once (default 16), capped at the client's pool size.
        - `rate_limit`: items started per second (bursts of a tenth of a second's worth), or a
          limiter (`RateLimiter`, `RedisRateLimiter`) shared with other runs. The
          client's own `rate_limit` takes a token per HTTP attempt (retries included); with
          both, the stricter one sets the pace.
        - `journal`: a SQLite file, or a PostgreSQL database (`"postgresql://user@host/db"`:
          many jobs in one database, each under its job id; the `postgres` extra), or any
          `JournalStore` (`journal_store` says which a string names), recording every intent
          and outcome, bound to this target (the client's base URL or `target`), credentials,
          operation and identity rule (else `JournalMismatchError`, before any request). A
          re-run skips items that were created and sends the others under the same keys.
        - `key`: an item's identity across runs: a field name such as `"email"`, or a function
          of the item; unique. By default, its content (identical items told apart by their
          order): added items are imported, an edited item counts as new. With a `key`, an item
          journaled as created whose content changed is not sent: it ends `CHANGED`.
        - `content`: what of an item is its content, in its identity and idempotency key (a
          field name or a function; the whole item by default).
        - `digest`: where an item holds its content's digest (`content_digest(content)`) when
          the caller has made it already (a field name, passed on to the operation like any
          field, or a function): the run takes it instead of hashing the content again.
        - `job_id`: fixes the job identity, part of every idempotency key. By default it is
          the journal's, else derived from the target, the operation and the identity rule, so
          a re-run sends the same keys even with a new journal (or none); give a fresh one
          (`uuid.uuid4().hex`) to create the same items again as new records.
        - `drain_timeout`: after `stop()` or a cancel, how long in-flight items may finish.
        - `lookup`: lists the records in the target from the `skip`-th on
          (`client.customers.list`), to resolve items whose answer was lost (or whose run ended
          while they were sent) after the main pass: found ones count as created
          (`found=True`), the others are sent again under the same key, while a round settles
          something. The target is read once per run, into a temporary copy on disk; a later
          round reads only the records listed after the last one read (`skip=`). With
          `key`, a record is matched by its key (`lookup_key` reads a listed record's key;
          default: `key`, as a mapping key or an attribute); with no `key`, by the fields the
          item sent, compared in their typed form, identical items counted (see
          `finalpos_async.bulk._matching`); a record that only nearly matches is reported, the
          item stays unknown. `lookup_by="content"` matches by fields even with a `key` (a key
          that itself names the content, as `finalpos import` without `--key` does).
        - `retrieve`: fetches one record by id (`client.customers.retrieve`); before resuming,
          the run checks that the target still holds the last records the journal says were
          created, and raises `TargetChangedError` if none of them is there.
        - `resend_unknown`: send items whose answer was lost again (same key, client retries
          allowed). Safe only when the server honours `Idempotency-Key` (the sandbox does; the
          API's documentation does not say) or they are known not to be in the target. Off by
          default: they end `UNKNOWN`.
        - `stop_on_fatal`: stop starting items after a 401/403, or when several items in a row
          cannot reach the target: `stop_reason` says why, the outcome is "aborted", and the
          items not started are left for a re-run.
        - `target`, `operation_name`: how the journal names the target and the operation
          (default: the client's base URL; the resource and method, e.g. `customers.create`).
        - `rotated_credentials`: continue a journal written with another API key for the same
          target (the key was rotated); without it such a journal raises
          `JournalMismatchError`.
        """
        _check_options(
            drain_timeout, key=key, content=content, digest=digest, lookup_key=lookup_key
        )
        if lookup is not None:
            check_lookup(lookup)
        client_limiter = self._client.rate_limiter if self._client is not None else None
        return BulkJob(
            _answering_raw(operation),
            items,
            concurrency=self._capped(concurrency),
            limiter=_run_limiter(rate_limit, client_limiter),
            client_limiter=client_limiter,
            journal=journal,
            key=key,
            content=content,
            digest=digest,
            job_id=job_id,
            drain_timeout=drain_timeout,
            lookup=lookup,
            lookup_key=lookup_key,
            lookup_by=lookup_by or ("content" if key is None else "key"),
            retrieve=retrieve,
            resend_unknown=resend_unknown,
            stop_on_fatal=stop_on_fatal,
            binding=self._binding(target, operation_name or name_of(operation), key),
            rotated_credentials=rotated_credentials,
        )

    def _binding(self, target: str | None, operation: str, key: KeySpec) -> Binding:
        return Binding(self._client, target, operation, identity_rule(key))

    def _capped(self, concurrency: int) -> int:
        """`concurrency`, checked, and capped at the client's pool size."""
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        pool = self._client.pool_limit_per_host if self._client is not None else 0
        if pool > 0 and concurrency > pool:
            log.warning(
                "bulk concurrency %d exceeds the client's connection pool (%d); using %d so that "
                "items wait in the bulk engine, not in the pool",
                concurrency,
                pool,
                pool,
            )
            return pool
        return concurrency


def _check_options(drain_timeout: float, **specs: KeySpec) -> None:
    if drain_timeout < 0:
        raise ValueError(f"drain_timeout must be >= 0 seconds, got {drain_timeout!r}")
    for name, spec in specs.items():
        if not (spec is None or isinstance(spec, str) or callable(spec)):
            raise TypeError(f"{name} must be None, a field name or a callable, got {spec!r}")


def _run_limiter(
    rate_limit: float | Limiter | None, client_limiter: Limiter | None
) -> Limiter | None:
    """The limiter the run takes a token from per item (None: only the client's, if any)."""
    limiter: Limiter | None
    if rate_limit is None or isinstance(rate_limit, Limiter):
        limiter = rate_limit
    else:
        # A tenth of a second's worth of burst, like `finalpos import --rate`: a run is steady,
        # and a bucket refilled during a stall would release a second's worth at once.
        limiter = RateLimiter(rate_limit, burst=max(1.0, rate_limit * IMPORT_BURST_SECONDS))
    if limiter is client_limiter:
        # The client already takes a token per attempt; one more per item would halve it.
        return None
    return limiter


def _answering_raw(operation: Callable[..., Awaitable[_T]]) -> Callable[..., Awaitable[_T]]:
    """A resource method's raw twin (`raw_twin`); any other operation as it is.

    The twin answers a `RawResponse`, which the engine unwraps to the same model while reading
    its attempt count, so every result's `attempts` includes the client's retries.
    """
    if not is_resource_method(operation):
        return operation
    # The raw twin answers `RawResponse[_T]`; the engine unwraps it (see the docstring).
    return cast("Callable[..., Awaitable[_T]]", raw_twin(operation))
