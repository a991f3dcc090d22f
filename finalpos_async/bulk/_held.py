"""What a bulk run keeps back from its main pass, to settle in rounds after it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from .._exceptions import AuthenticationError, PermissionDeniedError
from ._journal import SENDING
from ._outcome import Pending, not_processed, pending_of, result_of
from ._results import ItemResult, ItemStatus

__all__ = ["Held"]


@attrs.define
class Held:
    """Items held for the settle rounds, by why: `lost` (answer lost, to look up in the target)
    and `refused` (refused before processing, or lost with `resend_unknown`: to send again).

    `lost` is filled only when the run can look items up (`can_look_up`).
    """

    resend_unknown: bool
    can_look_up: bool
    lost: dict[str, Pending] = attrs.field(factory=lambda: dict[str, Pending]())
    refused: dict[str, Pending] = attrs.field(factory=lambda: dict[str, Pending]())

    def __bool__(self) -> bool:
        return bool(self.lost or self.refused)

    def keep(self, result: ItemResult[Any], prior: str | None) -> bool:
        """Hold `result`'s item instead of finishing it (True when held). `prior` is what the
        journal held for it before its intent (`Pending.prior`)."""
        if result.key in self.lost or result.key in self.refused:
            return False
        if result.status is ItemStatus.UNKNOWN:
            if self.resend_unknown:
                unknown = ItemStatus.UNKNOWN.value
                self.refused[result.key] = attrs.evolve(pending_of(result), prior=unknown)
                return True
            if not self.can_look_up:
                return False
            self.lost[result.key] = pending_of(result)
            return True
        if result.status is ItemStatus.FAILED and not_processed(result.error):
            if isinstance(result.error, (AuthenticationError, PermissionDeniedError)):
                return False  # no later round has other credentials
            self.refused[result.key] = attrs.evolve(pending_of(result), prior=prior)
            return True
        return False

    def to_send_again(self) -> list[Pending]:
        """Take every held item out, to send again: the lost ones were looked up and not found
        (so not created: `prior` is "failed"), the refused ones as they are."""
        failed = ItemStatus.FAILED.value
        again = [
            *(attrs.evolve(pending, prior=failed) for pending in self.lost.values()),
            *self.refused.values(),
        ]
        self.lost.clear()
        self.refused.clear()
        return again

    def take_one(self) -> ItemResult[Any] | None:
        """Take out one held item as the result it ends with when the run ends before it is
        settled: unknown when its answer was lost, else refused (FAILED, with that error)."""
        for held in (self.lost, self.refused):
            if held:
                pending = held.pop(next(iter(held)))
                if held is self.lost and pending.attempts == 0 and pending.prior is None:
                    # Held to be looked up before its first send (a fresh journal): not sent.
                    note = "not sent: the run ended before it was looked up in the target"
                    return result_of(pending, ItemStatus.CANCELLED, note=note)
                if held is self.lost or pending.prior in (ItemStatus.UNKNOWN.value, SENDING):
                    status = ItemStatus.UNKNOWN
                else:
                    status = ItemStatus.FAILED
                return result_of(pending, status, error=pending.error, note=pending.reason)
        return None

    def drain(self) -> Iterator[ItemResult[Any]]:
        """`take_one` until nothing is held."""
        while (result := self.take_one()) is not None:
            yield result
