"""The retry policy, as pure functions and small value objects (no I/O, no clock of its own).

- `backoff_delay`: full-jitter exponential backoff, `U(0, min(cap, base * 2**n))` (AWS style).
- `parse_retry_after`: `retry-after-ms`, then `Retry-After` as delay-seconds (digits only) or an
  HTTP-date (a past one is 0); anything else is ignored (`None`) and logged at DEBUG.
- `should_retry`: which failures are retried for which method. A POST/PATCH (not idempotent,
  and the API does not document idempotency support) is retried only when it provably never
  reached the server (connect error, connect/pool timeout) or the server refused it before
  processing (429; 503 with `Retry-After`), unless the caller opts in per call.
- `RetryBudget`: a per-client token bucket as in botocore's "standard" retry mode, so a failing
  API is not hammered by a bulk job.
"""

from __future__ import annotations

import enum
import math
import random
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import attrs

from ._constants import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    MAX_RETRIES,
    RETRY_AFTER_CAP,
    RETRY_BUDGET_TOKENS,
    RETRY_COST,
    RETRY_SUCCESS_REFUND,
    RETRY_TIMEOUT_COST,
    RETRYABLE_STATUSES,
)
from ._logging import logger

__all__ = [
    "IDEMPOTENT_METHODS",
    "FailureKind",
    "RetryBudget",
    "RetryPolicy",
    "backoff_delay",
    "may_have_taken_effect",
    "parse_retry_after",
    "should_retry",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Methods that may be repeated without changing the outcome (RFC 9110 section 9.2.2)."""


class FailureKind(enum.Enum):
    """How one attempt failed, as far as retrying is concerned."""

    CONNECT = "connect"
    """Could not connect (refused, unreachable, DNS): the request never left."""
    CONNECT_TIMEOUT = "connect_timeout"
    """Connecting timed out: the request never left."""
    POOL_TIMEOUT = "pool_timeout"
    """No pool slot became free in time: the request never left."""
    READ_TIMEOUT = "read_timeout"
    """Sent, but no (complete) answer in time: the server may have processed it."""
    DISCONNECTED = "disconnected"
    """The connection broke after sending: the server may have processed it."""
    STATUS = "status"
    """The server answered with an error status."""
    FATAL = "fatal"
    """Not transient (TLS/certificate failure, invalid URL): never retried."""

    @property
    def never_sent(self) -> bool:
        """True when the request provably never reached the server."""
        return self in _NEVER_SENT

    @property
    def is_timeout(self) -> bool:
        """True for the timeouts (a retry after one costs more budget)."""
        return self in _TIMEOUTS


_NEVER_SENT = frozenset(
    {FailureKind.CONNECT, FailureKind.CONNECT_TIMEOUT, FailureKind.POOL_TIMEOUT}
)
_TIMEOUTS = frozenset(
    {FailureKind.CONNECT_TIMEOUT, FailureKind.POOL_TIMEOUT, FailureKind.READ_TIMEOUT}
)


def backoff_delay(
    retry: int,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `retry` (0 for the first retry): full jitter.

    The result lies in `[0, min(cap, base * 2**retry))`; `rng` returns a float in `[0, 1)`.
    """
    if retry < 0:
        raise ValueError(f"retry must be >= 0, got {retry}")
    # 2.0**1100 overflows a float; past 2**64 every sane cap is reached anyway.
    ceiling = min(cap, base * 2.0 ** min(retry, 64))
    return rng() * ceiling


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The server's requested wait in seconds, or `None` when it asked for none (or sent garbage).

    `retry-after-ms` (milliseconds: digits, with an optional `.fraction`) wins over
    `Retry-After`, which is either delay-seconds (ASCII digits only) or an HTTP-date (compared
    with `now`, default the current UTC time; a past date is 0). Anything else (`1_0`, `1.5`,
    `-3`, `+3`, `1e3`) is ignored and logged at DEBUG on the `finalpos` logger.
    """
    ms = _get(headers, "retry-after-ms")
    if ms is not None:
        text = ms.strip()
        if _MILLISECONDS.fullmatch(text):
            return float(text) / 1000.0
        _log_ignored("retry-after-ms", ms)
    raw = _get(headers, "retry-after")
    if raw is None:
        return None
    text = raw.strip()
    if _DELAY_SECONDS.fullmatch(text):
        # float, not int: int() refuses more than 4,300 digits; a huge value is over the cap.
        return float(text)
    if _HTTP_DATE.fullmatch(text):
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            when = None
        if when is not None:
            if when.tzinfo is None:  # the asctime form carries no zone: it is GMT
                when = when.replace(tzinfo=timezone.utc)
            current = now if now is not None else datetime.now(timezone.utc)
            return max(0.0, (when - current).total_seconds())
    _log_ignored("Retry-After", raw)
    return None


# Python's int() and float() also take "1_0", "+3", " 1e3" and non-ASCII digits: only
# these forms are what the header's grammar allows.
_DELAY_SECONDS = re.compile(r"[0-9]+")
_MILLISECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"[0-9]{2}:[0-9]{2}:[0-9]{2}"
# An HTTP-date: the IMF-fixdate, or one of the two obsolete forms a recipient must accept.
_HTTP_DATE = re.compile(
    rf"{_DAY}, [0-9]{{2}} {_MONTH} [0-9]{{4}} {_TIME} GMT"
    rf"|{_LONG_DAY}, [0-9]{{2}}-{_MONTH}-[0-9]{{2}} {_TIME} GMT"
    rf"|{_DAY} {_MONTH} (?: [0-9]|[0-9]{{2}}) {_TIME} [0-9]{{4}}"
)


def _log_ignored(name: str, value: str) -> None:
    logger.debug(
        "ignoring the server's %s header %r: not in the form the protocol allows (digits, or "
        "an HTTP-date); backing off as if it were absent",
        name,
        value[:64],
    )


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not _is_case_insensitive(headers):
        lowered = name.lower()
        for key, item in headers.items():
            if key.lower() == lowered:
                return item
    return value


def _is_case_insensitive(headers: Mapping[str, str]) -> bool:
    # multidict's CIMultiDict(Proxy) already folds case; a plain dict needs the slow path.
    return type(headers).__name__.startswith("CIMultiDict")


def should_retry(
    method: str,
    kind: FailureKind,
    *,
    status: int | None = None,
    has_retry_after: bool = False,
    unsafe_ok: bool = False,
    strict: bool = False,
    retryable_statuses: frozenset[int] = RETRYABLE_STATUSES,
) -> bool:
    """Whether a failed attempt may be retried (ignoring the retry count, budget and deadline).

    `unsafe_ok` is the caller's per-call opt-in for non-idempotent methods (an explicit
    idempotency key, or `retry_unsafe=True`); with it a POST follows the GET rules. `strict`
    (`retry_unsafe=False`) is the opposite: a POST is retried only when it provably did not take
    effect (never sent, or 429), not even on a 503 with `Retry-After`, which a proxy may send
    after the API processed the request.
    """
    if kind is FailureKind.FATAL:
        return False
    if kind is FailureKind.STATUS and (status is None or status not in retryable_statuses):
        return False
    idempotent = method.upper() in IDEMPOTENT_METHODS
    if idempotent or (unsafe_ok and not strict):
        return True
    # Not idempotent and no opt-in: only when the server provably did not process it.
    if kind.never_sent:
        return True
    if kind is FailureKind.STATUS:
        return status == 429 or (status == 503 and has_retry_after and not strict)
    return False


def may_have_taken_effect(kind: FailureKind, status: int | None = None) -> bool:
    """Whether a failed attempt may have been processed by the server (its outcome is unknown).

    Never-sent failures and 4xx answers are definite; a lost answer, a read timeout or a 5xx is
    not (the API may have acted before failing, or a proxy may have lost its answer).
    """
    if kind.never_sent or kind is FailureKind.FATAL:
        return False
    if kind is FailureKind.STATUS:
        return status is not None and status >= 500
    return True


def _check_retries_field(_policy: object, _attribute: object, value: int) -> None:
    check_max_retries(value)


def _check_seconds_field(_policy: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{attribute.name} must be a number of seconds, got {value!r}")
    if not value >= 0 or math.isinf(value):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """The client's retry settings (validated; every field has the SDK default).

    - `max_retries`: retries after the first attempt;
    - `backoff_base`, `backoff_cap`: full-jitter backoff `U(0, min(cap, base * 2**n))` seconds;
    - `retry_after_cap`: the longest `Retry-After` honoured; longer raises at once;
    - `retryable_statuses`: statuses worth another attempt.
    """

    # Validators passed as arguments rather than `@field.validator` methods: type checkers
    # without the attrs plugin (pyright) see the field as its value type, which has no
    # `.validator`.
    max_retries: int = attrs.field(default=MAX_RETRIES, validator=_check_retries_field)
    backoff_base: float = attrs.field(default=BACKOFF_BASE, validator=_check_seconds_field)
    backoff_cap: float = attrs.field(default=BACKOFF_CAP, validator=_check_seconds_field)
    retry_after_cap: float = attrs.field(default=RETRY_AFTER_CAP, validator=_check_seconds_field)
    retryable_statuses: frozenset[int] = attrs.field(default=RETRYABLE_STATUSES)

    def delay(
        self, retry: int, retry_after: float | None = None, rng: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait before retry number `retry`: the server's `Retry-After` when it sent
        one (already checked against the cap), full-jitter backoff otherwise."""
        if retry_after is not None:
            return retry_after
        return backoff_delay(retry, base=self.backoff_base, cap=self.backoff_cap, rng=rng)


