"""What a bulk run hands back: one `ItemResult` per input and a live `BulkReport` of the counts."""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import attrs

__all__ = ["BulkReport", "ItemResult", "ItemStatus"]

_T = TypeVar("_T")


class ItemStatus(str, enum.Enum):
    """How one input ended.

    - `SUCCEEDED`: in the target now: created by this run (`ItemResult.value` holds what the
      operation returned), or found there by the run's lookup after its answer was lost
      (`ItemResult.found`).
    - `SKIPPED`: the journal says an earlier run created it; not sent again.
    - `FAILED`: the API refused it (or it never reached the API): certainly not created.
      `ItemResult.error` holds the error; a re-run with the journal sends it again.
    - `UNKNOWN`: it may or may not have been created: it was sent and its answer was lost (a
      timeout, a reset, a 5xx, a cancel in flight). It is never sent again blindly; see
      `BulkRunner.run` (`lookup`, `resend_unknown`).
    - `CHANGED`: the journal says this key was created with other content; not sent (an import
      creates records, it does not update them).
    - `CANCELLED`: the run stopped before this item was sent; a re-run sends it.
    """

    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CHANGED = "changed"
    CANCELLED = "cancelled"


@attrs.frozen(kw_only=True)
class ItemResult(Generic[_T]):
    """The outcome of one input of a bulk run.

    `index` is the input's position (0-based) in the iterable; `key` is its identity in the
    journal (see `BulkRunner.run`); `digest` a hash of its content; `attempts` counts the HTTP
    attempts the client made for it (0 for a skipped item). `found` is True when its answer was
    lost and the run's lookup found it in the target.
    """

    index: int
    key: str
    status: ItemStatus
    item: Mapping[str, Any]
    idempotency_key: str
    digest: str = ""
    value: _T | None = None
    error: BaseException | None = None
    attempts: int = 0
    created_id: str | None = None
    found: bool = False
    elapsed: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        """True when the item is in the target: succeeded now or in an earlier run."""
        return self.status in (ItemStatus.SUCCEEDED, ItemStatus.SKIPPED)

    @property
    def reason(self) -> str:
        """A one-line human reason for an item that is not ok ("" when it is ok)."""
        if self.note:
            return self.note
        if self.error is not None:
            return describe_error(self.error)
        if self.status is ItemStatus.CANCELLED:
            return "cancelled before it was sent"
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

    Invariant, at every moment: `submitted == succeeded + skipped + failed + unknown + changed +
    cancelled + in_flight`. `attempts` sums the HTTP attempts of every finished item (retries
    included). `found` counts the succeeded items the lookup found in the target, and
    `lookup_records` / `lookup_seconds` what that lookup cost (records read from the target:
    one streamed pass per run, `lookup_passes`, then only the records added since, see
    `_target_copy`); `lookup_pending` how many items
    the last lookup looked for and `lookup_found` how many it found (both set as it starts).
    `unreadable` counts the succeeded items whose answer did not fit the model (created;
    `ItemResult.error` says what did not fit; `unreadable_example` is the first one's reason).
    `phase` says what the run is doing: "sending" (its main pass; before it, "reading the
    target" when a new journal meets a target that holds records), then, while it settles what
    is left, "looking up", "waiting" or "resending".
    `outcome` is "running", then "completed", "stopped" (stop() asked for it), "aborted" (an
    error no item can fix, see `stop_reason`) or "cancelled". `failure_reasons` counts the
    reasons of failed and unknown items; `top_reasons()` gives the most common ones.
    `started_at` / `finished_at` are wall-clock times (UTC).
    """

    submitted: int = 0
    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    unknown: int = 0
    changed: int = 0
    cancelled: int = 0
    found: int = 0
    attempts: int = 0
    lookup_records: int = 0
    lookup_seconds: float = 0.0
    lookup_passes: int = 0
    lookup_pending: int = 0
    lookup_found: int = 0
    unreadable: int = 0
    unreadable_example: str = ""
    phase: str = "sending"
    outcome: str = "running"
    stop_reason: str | None = None
    # A lambda, not the bare class: a bare `Counter` factory is typed `Counter[Unknown]`.
    failure_reasons: collections.Counter[str] = attrs.field(factory=lambda: collections.Counter())
    started_at: datetime = attrs.field(factory=lambda: datetime.now(timezone.utc))
    finished_at: datetime | None = None
    _started: float = attrs.field(factory=time.monotonic, alias="_started", repr=False)
    _finished: float | None = attrs.field(default=None, alias="_finished", repr=False)

    def __str__(self) -> str:
        """A short summary for people: `print(job.report)`.

        The outcome and time, then only the counts that are not zero, e.g. `completed in 4.2 s:
        1,000 submitted: 990 succeeded (3 found in the target), 10 failed; 1,012 attempts,
        238.1 items/s`, and the most common reason when items failed or are unknown.
        """
        outcome = (
            self.outcome if self.stop_reason is None else f"{self.outcome} ({self.stop_reason})"
        )
        counts = [
            f"{n:,} {name}"
            for name, n in (
                ("succeeded", self.succeeded),
                ("skipped", self.skipped),
                ("failed", self.failed),
                ("unknown", self.unknown),
                ("changed", self.changed),
                ("cancelled", self.cancelled),
                ("in flight", self.in_flight),
            )
            if n
        ]
        if self.found:
            counts[0] += f" ({self.found:,} found in the target)"
        text = (
            f"{outcome} in {self.elapsed:.1f} s: {self.submitted:,} submitted"
            + (": " + ", ".join(counts) if counts else "")
            + f"; {self.attempts:,} attempts, {self.rate:,.1f} items/s"
        )
        if self.lookup_passes:
            text += (
                f"; target read: {self.lookup_records:,} records in {self.lookup_passes} "
                f"pass{'es' if self.lookup_passes > 1 else ''}"
            )
        top = self.top_reasons(1)
        if top:
            text += f"\nmost common reason ({top[0][1]:,}x): {top[0][0]}"
        return text

    @property
    def in_flight(self) -> int:
        """Items pulled from the input whose outcome is not known yet."""
        return self.submitted - self.done

    @property
    def done(self) -> int:
        """Items with a final outcome (any status)."""
        return (
            self.succeeded
            + self.skipped
            + self.failed
            + self.unknown
            + self.changed
            + self.cancelled
        )

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (until it finished, once it has)."""
        end = self._finished if self._finished is not None else time.monotonic()
        return end - self._started

    @property
    def rate(self) -> float:
        """Items sent and finished (succeeded, failed or unknown) per second so far."""
        elapsed = self.elapsed
        sent = self.succeeded + self.failed + self.unknown
        return sent / elapsed if elapsed > 0 else 0.0

    def top_reasons(self, n: int = 5) -> list[tuple[str, int]]:
        """The `n` most common reasons of failed and unknown items, with their counts."""
        return self.failure_reasons.most_common(n)

    def start(self) -> None:
        """Mark the run as started now."""
        self.started_at = datetime.now(timezone.utc)
        self._started = time.monotonic()

    def finish(self) -> None:
        """Mark the run as finished now."""
        self.finished_at = datetime.now(timezone.utc)
        self._finished = time.monotonic()

    def count(self, result: ItemResult[Any]) -> None:
        """Add one finished item to the counters."""
        self.attempts += result.attempts
        status = result.status
        if status is ItemStatus.SUCCEEDED:
            self.succeeded += 1
            self.found += result.found
            if result.error is not None:
                self.unreadable += 1
                self.unreadable_example = self.unreadable_example or result.reason
        elif status is ItemStatus.SKIPPED:
            self.skipped += 1
        elif status is ItemStatus.FAILED:
            self.failed += 1
            self.failure_reasons[result.reason] += 1
        elif status is ItemStatus.UNKNOWN:
            self.unknown += 1
            self.failure_reasons[result.reason] += 1
        elif status is ItemStatus.CHANGED:
            self.changed += 1
        else:
            self.cancelled += 1
