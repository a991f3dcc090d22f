"""One item's trip to the target and what its outcome means.

`send_item` calls the operation once for an item (`ItemCall`: its fields checked first; the
client retries inside, only where a POST provably did not take effect unless `resend_unknown`),
and turns whatever happens into an `ItemResult`. The rest classifies outcomes: what is worth
journaling, what is unreachable, and when a run of failures means no further item can succeed
(`FatalWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any, TypeVar, cast

import attrs

from .._constants import BULK_FAILING_STREAK, BULK_UNREACHABLE_STREAK
from .._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    FinalPOSError,
    PermissionDeniedError,
    RateLimitError,
    RateLimiterUnavailable,
    ResponseValidationError,
)
from .._response import RawResponse
from ._call import ItemCall
from ._limiter import Limiter
from ._results import ItemResult, ItemStatus, describe_error

__all__ = [
    "FatalWatch",
    "Pending",
    "id_of",
    "not_processed",
    "pending_of",
    "result_of",
    "send_item",
]

_T = TypeVar("_T")


@attrs.frozen(kw_only=True)
class Pending:
    """An item to send (or to resolve by lookup): everything its task needs."""

    index: int
    key: str
    item: Mapping[str, Any]
    digest: str
    idempotency_key: str
    attempts: int = 0
    reason: str = ""
    # What the journal held for it before its intent, restored if it is not sent after all:
    # None (nothing), "failed" (not created) or "unknown" (it may be in the target already).
    prior: str | None = None
    # Why it was held back (an item refused before processing keeps its error).
    error: BaseException | None = None


def result_of(pending: Pending, status: ItemStatus, **fields: Any) -> ItemResult[Any]:
    """The result of `pending` ending in `status` (`fields` as in `ItemResult`)."""
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


def pending_of(result: ItemResult[Any]) -> Pending:
    """The item of `result`, to send (or look up) again: its attempts and reason carried over."""
    return Pending(
        index=result.index,
        key=result.key,
        item=result.item,
        digest=result.digest,
        idempotency_key=result.idempotency_key,
        attempts=result.attempts,
        reason=result.reason,
        error=result.error,
    )


def _refused(pending: Pending, reason: str) -> ItemResult[Any]:
    """An item whose fields the operation does not take: failed, nothing sent."""
    return result_of(pending, ItemStatus.FAILED, error=TypeError(reason), elapsed=0.0)


async def send_item(
    call: ItemCall[_T], pending: Pending, *, limiter: Limiter | None
) -> ItemResult[_T]:
    """One item: check its fields, wait for the limiter, call the operation, turn any outcome
    into a result."""
    refusal = call.refusal(pending.item)
    if refusal is not None:
        return _refused(pending, refusal)
    started = time.monotonic()
    sent = False
    try:
        if limiter is not None:
            await limiter.acquire()
        answer = call(pending.item, pending.idempotency_key)
        sent = True
        value: Any = await answer
    except asyncio.CancelledError:
        # Only the engine cancels these tasks (drain deadline); report, don't propagate.
        if not sent:
            return result_of(pending, ItemStatus.CANCELLED)
        return result_of(
            pending,
            ItemStatus.UNKNOWN,
            attempts=pending.attempts + 1,
            elapsed=time.monotonic() - started,
            note="cancelled in flight: it may have been created",
        )
    except ResponseValidationError as exc:
        return _unreadable(pending, exc, pending.attempts + _attempts_of(exc), started)
    except Exception as exc:
        unknown = isinstance(exc, FinalPOSError) and exc.maybe_processed
        return result_of(
            pending,
            ItemStatus.UNKNOWN if unknown else ItemStatus.FAILED,
            error=exc,
            attempts=pending.attempts + _attempts_of(exc),
            elapsed=time.monotonic() - started,
        )
    attempts = 1
    if value.__class__ is RawResponse:
        # A raw twin's answer (see `BulkRunner.run`): its attempts include the client's retries.
        raw = cast("RawResponse[object]", value)
        attempts = raw.attempts
        try:
            value = raw.parse()
        except ResponseValidationError as exc:
            return _unreadable(pending, exc, pending.attempts + attempts, started)
    return result_of(
        pending,
        ItemStatus.SUCCEEDED,
        value=value,
        attempts=pending.attempts + attempts,
        created_id=id_of(value),
        elapsed=time.monotonic() - started,
    )


def _unreadable(
    pending: Pending, error: ResponseValidationError, attempts: int, started: float
) -> ItemResult[Any]:
    """A 2xx whose body does not fit the model: the record was created, so the item succeeded
    (its id read from the body when there is one); the error says what did not fit."""
    created_id: str | None = None
    if error.response is not None:
        with contextlib.suppress(Exception):  # the body may not even be JSON
            created_id = id_of(error.response.json())
    return result_of(
        pending,
        ItemStatus.SUCCEEDED,
        error=error,
        attempts=attempts,
        created_id=created_id,
        elapsed=time.monotonic() - started,
        note=f"created, but its answer does not fit the model: {describe_error(error)}",
    )


def _attempts_of(error: BaseException) -> int:
    """The HTTP attempts an error says were made (`FinalPOSError.attempts`; an operation that
    is not a resource method may raise its own errors carrying one), at least 1."""
    if isinstance(error, RateLimiterUnavailable):
        return error.attempts  # it stops the call before its attempt: maybe none was made
    attempts = getattr(error, "attempts", None)
    return attempts if isinstance(attempts, int) and attempts > 0 else 1


def id_of(value: object) -> str | None:
    """The id of a record (a model's `id` or a mapping's `"id"`), None if it has none."""
    ident: object = (
        cast("Mapping[str, Any]", value).get("id")
        if isinstance(value, Mapping)
        else getattr(value, "id", None)
    )
    return ident if isinstance(ident, str) else (str(ident) if ident is not None else None)


def not_processed(error: BaseException | None) -> bool:
    """True when the target did nothing with the item: never reached, or refused for the
    credentials or the rate (nothing to remember about it, nothing about the row to fix)."""
    if isinstance(error, (AuthenticationError, PermissionDeniedError, RateLimitError)):
        return True
    return isinstance(error, (APIConnectionError, RateLimiterUnavailable)) and (
        not error.maybe_processed
    )


def _unreachable(error: BaseException) -> bool:
    """The target cannot be reached at all (refused, DNS, TLS), as opposed to a busy pool."""
    if not isinstance(error, APIConnectionError) or error.maybe_processed:
        return False
    return not (isinstance(error, APITimeoutError) and error.kind in ("pool", "deadline"))


class FatalWatch:
    """Tells when a run should stop starting items: errors no item can fix (`stop_on_fatal`).

    A 401/403 stops at once. A run of items that cannot reach the target or its shared rate
    limiter (Redis), or of items whose answers are all lost (an outage behind a proxy answering
    5xx), stops after a few in a row (one slow answer is not an outage):
    each further item would only fail too, or worse, leave one more unknown outcome.
    """

    def __init__(self, concurrency: int) -> None:
        self._concurrency = concurrency
        self._unreachable_streak = 0
        self._lost_streak = 0
        self._limiter_streak = 0

    @staticmethod
    def reason_to_stop_before_sending(error: BaseException) -> str | None:
        """Why a run stops when `error` came before any item was sent (a 401/403, a target
        that cannot be reached), or None."""
        if isinstance(error, (AuthenticationError, PermissionDeniedError)):
            return describe_error(error)
        if _unreachable(error):
            return f"the target is unreachable: {describe_error(error)}"
        return None

    def reason_to_stop(self, result: ItemResult[Any]) -> str | None:
        """Watch one finished item; the reason to stop the run now, if there is one."""
        error = result.error
        if isinstance(error, (AuthenticationError, PermissionDeniedError)):
            return describe_error(error)
        if not isinstance(error, RateLimiterUnavailable):
            self._limiter_streak = 0
        else:
            self._limiter_streak += 1
            if self._limiter_streak >= BULK_UNREACHABLE_STREAK:
                return (
                    f"the shared rate limiter is unavailable ({self._limiter_streak} items in a "
                    f"row): {describe_error(error)}"
                )
        unreachable = error is not None and _unreachable(error)
        lost = result.status is ItemStatus.UNKNOWN and error is not None
        self._unreachable_streak = self._unreachable_streak + 1 if unreachable else 0
        self._lost_streak = self._lost_streak + 1 if lost else 0
        if error is None:
            return None
        if self._unreachable_streak >= BULK_UNREACHABLE_STREAK:
            return (
                f"the target is unreachable ({self._unreachable_streak} items in a row): "
                f"{describe_error(error)}"
            )
        if self._lost_streak >= self._concurrency + BULK_FAILING_STREAK:
            # Past `concurrency`: not only the items in flight during one stall (they time out
            # together) but also items started after it lost their answers.
            return (
                f"the target keeps failing ({self._lost_streak} items in a row with no answer): "
                f"{describe_error(error)}"
            )
        return None
