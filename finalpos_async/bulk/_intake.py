"""The intake of a bulk run: each input named (identity, digest, idempotency key) and checked
against the journal before anything is sent."""

from __future__ import annotations

import collections
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from typing import Any

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
from ._journal import SENDING, JournalStore
from ._outcome import Pending, result_of
from ._results import ItemResult, ItemStatus
from ._target_copy import TargetCopy

__all__ = ["Intake"]


class Intake:
    """Turns each input into an item to send (`Pending`) or a result known without sending.

    - a key journaled as created: `SKIPPED` (or `CHANGED` when its content differs);
    - a key whose outcome is unknown (its answer lost, or its run ended while it was sent): held
      in `deferred` for the lookup, sent again with `resend_unknown`, else `UNKNOWN`;
    - anything else: an item to send (with what the journal held before, see `Pending.prior`).

    Identities are `key` values (unique: a repeat is a `FAILED` item, never journaled), or,
    with no `key`, the content (`ContentIdentities`).
    """

    def __init__(
        self,
        *,
        key: KeySpec,
        content: KeySpec,
        digest: KeySpec = None,
        journal: JournalStore | None,
        resend_unknown: bool,
        deferred: dict[str, Pending] | None,
    ) -> None:
        self._key = key
        self._content = content
        self._digest = digest  # where an item holds its content's digest (made by the caller)
        self._journal = journal
        self._resend_unknown = resend_unknown
        self._deferred = deferred
        self._created: collections.Counter[str] = collections.Counter()  # without a journal
        self.target: TargetCopy | None = None  # when set, a new item is looked up there first
        self._contents = ContentIdentities()
        self._seen_keys: set[str] = set()

    def count_created(self, result: ItemResult[Any]) -> None:
        """Count a created item by its content, for `created_counts` (a journal counts itself)."""
        if result.ok and self._journal is None:
            self._created[result.digest] += 1

    def created_counts(self, digests: list[str]) -> dict[str, int]:
        """How many items of each content (named by their content) are known to be created."""
        journal = self._journal
        if journal is None:
            return {digest: self._created[digest] for digest in digests}
        return {digest: journal.created_with_content(digest) for digest in digests}

    async def pull(
        self, items: Items, job_id: str
    ) -> AsyncGenerator[Pending | ItemResult[Any], None]:
        """The inputs, one at a time: an item to send, or a result known without sending."""
        index = -1
        if isinstance(items, AsyncIterable):
            async for item in items:
                index += 1
                yield self.prepare(index, item, job_id)
        else:
            for item in items:
                index += 1
                yield self.prepare(index, item, job_id)

    def prepare(
        self, index: int, item: Mapping[str, Any], job_id: str
    ) -> Pending | ItemResult[Any]:
        """The item's identity, digest and key, checked against the journal."""
        try:
            if not isinstance(item, Mapping):
                raise TypeError(
                    f"bulk item {index} is a {type(item).__name__}; items must be mappings of "
                    "field names to values (the operation's keyword arguments)"
                )
            digest = self._digest_of(index, item)
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
        if entry is None:
            found = self.target.find_key(key) if self.target is not None else None
            if found is None:
                return pending
            # An earlier run of this job (whose journal is lost) or someone else made it.
            return result_of(pending, ItemStatus.SUCCEEDED, created_id=found or None, found=True)
        if entry.status == ItemStatus.FAILED.value:
            return attrs.evolve(pending, prior=entry.status)
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
            return attrs.evolve(pending, prior=ItemStatus.UNKNOWN.value)
        why = entry.error or "its answer was lost"
        if entry.status == SENDING:
            why = "it was being sent when an earlier run ended"
        note = f"outcome unknown since an earlier run ({why})"
        if self._deferred is not None:
            self._deferred[key] = attrs.evolve(pending, reason=note, prior=entry.status)
            return pending  # the run sees it is deferred and does not send it
        return result_of(pending, ItemStatus.UNKNOWN, note=note + "; not sent again")

    def _digest_of(self, index: int, item: Mapping[str, Any]) -> str:
        if self._digest is None:
            return content_digest(read_field(self._content, item, index, "content"))
        digest = read_field(self._digest, item, index, "digest")
        if not isinstance(digest, str):
            raise TypeError(f"bulk item {index}: its digest= field is not a str: {digest!r}")
        return digest

    def _identity(self, index: int, item: Mapping[str, Any], digest: str) -> str:
        journal = self._journal
        if self._key is None:
            if journal is None:
                return self._contents.name(digest)
            # The journal counts the repeats (memory stays flat): the same names as
            # `ContentIdentities` gives.
            repeat = journal.count_seen(digest)
            return f"{digest}#{repeat}" if repeat else digest
        value = read_field(self._key, item, index, "key")
        if value is None or value == "":
            raise ValueError(f"bulk item {index} has an empty key ({identity_rule(self._key)})")
        key = str(value)
        if journal is not None:
            repeated = journal.count_seen(key) > 0
        else:
            repeated = key in self._seen_keys
            self._seen_keys.add(key)
        if repeated:
            raise ValueError(
                f"bulk item {index} repeats the key {key!r} of an earlier item; keys must be "
                "unique (it was not sent)"
            )
        return key
