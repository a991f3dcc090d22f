"""What the client retries, how long it waits, and what it reports, through `MockTransport`.

Scripts of statuses, lost answers (`RESET`: a `TransportError(DISCONNECTED)`) and stalled
answers (`HANG`: the read timeout or the deadline ends the attempt) are played by the `scripted`
fixture, so no socket is involved: the attempts the transport saw, the idempotency key (one per
logical call, reused on every attempt), `Retry-After`, the deadline, the retry budget and
`retry_unsafe`/`maybe_processed` are the client's own decisions. How real sockets fail (a reset
connection, a hanging server, a refused port, TLS, the pool) is `test_socket_failures.py`'s;
the pure policy and loop are `tests/unit/test_retry_policy.py` and `test_retry_loop.py`.
Backoff is made fast by configuration; the waits decided are read from the client's debug log.
Run with `-s` to see the scenario table.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from conftest import HANG, RESET, ScriptedTransport, Step, backoff_waits, ok, status

from finalpos_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncFinalPOS,
    BadRequestError,
    FailureKind,
    InternalServerError,
    MockTransport,
    RateLimitError,
    Request,
    TransportError,
    TransportResponse,
)
from finalpos_async._retry import may_have_taken_effect
from finalpos_async._types import RequestOptions

KEY = RequestOptions(idempotency_key="k-1")
STRICT = RequestOptions(idempotency_key="k-1", retry_unsafe=False)


def report(name: str, attempts: int, elapsed: float, outcome: str) -> None:
    """One row of the scenario table (visible with `pytest -s`)."""
    print(
        f"\nSCENARIO | {name} | attempts={attempts} | elapsed={elapsed * 1000:.1f} ms | {outcome}"
    )


def keys_seen(script: ScriptedTransport) -> set[str | None]:
    return {seen.headers.get("Idempotency-Key") for seen in script.seen}


def client_for(transport: MockTransport, **kwargs: Any) -> AsyncFinalPOS:
    settings: dict[str, Any] = {"backoff_base": 0.001, "backoff_cap": 0.002}
    settings.update(kwargs)
    return AsyncFinalPOS("sk_test_mock", transport=transport, **settings)


# ------------------------------------------------------------------------- error statuses


async def test_get_retries_through_two_503s(scripted: ScriptedTransport) -> None:
    scripted.play(status(503), status(503), ok({"id": "c1"}))
    async with scripted.client() as client:
        started = time.perf_counter()
        raw = await client.send("GET", "/v1/api/customer/c1")
        elapsed = time.perf_counter() - started
        assert raw.json() == {"id": "c1"}
        assert raw.attempts == 3
        assert scripted.attempts == 3
        assert keys_seen(scripted) == {None}  # GET needs no key
    report("GET 503,503,200", scripted.attempts, elapsed, "200 after 3 attempts")


async def test_post_reuses_one_idempotency_key_across_503_retry_after(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(status(503, Retry_After="0"), status(503, Retry_After="0"), ok())
    async with scripted.client() as client:
        started = time.perf_counter()
        raw = await client.send("POST", "/v1/api/customer", json={"name": "Ada"})
        elapsed = time.perf_counter() - started
        assert scripted.attempts == 3
        keys = keys_seen(scripted)
        assert len(keys) == 1
        assert raw.idempotency_key in keys
        assert raw.idempotency_key is not None
        assert all(seen.body == b'{"name":"Ada"}' for seen in scripted.seen)
    report("POST 503+Retry-After:0 x2, 200", scripted.attempts, elapsed, "200; one key on all 3")


async def test_retries_reuse_one_request_value_and_key() -> None:
    answers = [TransportResponse(503), TransportResponse(503), TransportResponse(201, json={})]

    async def handler(request: Request) -> TransportResponse:
        return answers.pop(0)

    transport = MockTransport(handler)
    async with client_for(transport) as client:
        raw = await client.request("POST", "/v1/api/customer", json={"a": 1}, idempotency_key="k1")
        assert raw == {}
    assert len(transport.requests) == 3
    assert all(r is transport.requests[0] for r in transport.requests)  # one value for all
    sent = transport.requests[0]
    assert sent.idempotency_key == "k1"
    assert sent.headers["Idempotency-Key"] == "k1"
    assert sent.json() == {"a": 1}
    assert sent.unsafe_ok
    assert not sent.strict


async def test_post_503_without_retry_after_is_not_retried(scripted: ScriptedTransport) -> None:
    scripted.play(status(503), ok())
    async with scripted.client() as client:
        with pytest.raises(InternalServerError) as info:
            await client.send("POST", "/v1/api/customer", json={})
        assert scripted.attempts == 1
        assert info.value.attempts == 1


async def test_post_answered_500_is_not_retried(scripted: ScriptedTransport) -> None:
    scripted.play(status(500), ok())
    async with scripted.client() as client:
        started = time.perf_counter()
        with pytest.raises(InternalServerError) as info:
            await client.send("POST", "/v1/api/customer", json={"name": "Ada"})
        elapsed = time.perf_counter() - started
        assert scripted.attempts == 1
        assert info.value.attempts == 1
        assert info.value.idempotency_key == scripted.seen[0].headers["Idempotency-Key"]
        assert info.value.message == "scripted 500"
    report("POST 500", scripted.attempts, elapsed, "InternalServerError, no retry")


async def test_post_500_is_retried_with_retry_unsafe(scripted: ScriptedTransport) -> None:
    scripted.play(status(500), ok())
    async with scripted.client() as client:
        result = await client.request("POST", "/v1/api/customer", json={}, retry_unsafe=True)
        assert result == {"ok": True}
        assert scripted.attempts == 2
        assert len(keys_seen(scripted)) == 1


async def test_html_502_gives_a_readable_typed_error(scripted: ScriptedTransport) -> None:
    page = (
        "<html><head><title>502 Bad Gateway</title></head>"
        "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
    )
    scripted.play(Step(502, page, content_type="text/html"))
    async with scripted.client(max_retries=2) as client:
        started = time.perf_counter()
        with pytest.raises(InternalServerError) as info:
            await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        error = info.value
        assert error.status_code == 502
        assert error.message == "502 Bad Gateway"
        assert error.body is None
        assert "nginx" in error.text
        assert error.attempts == 3
        assert scripted.attempts == 3
        assert str(error).startswith("HTTP 502 Bad Gateway: 502 Bad Gateway")
    report("GET HTML 502 x3 (max_retries=2)", scripted.attempts, elapsed, str(error))


async def test_a_5xx_to_a_get_is_retried_then_raised() -> None:
    transport = MockTransport(lambda request: TransportResponse(500, content=b"oops"))
    async with client_for(transport, max_retries=2) as client:
        with pytest.raises(InternalServerError):
            await client.request("GET", "/v1/api/customers")
    assert len(transport.requests) == 3


async def test_retries_then_surfaces_the_last_error_with_attempts(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(status(503, {"message": "busy"}))
    async with scripted.client() as client:
        with pytest.raises(InternalServerError) as info:
            await client.request("GET", "/v1/api/customers")
    assert info.value.attempts == 4
    assert scripted.attempts == 4
    assert "4 attempts" in str(info.value)


async def test_per_call_max_retries_zero(scripted: ScriptedTransport) -> None:
    scripted.play(Step(503, ""))
    async with scripted.client() as client:
        with pytest.raises(InternalServerError):
            await client.request("GET", "/v1/api/customers", max_retries=0)
    assert scripted.attempts == 1


# ---------------------------------------------------------------------------- Retry-After


async def test_429_retry_after_one_second_is_honoured(scripted: ScriptedTransport) -> None:
    scripted.play(status(429, Retry_After="1"), ok())
    async with scripted.client() as client:
        started = time.perf_counter()
        with backoff_waits() as waits:
            raw = await client.send("POST", "/v1/api/customer", json={"name": "Ada"})
        elapsed = time.perf_counter() - started
        assert raw.attempts == 2
        assert scripted.attempts == 2
        # The wait asked for, exactly, without jitter (and slept: 1 s).
        assert waits == [1.0]
        assert elapsed >= 1.0
        assert len(keys_seen(scripted)) == 1
    report("POST 429 Retry-After:1, 200", scripted.attempts, elapsed, f"200; waited {waits} s")


async def test_retry_after_ms_is_slept_for_real(scripted: ScriptedTransport) -> None:
    scripted.play(status(429, retry_after_ms="150"), ok())
    async with scripted.client() as client:
        started = time.perf_counter()
        raw = await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        assert raw.attempts == 2
        assert scripted.attempts == 2
        assert elapsed >= 0.15
        assert raw.elapsed >= 0.15
    report("GET 429 retry-after-ms:150, 200", scripted.attempts, elapsed, "200")


async def test_retry_after_in_digits_is_honoured(scripted: ScriptedTransport) -> None:
    scripted.play(status(503, Retry_After="1"), ok())
    async with scripted.client() as client:
        started = time.perf_counter()
        assert await client.request("GET", "/v1/api/customers") == {"ok": True}
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.99


async def test_retry_after_with_an_underscore_is_ignored_not_read_as_ten_seconds(
    scripted: ScriptedTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="finalpos")
    # int("1_0") == 10: read that way, this call would wait 10 s (its deadline, 5 s, first).
    scripted.play(status(503, Retry_After="1_0"), ok())
    async with scripted.client(deadline=5) as client:
        started = time.perf_counter()
        # A GET: retried after a 503 with or without Retry-After, after the (tiny) backoff.
        assert await client.request("GET", "/v1/api/customers") == {"ok": True}
        elapsed = time.perf_counter() - started
    assert scripted.attempts == 2
    assert elapsed < 2.0  # nowhere near 10 s; the backoff cap here is 5 ms
    assert "ignoring the server's Retry-After header '1_0'" in caplog.text


async def test_retry_after_beyond_cap_raises_at_once(scripted: ScriptedTransport) -> None:
    scripted.play(status(429, Retry_After="3600"), ok())
    async with scripted.client() as client:
        started = time.perf_counter()
        with pytest.raises(RateLimitError) as info:
            await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        assert info.value.retry_after == 3600.0
        assert scripted.attempts == 1
        assert elapsed < 1.0
    report("GET 429 Retry-After:3600 (cap 60)", scripted.attempts, elapsed, "RateLimitError")


async def test_retry_after_is_exposed_on_rate_limit_error(scripted: ScriptedTransport) -> None:
    scripted.play(status(429, {"message": "slow"}, Retry_After="120"))
    async with scripted.client() as client:
        with pytest.raises(RateLimitError) as info:
            await client.request("GET", "/v1/api/customers")
    assert info.value.retry_after == 120.0
    assert info.value.attempts == 1
    assert "retry after 120 s" in str(info.value)


async def test_retry_after_past_the_deadline_is_not_slept(scripted: ScriptedTransport) -> None:
    scripted.play(status(429, Retry_After="1"), ok())
    async with scripted.client(deadline=0.5) as client:
        started = time.perf_counter()
        with pytest.raises(APITimeoutError) as info:
            await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        assert info.value.kind == "deadline"
        assert info.value.attempts == 1
        assert "1 attempt" in str(info.value)
        assert isinstance(info.value.last_error, RateLimitError)
        assert scripted.attempts == 1
        assert elapsed < 0.5
    report("GET 429 Retry-After:1, deadline 0.5 s", scripted.attempts, elapsed, "not slept")


async def test_deadline_stops_backoff_and_says_how_many_attempts(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(status(503))
    # Enough retries that the deadline, never the retry count, ends the call.
    client = scripted.client(max_retries=50, backoff_base=0.1, backoff_cap=0.1, deadline=0.35)
    async with client:
        started = time.perf_counter()
        with pytest.raises(APITimeoutError) as info:
            await client.send("GET", "/v1/api/customers")
        elapsed = time.perf_counter() - started
        assert info.value.kind == "deadline"
        assert info.value.attempts == scripted.attempts
        assert f"{scripted.attempts} attempts" in str(info.value)
        assert elapsed < 0.35 + 0.1  # no sleep crossed the deadline
        assert isinstance(info.value.last_error, InternalServerError)
    report("GET 503 forever, deadline 0.35 s", scripted.attempts, elapsed, "APITimeoutError")


# ---------------------------------------------------------------------------- retry budget


async def test_empty_retry_budget_surfaces_failures_without_retry(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(Step(503, ""))
    async with scripted.client(retry_budget=10) as client:
        with pytest.raises(InternalServerError) as info:
            await client.request("GET", "/v1/api/customers")
        # 10 tokens pay for two retries of 5; the third is refused.
        assert info.value.attempts == 3
        budget = client.retry_budget
        assert budget is not None
        assert budget.tokens == 0
        with pytest.raises(InternalServerError) as again:
            await client.request("GET", "/v1/api/customers")
        assert again.value.attempts == 1


async def test_success_refills_the_budget(scripted: ScriptedTransport) -> None:
    scripted.play(status(503), ok({}))
    async with scripted.client() as client:
        await client.request("GET", "/v1/api/customers")
        budget = client.retry_budget
        assert budget is not None
        assert budget.tokens == 500  # paid 5 for the retry, got 5 back on success


# ------------------------------------------------- lost and late answers, maybe_processed


async def test_a_lost_answer_to_a_post_is_not_retried() -> None:
    def handler(request: Request) -> TransportResponse:
        raise TransportError(FailureKind.DISCONNECTED, "connection lost")

    transport = MockTransport(handler)
    async with client_for(transport) as client:
        with pytest.raises(APIConnectionError, match="connection lost") as info:
            await client.request("POST", "/v1/api/customer", json={})
    assert info.value.attempts == 1
    assert info.value.maybe_processed
    assert len(transport.requests) == 1


@pytest.mark.parametrize("first", [status(500), status(503, Retry_After="0"), RESET])
async def test_retry_unsafe_false_never_repeats_a_post_that_may_have_taken_effect(
    scripted: ScriptedTransport, first: Step
) -> None:
    scripted.play(first, ok())
    async with scripted.client() as client:
        with pytest.raises((InternalServerError, APIConnectionError)) as caught:
            await client.send("POST", "/v1/api/customer", json={"a": 1}, options=STRICT)
    assert scripted.attempts == 1
    assert caught.value.maybe_processed is True
    # The key was still sent.
    assert scripted.seen[0].headers["Idempotency-Key"] == "k-1"


async def test_with_a_key_the_default_still_retries_a_500(scripted: ScriptedTransport) -> None:
    scripted.play(status(500), ok())
    async with scripted.client() as client:
        raw = await client.send("POST", "/v1/api/customer", json={"a": 1}, options=KEY)
    assert raw.attempts == 2
    assert scripted.attempts == 2


async def test_a_generated_method_takes_retry_unsafe_false_for_that_call_only(
    scripted: ScriptedTransport,
) -> None:
    person = {"email": "a@b.co", "first_name": "A", "last_name": "B"}
    scripted.play(status(502), ok())
    async with scripted.client() as client:
        with pytest.raises(InternalServerError) as caught:
            await client.customers.create(**person, idempotency_key="k-1", retry_unsafe=False)
        assert caught.value.maybe_processed is True
        assert scripted.attempts == 1
        scripted.play(status(502), ok())
        raw = await client.customers.with_raw_response.create(**person, idempotency_key="k-1")
    assert raw.attempts == 2  # without it, the key allows the retry again
    assert scripted.seen[0].headers["Idempotency-Key"] == "k-1"


async def test_a_429_is_retried_even_in_strict_mode(scripted: ScriptedTransport) -> None:
    scripted.play(status(429, Retry_After="0"), ok())
    async with scripted.client() as client:
        raw = await client.send("POST", "/v1/api/customer", json={}, options=STRICT)
    assert raw.attempts == 2


async def test_a_4xx_is_definite(scripted: ScriptedTransport) -> None:
    scripted.play(status(400))
    async with scripted.client() as client:
        with pytest.raises(BadRequestError) as caught:
            await client.send("POST", "/v1/api/customer", json={}, options=STRICT)
    assert caught.value.maybe_processed is False


async def test_a_lost_answer_before_a_final_4xx_still_counts_as_maybe_processed(
    scripted: ScriptedTransport,
) -> None:
    # With the key trusted, attempt 1 may have created the record; attempt 2's 409 does not
    # prove otherwise.
    scripted.play(RESET, status(409))
    async with scripted.client() as client:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - ConflictError, checked below
            await client.send("POST", "/v1/api/customer", json={}, options=KEY)
    assert scripted.attempts == 2
    assert getattr(caught.value, "status_code", None) == 409
    assert caught.value.maybe_processed is True  # type: ignore[attr-defined]  # any error type


async def test_a_read_timeout_is_maybe_processed(scripted: ScriptedTransport) -> None:
    scripted.play(HANG)
    async with scripted.client(timeout=0.05) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.send("POST", "/v1/api/customer", json={}, options=STRICT)
    assert caught.value.kind == "read"
    assert caught.value.maybe_processed is True


def test_may_have_taken_effect_by_failure_kind() -> None:
    assert not may_have_taken_effect(FailureKind.CONNECT)
    assert not may_have_taken_effect(FailureKind.POOL_TIMEOUT)
    assert may_have_taken_effect(FailureKind.READ_TIMEOUT)
    assert may_have_taken_effect(FailureKind.DISCONNECTED)
    assert may_have_taken_effect(FailureKind.STATUS, 503)
    assert not may_have_taken_effect(FailureKind.STATUS, 422)
