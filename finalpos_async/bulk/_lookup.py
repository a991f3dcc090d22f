"""Asking the target what it holds: the spot check before a resume, and the lost-answer lookup.

- `spot_check`: before resuming, retrieve the last few records the journal says were created;
  when the target answers 404 for all of them, it is not the target the journal was written
  for (or it was reset), and nothing is sent.
- `TargetSearch`: one streamed pass over a listing of the target (`client.customers.list`, a
  paginator walked with `async for`) that finds the items whose answer was lost, by key.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import attrs

from .._constants import BULK_SPOT_CHECKS
from .._exceptions import FinalPOSError, NotFoundError
from ._items import KeySpec, read_field
from ._journal import JournalError, JournalStore
from ._matching import ContentIndex
from ._outcome import Pending, id_of, result_of
from ._results import BulkReport, ItemResult, ItemStatus, describe_error

__all__ = [
    "TargetChangedError",
    "TargetSearch",
    "holds_records",
    "index_target",
    "listing",
    "spot_check",
]

log = logging.getLogger("finalpos.bulk")


@contextlib.asynccontextmanager
async def listing(
    lookup: Callable[[], AsyncIterable[Any]],
) -> AsyncGenerator[AsyncIterator[Any], None]:
    """The target's records, closed on leaving even when left early (an async generator left
    at a `break` would otherwise be finalized by the garbage collector, with its pages)."""
    records = aiter(lookup())
    try:
        yield records
    finally:
        close = getattr(records, "aclose", None)
        if close is not None:
            await close()


async def holds_records(lookup: Callable[[], AsyncIterable[Any]]) -> bool:
    """Whether the target lists at least one record (reads one page)."""
    async with listing(lookup) as records:
        async for _ in records:
            return True
    return False


async def index_target(
    journal: JournalStore,
    lookup: Callable[[], AsyncIterable[Any]],
    lookup_key: KeySpec,
    report: BulkReport,
) -> None:
    """One streamed pass over the target, its records' keys kept in the journal (memory stays
    flat), so that every item can be looked up before it is sent (`JournalStore.in_target`)."""
    report.phase = "looking up"
    started = time.monotonic()
    batch: list[tuple[str, str | None]] = []
    try:
        async with listing(lookup) as records:
            async for record in records:
                report.lookup_records += 1
                key = read_field(lookup_key, record, report.lookup_records, "lookup_key")
                if key is not None:
                    batch.append((str(key), id_of(record)))
                if len(batch) >= 1000:
                    journal.index_target(batch)
                    batch.clear()
        journal.index_target(batch)
    finally:
        report.lookup_seconds += time.monotonic() - started
        report.phase = "sending"


class TargetChangedError(JournalError):
    """The target no longer holds the records the journal says were created (nothing was sent).

    Raised before a resume when every record checked answers 404: the server was reset, or the
    journal belongs to another server at the same address (an in-memory sandbox restarted).
    """


async def spot_check(journal: JournalStore, retrieve: Callable[[str], Awaitable[Any]]) -> None:
    """Refuse to resume when the target holds none of the last records the journal made."""
    ids = journal.created_ids(BULK_SPOT_CHECKS)
    if not ids:
        return
    missing = 0
    for ident in ids:
        try:
            await retrieve(ident)
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


class TargetSearch:
    """One pass over `lookup()` for the items held in `deferred` (key -> item).

    Items are matched by their key (`lookup_key` reads a listed record's), or, with no key
    (`lookup_key=None`), by the fields they sent (`_matching`; `created` tells how many items
    of each content are known to be created). `find` yields a `SUCCEEDED` result (`found=True`)
    for each held item in the target, taking it out of `deferred`, and an `UNKNOWN` one for an
    item only nearly matched by a record; what is left there was not found. When the listing
    fails, `failed` is set and the items left get the failure as their reason: they stay unknown.
    """

    def __init__(
        self,
        lookup: Callable[[], AsyncIterable[Any]],
        lookup_key: KeySpec,
        report: BulkReport,
        *,
        by_content: bool = False,
        content: Callable[[Pending], object] = lambda pending: pending.item,
        created: Callable[[list[str]], dict[str, int]] = lambda digests: {},
    ) -> None:
        self._lookup = lookup
        self._lookup_key = lookup_key
        self._report = report
        self._by_content = by_content
        self._content = content
        self._created = created
        self.failed = False

    async def find(
        self, deferred: dict[str, Pending], stopping: Callable[[], bool]
    ) -> AsyncGenerator[ItemResult[Any], None]:
        """Walk the listing until every held item is found, or `stopping()` says so."""
        report = self._report
        started = time.monotonic()
        try:
            if self._by_content:
                async for result in self._find_by_content(deferred, stopping):
                    yield result
                return
            async with listing(self._lookup) as records:
                async for record in records:
                    report.lookup_records += 1
                    found = read_field(
                        self._lookup_key, record, report.lookup_records, "lookup_key"
                    )
                    pending = deferred.pop(str(found), None) if found is not None else None
                    if pending is not None:
                        report.lookup_found += 1
                        yield result_of(
                            pending, ItemStatus.SUCCEEDED, created_id=id_of(record), found=True
                        )
                    if not deferred or stopping():
                        break
        except Exception as exc:
            self.failed = True
            note = f"outcome unknown, and the lookup failed: {describe_error(exc)}"
            for key, pending in list(deferred.items()):
                deferred[key] = attrs.evolve(pending, reason=note)
        finally:
            report.lookup_seconds += time.monotonic() - started

    async def _find_by_content(
        self, deferred: dict[str, Pending], stopping: Callable[[], bool]
    ) -> AsyncGenerator[ItemResult[Any], None]:
        report = self._report
        index = ContentIndex()
        unmatchable: list[Pending] = []
        for pending in deferred.values():
            if not index.add(pending.key, pending.digest, self._content(pending)):
                unmatchable.append(pending)
        for pending in unmatchable:
            del deferred[pending.key]
            note = "outcome unknown; its content is not a mapping of fields, so it cannot be found"
            yield result_of(pending, ItemStatus.UNKNOWN, note=note)
        created = self._created(index.digests())
        async with listing(self._lookup) as records:
            async for record in records:
                report.lookup_records += 1
                if index.see(record, id_of(record)) and index.complete(created):
                    break
                if stopping():
                    # An incomplete count proves nothing: they all stay held (unknown).
                    self.failed = True
                    return
        for key, (verdict, record_id) in index.verdicts(created).items():
            if verdict == "absent":
                continue  # left in `deferred`: not in the target
            pending = deferred.pop(key)
            if verdict == "found":
                report.lookup_found += 1
                yield result_of(pending, ItemStatus.SUCCEEDED, created_id=record_id, found=True)
            else:
                note = (
                    f"outcome unknown: record {record_id} nearly matches it (the same but for "
                    "letter case or spacing), so it is not sent again; if that record is not "
                    'this row, set "exists" to false'
                )
                yield result_of(pending, ItemStatus.UNKNOWN, note=note)
