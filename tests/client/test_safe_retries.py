"""`retry_unsafe=False` and `maybe_processed`, against a scripted server.

A bulk run may not rely on the server honouring `Idempotency-Key`: it calls each item's method
with `retry_unsafe=False`, so a POST is sent with its key but repeated only where it provably did
not take effect, and the final error says whether the server may have acted on the call.
"""

from __future__ import annotations

import socket

import pytest
from conftest import HANG, RESET, ScriptedServer, ok, status

from finalpos_async import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    InternalServerError,
)
from finalpos_async._retry import FailureKind, may_have_taken_effect
from finalpos_async._types import RequestOptions

KEY = RequestOptions(idempotency_key="k-1")
STRICT = RequestOptions(idempotency_key="k-1", retry_unsafe=False)


@pytest.mark.parametrize("first", [status(500), status(503, Retry_After="0"), RESET])
async def test_retry_unsafe_false_never_repeats_a_post_that_may_have_taken_effect(
    scripted_server: ScriptedServer, first: object
) -> None:
    scripted_server.play(first, ok())  # type: ignore[arg-type]  # parametrised Steps
    async with scripted_server.client() as client:
        with pytest.raises((InternalServerError, APIConnectionError)) as caught:
            await client.send("POST", "/v1/api/customer", json={"a": 1}, options=STRICT)
    assert scripted_server.attempts == 1
    assert caught.value.maybe_processed is True
    # The key was still sent.
    assert scripted_server.seen[0].headers["Idempotency-Key"] == "k-1"


async def test_with_a_key_the_default_still_retries_a_500(scripted_server: ScriptedServer) -> None:
    scripted_server.play(status(500), ok())
    async with scripted_server.client() as client:
        raw = await client.send("POST", "/v1/api/customer", json={"a": 1}, options=KEY)
    assert raw.attempts == 2
    assert scripted_server.attempts == 2


async def test_a_generated_method_takes_retry_unsafe_false_for_that_call_only(
    scripted_server: ScriptedServer,
) -> None:
    person = {"email": "a@b.co", "first_name": "A", "last_name": "B"}
    scripted_server.play(status(502), ok())
    async with scripted_server.client() as client:
        with pytest.raises(InternalServerError) as caught:
            await client.customers.create(**person, idempotency_key="k-1", retry_unsafe=False)
        assert caught.value.maybe_processed is True
        assert scripted_server.attempts == 1
        scripted_server.play(status(502), ok())
        raw = await client.customers.with_raw_response.create(**person, idempotency_key="k-1")
    assert raw.attempts == 2  # without it, the key allows the retry again
    assert scripted_server.seen[0].headers["Idempotency-Key"] == "k-1"


async def test_a_429_is_retried_even_in_strict_mode(scripted_server: ScriptedServer) -> None:
    scripted_server.play(status(429, Retry_After="0"), ok())
    async with scripted_server.client() as client:
        raw = await client.send("POST", "/v1/api/customer", json={}, options=STRICT)
    assert raw.attempts == 2


async def test_a_4xx_is_definite(scripted_server: ScriptedServer) -> None:
    scripted_server.play(status(400))
    async with scripted_server.client() as client:
        with pytest.raises(BadRequestError) as caught:
            await client.send("POST", "/v1/api/customer", json={}, options=STRICT)
    assert caught.value.maybe_processed is False


async def test_a_lost_answer_before_a_final_4xx_still_counts_as_maybe_processed(
    scripted_server: ScriptedServer,
) -> None:
    # With the key trusted, attempt 1 may have created the record; attempt 2's 409 does not
    # prove otherwise.
    scripted_server.play(RESET, status(409))
    async with scripted_server.client() as client:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - ConflictError, checked below
            await client.send("POST", "/v1/api/customer", json={}, options=KEY)
    assert scripted_server.attempts == 2
    assert getattr(caught.value, "status_code", None) == 409
    assert caught.value.maybe_processed is True  # type: ignore[attr-defined]  # any error type


async def test_a_read_timeout_is_maybe_processed(scripted_server: ScriptedServer) -> None:
    scripted_server.play(HANG)
    async with scripted_server.client(timeout=0.2) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.send("POST", "/v1/api/customer", json={}, options=STRICT)
    assert caught.value.kind == "read"
    assert caught.value.maybe_processed is True


async def test_a_connection_refused_is_retried_and_not_processed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from finalpos_async import AsyncFinalPOS

    async with AsyncFinalPOS(
        "k", base_url=f"http://127.0.0.1:{port}", backoff_base=0.001, backoff_cap=0.002
    ) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.send("POST", "/v1/api/customer", json={}, options=STRICT)
    assert caught.value.attempts == 4  # never reached the server: safe to retry in every mode
    assert caught.value.maybe_processed is False


def test_may_have_taken_effect_by_failure_kind() -> None:
    assert not may_have_taken_effect(FailureKind.CONNECT)
    assert not may_have_taken_effect(FailureKind.POOL_TIMEOUT)
    assert may_have_taken_effect(FailureKind.READ_TIMEOUT)
    assert may_have_taken_effect(FailureKind.DISCONNECTED)
    assert may_have_taken_effect(FailureKind.STATUS, 503)
    assert not may_have_taken_effect(FailureKind.STATUS, 422)