def check_max_retries(value: object, name: str = "max_retries") -> int:
    """Validate a retry count (an int >= 0) and return it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class RetryBudget:
    """A token bucket limiting retries across all calls of one client (botocore "standard" mode).

    It starts full (`capacity` tokens). A retry takes `retry_cost` tokens (`timeout_cost` after a
    timeout); when the bucket cannot pay, the failure surfaces without retry. A successful call
    puts tokens back: what its last retry took, or `success_refund` when it needed no retry,
    never above `capacity`. One event loop uses it, so no lock is needed (no await in between).
    """

    __slots__ = ("_tokens", "capacity", "retry_cost", "success_refund", "timeout_cost")

    def __init__(
        self,
        capacity: int = RETRY_BUDGET_TOKENS,
        *,
        retry_cost: int = RETRY_COST,
        timeout_cost: int = RETRY_TIMEOUT_COST,
        success_refund: int = RETRY_SUCCESS_REFUND,
    ) -> None:
        for name, value in (
            ("capacity", capacity),
            ("retry_cost", retry_cost),
            ("timeout_cost", timeout_cost),
            ("success_refund", success_refund),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"retry budget {name} must be an int >= 0, got {value!r}")
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.timeout_cost = timeout_cost
        self.success_refund = success_refund
        self._tokens = capacity

    @property
    def tokens(self) -> int:
        """Tokens left in the bucket."""
        return self._tokens

    def acquire(self, *, timeout: bool = False) -> int | None:
        """Pay for one retry; returns the tokens taken, or `None` when the bucket cannot pay."""
        cost = self.timeout_cost if timeout else self.retry_cost
        if cost > self._tokens:
            return None
        self._tokens -= cost
        return cost

    def record_success(self, last_cost: int = 0) -> None:
        """A call succeeded: refund what its last retry took, or `success_refund` if none."""
        refund = last_cost if last_cost else self.success_refund
        self._tokens = min(self.capacity, self._tokens + refund)

    def __repr__(self) -> str:
        return f"RetryBudget(tokens={self._tokens}/{self.capacity})"
