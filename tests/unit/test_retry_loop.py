"""The retry loop's decisions as pure functions: no server, no event loop, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from finalpos_async import APITimeoutError, FailureKind, RateLimitError, RequestOptions
from finalpos_async._request import CallSettings, Request, build_request
from finalpos_async._response import RawResponse
from finalpos_async._retry import RetryPolicy
from finalpos_async._retry_loop import (
    CallState,
    attempt_timeout,
    status_failure,
    transport_failure,
)
from finalpos_async._secret import HeaderSecret
from finalpos_async._transport import TransportError

URL = "https://api.finalpos.com/v1/api/customer"
# As the client holds them: the key as a HeaderSecret (masked in any rendering).
BASE = {"Accept": "application/json", "x-api-key": HeaderSecret("sk_test_secret")}


def post(deadline: float | None = 10.0, **options: Any) -> Request:
    settings = CallSettings(timeout=5.0, deadline=deadline, max_retries=3)
    return build_request(
        "POST", URL, dict(BASE), settings, json={"a": 1}, options=RequestOptions(**options)
    )


def raw(status: int, headers: dict[str, str] | None = None) -> RawResponse[Any]:
    return RawResponse(
        status_code=status,
        headers=headers or {},
        content=b'{"message": "sk_test_secret was refused"}',
        elapsed=0.0,
        attempts=1,
        request_id=None,
        method="POST",
        url=URL,
        request_headers=post().headers,  # what the retry loop's `to_raw` records
    )


def test_the_request_value_holds_the_call() -> None:
    request = post(retry_unsafe=True, max_retries=1)
    assert request.method == "POST"
    assert request.content == b'{"a":1}'
    assert request.headers["Content-Type"] == "application/json"
    assert request.idempotency_key is not None
    assert request.headers["Idempotency-Key"] == request.idempotency_key
    assert request.max_retries == 1
    assert request.unsafe_ok
    assert not post(retry_unsafe=False).unsafe_ok
    assert post(retry_unsafe=False).strict


def test_the_first_attempt_gets_the_whole_deadline_and_later_ones_what_is_left() -> None:
    request = post(deadline=10.0)
    state = CallState(100.0, request.deadline)
    state.attempt = 1
    assert attempt_timeout(request, state, 100.001) == 10.0
    state.attempt = 2
    assert attempt_timeout(request, state, 104.0) == pytest.approx(6.0)
    with pytest.raises(APITimeoutError, match="deadline of 10 s ran out after 1 attempt"):
        attempt_timeout(request, state, 110.0)
    assert attempt_timeout(post(deadline=None), CallState(0.0, None), 1e9) is None


def test_a_lost_answer_to_a_post_is_final_and_marked_maybe_processed() -> None:
    request = post()
    state = CallState(0.0, request.deadline)
    state.attempt = 1
    failure = transport_failure(request, state, TransportError(FailureKind.DISCONNECTED, "x"), 1.0)
    assert not failure.retryable
    assert failure.error.maybe_processed
    never_sent = transport_failure(request, state, TransportError(FailureKind.CONNECT, "y"), 1.0)
    assert never_sent.retryable


def test_a_429_is_retried_after_its_wait_and_the_key_is_scrubbed() -> None:
    request = post()
    state = CallState(0.0, request.deadline)
    state.attempt = 1
    failure = status_failure(request, state, raw(429, {"Retry-After": "2"}), RetryPolicy())
    assert failure.retryable
    assert failure.retry_after == 2.0
    assert isinstance(failure.error, RateLimitError)
    assert "sk_test_secret" not in str(failure.error)
    with pytest.raises(RateLimitError):  # past the cap: raised at once
        status_failure(request, state, raw(429, {"Retry-After": "3600"}), RetryPolicy())
