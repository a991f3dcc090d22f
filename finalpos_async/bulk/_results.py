"""What a bulk run hands back: one `ItemResult` per input and a live `BulkReport` of the counts."""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import attrs

__all__ = ["BulkReport", "ItemResult", "ItemStatus"]

_T = TypeVar("_T")


class ItemStatus(str, enum.Enum):
    """How one input ended.

    - `SUCCEEDED`: the operation returned; `ItemResult.value` holds what it returned.
    - `FAILED`: the operation raised after the client's retries; `ItemResult.error` holds the error.
    - `SKIPPED`: the journal says an earlier run already succeeded with this item; not sent again.
    - `CANCELLED`: the run was stopped before this item finished; a re-run with the same journal
      sends it again under the same idempotency key, so it is never created twice.
    """

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


@attrs.frozen(kw_only=True)
class ItemResult(Generic[_T]):
    """The outcome of one input of a bulk run.

    `index` is the input's position (0-based) in the iterable; `key` is its identity in the
    journal (the caller's `key=` or the position); `attempts` counts the HTTP attempts the client
    made for it (0 for a skipped item).
    """

    index: int
    key: str
    status: ItemStatus
    item: Mapping[str, Any]
    idempotency_key: str
    value: _T | None = None
    error: BaseException | None = None
    attempts: int = 0
    created_id: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the item is in the API: succeeded now or in an earlier run."""
        return self.status in (ItemStatus.SUCCEEDED, ItemStatus.SKIPPED)

    @property
    def reason(self) -> str:
        """A one-line human reason for a failed or cancelled item ("" when it is ok)."""
        if self.error is not None:
            return describe_error(self.error)
        if self.status is ItemStatus.CANCELLED:
            return "cancelled before it finished"
        return ""


def describe_error(error: BaseException) -> str:
    """One readable line for an error: its type and message (the typed error's `message` if any)."""
    message = getattr(error, "message", None) or str(error) or repr(error)
    status = getattr(error, "status_code", None)
    prefix = f"{type(error).__name__}"
    if isinstance(status, int):
        prefix += f" ({status})"
    return f"{prefix}: {message}"


@attrs.define(kw_only=True)
class BulkReport:
    """Live counters of a bulk run; final once the run is over.

    Invariant, at every moment: `submitted == succeeded + failed + skipped + cancelled + in_flight`.
    `attempts` sums the HTTP attempts of every finished item (retries included).
    `outcome` is "running", then "completed", "stopped" (stop() asked for it) or "cancelled".
    """

    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    attempts: int = 0
    outcome: str = "running"
    started_at: float = attrs.field(factory=time.monotonic)
    finished_at: float | None = None

    @property
    def in_flight(self) -> int:
        """Items pulled from the input whose outcome is not known yet."""
        return self.submitted - self.succeeded - self.failed - self.skipped - self.cancelled

    @property
    def done(self) -> int:
        """Items with a final outcome (any status)."""
        return self.succeeded + self.failed + self.skipped + self.cancelled

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (until it finished, once it has)."""
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return end - self.started_at

    @property
    def rate(self) -> float:
        """Items sent and finished (succeeded or failed) per second so far."""
        elapsed = self.elapsed
        return (self.succeeded + self.failed) / elapsed if elapsed > 0 else 0.0

    def count(self, result: ItemResult[Any]) -> None:
        """Add one finished item to the counters."""
        self.attempts += result.attempts
        if result.status is ItemStatus.SUCCEEDED:
            self.succeeded += 1
        elif result.status is ItemStatus.FAILED:
            self.failed += 1
        elif result.status is ItemStatus.SKIPPED:
            self.skipped += 1
        else:
            self.cancelled += 1
