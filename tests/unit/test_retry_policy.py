"""The retry policy as pure functions: backoff bounds, Retry-After, who is retried, budget."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from finalpos_async._retry import (
    FailureKind,
    RetryBudget,
    RetryPolicy,
    backoff_delay,
    parse_retry_after,
    should_retry,
)

NOW = datetime(2026, 11, 24, 6, 0, 0, tzinfo=timezone.utc)


# ------------------------------------------------------------------------------ backoff


@given(
    retry=st.integers(min_value=0, max_value=200),
    base=st.floats(min_value=0.0, max_value=10.0),
    cap=st.floats(min_value=0.0, max_value=60.0),
    u=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_stays_within_full_jitter_bounds(
    retry: int, base: float, cap: float, u: float
) -> None:
    delay = backoff_delay(retry, base=base, cap=cap, rng=lambda: u)
    ceiling = min(cap, base * 2.0 ** min(retry, 64))
    assert 0.0 <= delay <= ceiling
    assert delay == pytest.approx(u * ceiling)


def test_backoff_defaults_double_from_half_a_second_up_to_eight() -> None:
    top = 0.999999
    assert [round(backoff_delay(n, rng=lambda: top), 3) for n in range(6)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        8.0,
    ]
    assert backoff_delay(3, rng=lambda: 0.0) == 0.0


def test_backoff_with_real_randomness_is_spread_over_the_range() -> None:
    delays = [backoff_delay(2, base=1.0, cap=8.0) for _ in range(2000)]
    assert all(0.0 <= d < 4.0 for d in delays)
    assert min(delays) < 0.5
    assert max(delays) > 3.5


def test_backoff_for_huge_retry_numbers_does_not_overflow() -> None:
    assert backoff_delay(5000, base=0.5, cap=8.0, rng=lambda: 0.5) == 4.0


def test_backoff_refuses_a_negative_retry_number() -> None:
    with pytest.raises(ValueError, match="retry"):
        backoff_delay(-1)


def test_policy_delay_prefers_the_servers_retry_after() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_cap=4.0)
    assert policy.delay(0, retry_after=2.5) == 2.5
    assert policy.delay(1, rng=lambda: 0.5) == 1.0


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("max_retries", -1, ValueError),
        ("max_retries", 1.5, TypeError),
        ("max_retries", True, TypeError),
        ("backoff_base", -0.1, ValueError),
        ("backoff_cap", float("inf"), ValueError),
        ("retry_after_cap", "60", TypeError),
    ],
)
def test_policy_rejects_bad_settings_naming_the_field(
    field: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=field):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


# -------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "1"}, 1.0),
        ({"Retry-After": " 7 "}, 7.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "12.5"}, 0.0125),
        ({"retry-after-ms": "100", "Retry-After": "9"}, 0.1),
        ({"retry-after-ms": "soon", "Retry-After": "9"}, 9.0),
        ({"RETRY-AFTER": "4"}, 4.0),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "Thu, 99 Foo 2026 99:00:00 GMT"}, None),
        # What Python's int()/float() accept but the header's grammar (digits only) does not.
        ({"Retry-After": "1_0"}, None),
        ({"Retry-After": "1.5"}, None),
        ({"Retry-After": "-3"}, None),
        ({"Retry-After": "+3"}, None),
        ({"Retry-After": "1e3"}, None),
        ({"Retry-After": "0x10"}, None),
        ({"Retry-After": "1 0"}, None),
        ({"Retry-After": "\u0661\u0660"}, None),  # Arabic-Indic digits: int() reads 10
        ({"retry-after-ms": "-20", "Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "1_0", "Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "1e3"}, None),
        # HTTP-dates: the IMF-fixdate and the two obsolete forms, all 30 s after NOW.
        ({"Retry-After": "Tue, 24 Nov 2026 06:00:30 GMT"}, 30.0),
        ({"Retry-After": "Tuesday, 24-Nov-26 06:00:30 GMT"}, 30.0),
        ({"Retry-After": "Tue Nov 24 06:00:30 2026"}, 30.0),
        ({"Retry-After": "24 Nov 2026 06:00:30 GMT"}, None),  # no weekday: not an HTTP-date
        ({"Retry-After": "Tue, 24 Nov 2026 06:00:30 +0000"}, None),
        ({}, None),
    ],
)
def test_retry_after_values(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_an_ignored_retry_after_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="finalpos")
    assert parse_retry_after({"Retry-After": "1_0"}, now=NOW) is None
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG
    assert "Retry-After header '1_0'" in record.getMessage()


def test_retry_after_http_date_in_the_future() -> None:
    when = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"Retry-After": when}, now=NOW) == 30.0


def test_retry_after_http_date_in_the_past_clamps_to_zero() -> None:
    when = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after({"Retry-After": when}, now=NOW) == 0.0


def test_retry_after_reads_aiohttp_headers_case_insensitively() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"retry-after": "2"}))
    assert parse_retry_after(headers) == 2.0


# ---------------------------------------------------------------------------- who retries

NEVER_SENT = [FailureKind.CONNECT, FailureKind.CONNECT_TIMEOUT, FailureKind.POOL_TIMEOUT]
MAYBE_PROCESSED = [FailureKind.READ_TIMEOUT, FailureKind.DISCONNECTED]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
@pytest.mark.parametrize("kind", NEVER_SENT + MAYBE_PROCESSED)
def test_idempotent_methods_retry_every_transport_failure(method: str, kind: FailureKind) -> None:
    assert should_retry(method, kind)


@pytest.mark.parametrize("method", ["POST", "PATCH", "post"])
@pytest.mark.parametrize("kind", NEVER_SENT)
def test_post_is_retried_when_it_never_reached_the_server(method: str, kind: FailureKind) -> None:
    assert should_retry(method, kind)


@pytest.mark.parametrize("kind", MAYBE_PROCESSED)
def test_post_is_not_retried_when_it_may_have_been_processed(kind: FailureKind) -> None:
    assert not should_retry("POST", kind)
    assert should_retry("POST", kind, unsafe_ok=True)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_for_get(status: int) -> None:
    assert should_retry("GET", FailureKind.STATUS, status=status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
def test_other_statuses_are_never_retried(status: int) -> None:
    assert not should_retry("GET", FailureKind.STATUS, status=status)
    assert not should_retry("POST", FailureKind.STATUS, status=status, unsafe_ok=True)


def test_post_status_rules() -> None:
    assert should_retry("POST", FailureKind.STATUS, status=429)
    assert should_retry("POST", FailureKind.STATUS, status=503, has_retry_after=True)
    for status in (500, 502, 503, 504, 408, 425):
        assert not should_retry("POST", FailureKind.STATUS, status=status)
        assert should_retry("POST", FailureKind.STATUS, status=status, unsafe_ok=True)


def test_fatal_failures_are_never_retried() -> None:
    assert not should_retry("GET", FailureKind.FATAL)
    assert not should_retry("POST", FailureKind.FATAL, unsafe_ok=True)


def test_failure_kind_facts() -> None:
    assert {k for k in FailureKind if k.never_sent} == set(NEVER_SENT)
    assert {k for k in FailureKind if k.is_timeout} == {
        FailureKind.CONNECT_TIMEOUT,
        FailureKind.POOL_TIMEOUT,
        FailureKind.READ_TIMEOUT,
    }


# -------------------------------------------------------------------------------- budget


def test_budget_pays_one_hundred_retries_then_refuses() -> None:
    budget = RetryBudget()
    assert budget.tokens == 500
    costs = [budget.acquire() for _ in range(100)]
    assert costs == [5] * 100
    assert budget.tokens == 0
    assert budget.acquire() is None
    assert budget.tokens == 0


def test_budget_charges_ten_for_a_retry_after_a_timeout() -> None:
    budget = RetryBudget(25)
    assert budget.acquire(timeout=True) == 10
    assert budget.acquire(timeout=True) == 10
    assert budget.acquire(timeout=True) is None
    assert budget.acquire() == 5
    assert budget.tokens == 0


def test_budget_refunds_one_per_plain_success_and_never_overfills() -> None:
    budget = RetryBudget(500)
    budget.record_success()
    assert budget.tokens == 500
    budget.acquire()
    budget.acquire()
    assert budget.tokens == 490
    budget.record_success()
    assert budget.tokens == 491


def test_budget_refunds_the_last_retry_cost_when_a_retried_call_succeeds() -> None:
    budget = RetryBudget(100)
    cost = budget.acquire(timeout=True)
    assert cost == 10
    budget.record_success(cost)
    assert budget.tokens == 100


def test_budget_recovers_after_successes() -> None:
    budget = RetryBudget(10)
    assert budget.acquire() == 5
    assert budget.acquire() == 5
    assert budget.acquire() is None
    for _ in range(5):
        budget.record_success()
    assert budget.acquire() == 5


@pytest.mark.parametrize("field", ["capacity", "retry_cost", "timeout_cost", "success_refund"])
def test_budget_rejects_negative_settings_naming_them(field: str) -> None:
    kwargs = {field: -1}
    with pytest.raises(ValueError, match=field):
        RetryBudget(**kwargs)
