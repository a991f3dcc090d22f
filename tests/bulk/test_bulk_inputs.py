"""Explicit bulk inputs: `retry_unsafe=` per call on every generated method, `raw_twin`, and the
bulk engine checking an item's fields against the operation's signature before the call (all
through `MockTransport`, async and sync)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import finalpos_async
import finalpos_sync
from finalpos_async import (
    AsyncFinalPOS,
    Customer,
    InternalServerError,
    MockTransport,
    Page,
    RawResponse,
    Request,
    TransportResponse,
    raw_twin,
)
from finalpos_async.bulk import BulkRunner, ItemStatus

KEY = "sk_test_bulk_inputs"
PERSON = {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"}
BUSY = TransportResponse(503, headers={"Retry-After": "0"}, json={"message": "busy"})


def created(request: Request) -> TransportResponse:
    """The API's answer to a create: the body sent, with an id."""
    return TransportResponse(201, json={"id": f"c{request.json()['email']}", **request.json()})


def busy_once() -> Any:
    """A handler answering the first attempt 503 (with `Retry-After: 0`), then as `created`."""
    answers: Iterator[TransportResponse] = iter([BUSY])

    def handler(request: Request) -> TransportResponse:
        return next(answers, None) or created(request)

    return handler


def async_client(transport: MockTransport) -> AsyncFinalPOS:
    return AsyncFinalPOS(KEY, transport=transport, backoff_base=0.001, backoff_cap=0.002)


def sync_client(transport: MockTransport) -> finalpos_sync.FinalPOS:
    return finalpos_sync.FinalPOS(KEY, transport=transport, backoff_base=0.001, backoff_cap=0.002)


# -- retry_unsafe= per call ----------------------------------------------------------------------


@pytest.mark.parametrize(("retry_unsafe", "attempts"), [(True, 2), (False, 1)])
async def test_a_post_is_retried_on_a_503_with_retry_unsafe_true_and_never_with_false(
    retry_unsafe: bool, attempts: int
) -> None:
    transport = MockTransport(busy_once())
    async with async_client(transport) as client:
        create = client.customers.with_raw_response.create
        if retry_unsafe:
            raw = await create(**PERSON, retry_unsafe=True)
            assert raw.attempts == attempts
        else:
            # Not even after a 503 with Retry-After: a proxy may send one for a call it passed on.
            with pytest.raises(InternalServerError) as caught:
                await create(**PERSON, idempotency_key="k-1", retry_unsafe=False)
            assert caught.value.maybe_processed is True
    assert len(transport.requests) == attempts
    # What the retry loop was told, on every attempt.
    assert {(r.strict, r.unsafe_ok) for r in transport.requests} == {
        (not retry_unsafe, retry_unsafe)
    }


@pytest.mark.parametrize(("retry_unsafe", "attempts"), [(True, 2), (False, 1)])
def test_the_sync_client_takes_retry_unsafe_per_call_too(retry_unsafe: bool, attempts: int) -> None:
    transport = MockTransport(busy_once())
    with sync_client(transport) as client:
        if retry_unsafe:
            assert client.customers.create(**PERSON, retry_unsafe=True).email == PERSON["email"]
        else:
            with pytest.raises(InternalServerError):
                client.customers.create(**PERSON, retry_unsafe=False)
    assert len(transport.requests) == attempts


async def test_retry_unsafe_is_checked_before_anything_is_sent() -> None:
    transport = MockTransport(created)
    async with async_client(transport) as client:
        with pytest.raises(TypeError, match="retry_unsafe must be a bool, got 'no'"):
            await client.customers.create(**PERSON, retry_unsafe="no")  # type: ignore[arg-type]
    assert transport.requests == []


# -- raw_twin ------------------------------------------------------------------------------------


