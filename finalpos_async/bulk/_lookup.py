"""Asking the target what it holds: the spot check before a resume, and the lost-answer lookup.

- `spot_check`: before resuming, retrieve the last few records the journal says were created;
  when the target answers 404 for all of them, it is not the target the journal was written
  for (or it was reset), and nothing is sent.
- `TargetSearch`: one streamed pass over a listing of the target (`client.customers.list`, a
  paginator walked with `async for`) that finds the items whose answer was lost, by key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from typing import Any

import attrs

from .._constants import BULK_SPOT_CHECKS
from .._exceptions import FinalPOSError, NotFoundError
from ._items import KeySpec, read_field
from ._journal import Journal, JournalError
from ._outcome import Pending, id_of, result_of
from ._results import BulkReport, ItemResult, ItemStatus, describe_error

__all__ = ["TargetChangedError", "TargetSearch", "spot_check"]

log = logging.getLogger("finalpos.bulk")


class TargetChangedError(JournalError):
    """The target no longer holds the records the journal says were created (nothing was sent).

    Raised before a resume when every record checked answers 404: the server was reset, or the
    journal belongs to another server at the same address (an in-memory sandbox restarted).
    """


async def spot_check(journal: Journal, retrieve: Callable[[str], Awaitable[Any]]) -> None:
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

    `find` yields a `SUCCEEDED` result (`found=True`) for each held item listed in the target,
    taking it out of `deferred`; what is left there was not found. When the listing fails,
    `failed` is set and the items left get the failure as their reason: they stay unknown.
    """

    def __init__(
        self,
        lookup: Callable[[], AsyncIterable[Any]],
        lookup_key: KeySpec,
        report: BulkReport,
    ) -> None:
        self._lookup = lookup
        self._lookup_key = lookup_key
        self._report = report
        self.failed = False

    async def find(
        self, deferred: dict[str, Pending], stopping: Callable[[], bool]
    ) -> AsyncGenerator[ItemResult[Any], None]:
        """Walk the listing until every held item is found, or `stopping()` says so."""
        report = self._report
        started = time.monotonic()
        try:
            async for record in self._lookup():
                report.lookup_records += 1
                found = read_field(self._lookup_key, record, report.lookup_records, "lookup_key")
                pending = deferred.pop(str(found), None) if found is not None else None
                if pending is not None:
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
