"""Asking the target what it holds: the spot check before a resume, and the lost-answer lookup.

- `spot_check`: before resuming, retrieve the last few records the journal says were created;
  when the target answers 404 for all of them, it is not the target the journal was written
  for (or it was reset), and nothing is sent.
- `TargetSearch`: finds the items whose answer was lost in the run's copy of the target
  (`TargetCopy`: one streamed pass over its listing per run, then only what was added), by key
  or by the fields they sent.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import attrs

from .._constants import BULK_SPOT_CHECKS
from .._exceptions import FinalPOSError, NotFoundError
from ._journal import JournalError, JournalStore
from ._matching import ContentIndex
from ._outcome import Pending, result_of
from ._results import BulkReport, ItemResult, ItemStatus, describe_error
from ._target_copy import TargetCopy

__all__ = ["TargetChangedError", "TargetSearch", "spot_check"]

log = logging.getLogger("finalpos.bulk")


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
    """Finds the items held in `deferred` (key -> item) in the run's copy of the target, after
    reading what the target added since the copy was last brought up to date.

    Items are matched by their key, or with `by_content` by the fields they sent (`_matching`;
    `created` tells how many items of each content are known to be created). `find` yields a
    `SUCCEEDED` result (`found=True`) for each held item in the target, taking it out of
    `deferred`, and an `UNKNOWN` one for an item only nearly matched by a record; what is left
    there was not found. When the listing fails or is cut short, `failed` is set and the items
    left get the reason: they stay unknown.
    """

    def __init__(
        self,
        copy: TargetCopy,
        report: BulkReport,
        *,
        by_content: bool = False,
        content: Callable[[Pending], object] = lambda pending: pending.item,
        created: Callable[[list[str]], dict[str, int]] = lambda digests: {},
    ) -> None:
        self._copy = copy
        self._report = report
        self._by_content = by_content
        self._content = content
        self._created = created
        self.failed = False

    async def find(
        self, deferred: dict[str, Pending], stopping: Callable[[], bool]
    ) -> AsyncGenerator[ItemResult[Any], None]:
        """Bring the copy up to date (unless `stopping()` cuts it short), then match."""
        try:
            complete = await self._copy.catch_up(stopping)
        except Exception as exc:
            self.failed = True
            note = f"outcome unknown, and the lookup failed: {describe_error(exc)}"
            for key, pending in list(deferred.items()):
                deferred[key] = attrs.evolve(pending, reason=note)
            return
        # Cut short, the copy is a prefix of the listing: a key in it is there, but a content
        # counted in part proves nothing, and what is not found yet stays held (unknown).
        self.failed = not complete
        if self._by_content:
            if complete:
                async for result in self._find_by_content(deferred):
                    yield result
            return
        for key in list(deferred):
            record_id = self._copy.find_key(key)
            if record_id is not None:
                self._report.lookup_found += 1
                yield result_of(
                    deferred.pop(key),
                    ItemStatus.SUCCEEDED,
                    created_id=record_id or None,
                    found=True,
                )

    async def _find_by_content(
        self, deferred: dict[str, Pending]
    ) -> AsyncGenerator[ItemResult[Any], None]:
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
        async for fields, record_id in self._copy.records():
            if index.see(fields, record_id) and index.complete(created):
                break
        for key, (verdict, record_id) in index.verdicts(created).items():
            if verdict == "absent":
                continue  # left in `deferred`: not in the target
            pending = deferred.pop(key)
            if verdict == "found":
                self._report.lookup_found += 1
                yield result_of(pending, ItemStatus.SUCCEEDED, created_id=record_id, found=True)
            else:
                note = (
                    f"outcome unknown: record {record_id} nearly matches it (the same but for "
                    "letter case or spacing), so it is not sent again; if that record is not "
                    'this row, set "exists" to false'
                )
                yield result_of(pending, ItemStatus.UNKNOWN, note=note)