async def test_raw_twin_gives_the_methods_raw_response_and_its_attempts() -> None:
    transport = MockTransport(busy_once())
    async with async_client(transport) as client:
        create = raw_twin(client.customers.create)
        raw = await create(**PERSON, retry_unsafe=True)
        assert isinstance(raw, RawResponse)
        assert (raw.status_code, raw.attempts) == (201, 2)
        customer = raw.parse()
        assert isinstance(customer, Customer)
        assert customer.email == PERSON["email"]
        # A raw twin's method is its own twin (not wrapped twice); it keeps the method's name.
        again = await raw_twin(client.customers.with_raw_response.create)(**PERSON)
        assert isinstance(again, RawResponse)
        assert again.parse().email == PERSON["email"]
        assert raw_twin(create).__name__ == "create"


async def test_raw_twin_of_a_list_method_fetches_the_first_page() -> None:
    def handler(request: Request) -> TransportResponse:
        assert request.params == {"skip": "0", "limit": "2"}
        return TransportResponse(200, json=[{"id": "c1"}, {"id": "c2"}])

    transport = MockTransport(handler)
    async with async_client(transport) as client:
        raw = await raw_twin(client.customers.list)(limit=2)
    page = raw.parse()
    assert isinstance(page, Page)
    assert [c.id for c in page] == ["c1", "c2"]
    assert len(transport.requests) == 1


def test_the_sync_raw_twin_answers_raw_responses_for_the_sync_clients_methods() -> None:
    def handler(request: Request) -> TransportResponse:
        if request.method == "GET" and request.url.endswith("/customers"):
            return TransportResponse(200, json=[{"id": "c1"}])
        return TransportResponse(200, json={"id": "c1", "email": "ada@example.com"})

    with sync_client(MockTransport(handler)) as client:
        raw = finalpos_sync.raw_twin(client.customers.retrieve)("c1")
        assert (raw.status_code, raw.attempts, raw.parse().email) == (200, 1, "ada@example.com")
        first = finalpos_sync.raw_twin(client.customers.list)(limit=5)
        assert [c.id for c in first.parse()] == ["c1"]


async def test_raw_twin_refuses_anything_but_a_resource_method_and_names_the_way_on() -> None:
    async def create(**fields: Any) -> Any:
        return fields

    with pytest.raises(TypeError, match=r"raw_twin\(\) takes a method of an AsyncFinalPOS"):
        raw_twin(create)
    with sync_client(MockTransport(created)) as client:
        with pytest.raises(TypeError, match=r"finalpos_sync\.raw_twin"):
            raw_twin(client.customers.create)  # type: ignore[arg-type]  # the point of the test
        with pytest.raises(TypeError, match=r"finalpos_async\.raw_twin"):
            async with async_client(MockTransport(created)) as other:
                finalpos_sync.raw_twin(other.customers.create)
    assert finalpos_async.raw_twin is raw_twin


# -- the engine: fields checked against the signature, retry_unsafe=False passed ----------------


async def test_an_unknown_field_fails_its_item_naming_field_and_method_and_nothing_is_sent() -> (
    None
):
    transport = MockTransport(created)
    rows = [{**PERSON, "nickname": "ada"}, {"email": "b@example.com"}, PERSON]
    async with async_client(transport) as client:
        job = client.bulk.run(client.customers.create, rows)
        results = sorted([r async for r in job], key=lambda r: r.index)
    unknown_field, missing, good = results
    assert unknown_field.status is ItemStatus.FAILED
    assert isinstance(unknown_field.error, TypeError)
    assert (
        "customers.create(): got an unexpected keyword argument 'nickname'" in unknown_field.reason
    )
    assert missing.status is ItemStatus.FAILED
    assert (
        "customers.create(): missing 2 required keyword-only arguments: 'first_name' and "
        "'last_name'" in missing.reason
    )
    assert (unknown_field.attempts, missing.attempts) == (0, 0)
    assert good.status is ItemStatus.SUCCEEDED
    # Only the good row reached the transport.
    assert [r.json()["email"] for r in transport.requests] == [PERSON["email"]]
    assert job.report.failed == 2


def test_the_sync_runner_checks_the_fields_the_same_way() -> None:
    transport = MockTransport(created)
    with sync_client(transport) as client:
        results = list(client.bulk.run(client.customers.create, [{**PERSON, "nick": "a"}]))
    assert results[0].status is ItemStatus.FAILED
    assert "customers.create(): got an unexpected keyword argument 'nick'" in results[0].reason
    assert transport.requests == []


async def test_fields_the_run_sets_itself_or_that_are_not_names_fail_with_the_reason() -> None:
    calls: list[dict[str, Any]] = []

    async def op(*, idempotency_key: str, **fields: Any) -> dict[str, Any]:
        calls.append(fields)
        return {"id": "x"}

    async def no_key(*, email: str, retry_unsafe: bool | None = None) -> dict[str, Any]:
        raise AssertionError("never called: it takes no idempotency_key")

    rows: list[Any] = [{"idempotency_key": "mine"}, {3: "x"}, {"email": "a@b.co"}]
    results = sorted([r async for r in BulkRunner().run(op, rows)], key=lambda r: r.index)
    assert [r.status for r in results] == [
        ItemStatus.FAILED,
        ItemStatus.FAILED,
        ItemStatus.SUCCEEDED,
    ]
    assert "an item cannot hold 'idempotency_key': the bulk run passes it itself" in (
        results[0].reason
    )
    assert "field names must be str, got 3" in results[1].reason
    # **fields receives retry_unsafe=False too: a wrapper passes it on to the client's method.
    assert calls == [{"email": "a@b.co", "retry_unsafe": False}]

    refused = [r async for r in BulkRunner().run(no_key, [{"email": "a@b.co"}])]
    assert "no_key(): got an unexpected keyword argument 'idempotency_key'" in refused[0].reason
    assert "a bulk operation must take idempotency_key=" in refused[0].reason


async def test_an_operation_that_cannot_take_retry_unsafe_is_refused_when_the_run_is_made() -> None:
    # Run with the client's own retries, it could repeat a POST that took effect: against a
    # server that ignores Idempotency-Key, a duplicate. So it is refused, never run that way.
    async def loose(*, email: str, idempotency_key: str) -> dict[str, Any]:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match=r"loose must take retry_unsafe= .*create twice"):
        BulkRunner().run(loose, [{"email": "a@b.co"}])
    # With resend_unknown the server is trusted to replay by key: the client's retries are fine.
    job = BulkRunner().run(loose, [], resend_unknown=True)
    assert (await job).submitted == 0


async def test_an_operation_that_declares_retry_unsafe_gets_false_unless_unknowns_are_resent() -> (
    None
):
    seen: list[bool | None] = []

    async def create(*, email: str, idempotency_key: str, retry_unsafe: bool | None = None) -> Any:
        seen.append(retry_unsafe)
        return {"id": email}

    await BulkRunner().run(create, [{"email": "a@b.co"}])
    await BulkRunner().run(create, [{"email": "b@b.co"}], resend_unknown=True)
    assert seen == [False, None]


@pytest.mark.parametrize(("resend_unknown", "attempts"), [(False, 1), (True, 2)])
async def test_a_bulk_run_sends_each_item_with_retry_unsafe_false_as_a_per_call_option(
    resend_unknown: bool, attempts: int
) -> None:
    transport = MockTransport(busy_once())
    async with async_client(transport) as client:
        job = client.bulk.run(client.customers.create, [PERSON], resend_unknown=resend_unknown)
        results = [r async for r in job]
    # retry_unsafe=False (strict) per item; with resend_unknown, the client's own rule: the
    # item's idempotency key allows the retry.
    expected = (False, True) if resend_unknown else (True, False)
    assert [(r.strict, r.unsafe_ok) for r in transport.requests] == [expected] * attempts
    assert results[0].attempts == attempts
    if resend_unknown:
        assert results[0].status is ItemStatus.SUCCEEDED
    else:
        assert results[0].status is ItemStatus.UNKNOWN  # the 503 may have been processed
        assert isinstance(results[0].error, InternalServerError)
