"""The pytest plugin's fixtures, and the SDK client against scripted sandbox faults."""

from __future__ import annotations

from typing import Any

import pytest

from finalpos_async.sandbox import Sandbox

pytest_plugins = ["pytester"]

_client = pytest.importorskip("finalpos_async._client")
FAULT = "x-sandbox-fault"


async def test_the_client_fixture_is_bound_to_the_sandbox_fixture(
    finalpos_client: Any, finalpos_sandbox: Sandbox
) -> None:
    customer = await finalpos_client.customers.create(
        email="ada@example.com", first_name="Ada", last_name="Lovelace"
    )
    fetched = await finalpos_client.customers.retrieve(customer.id)
    assert fetched == customer
    assert finalpos_sandbox.storage.get("CustomerDto", customer.id) is not None


@pytest.mark.finalpos_client(max_retries=2, backoff_base=0.001, backoff_cap=0.01)
async def test_client_retries_see_the_scripted_503_503_then_success(finalpos_client: Any) -> None:
    customer = await finalpos_client.customers.create(
        email="ada@example.com", first_name="Ada", last_name="Lovelace"
    )
    raw = await finalpos_client.customers.with_raw_response.retrieve(
        customer.id, extra_headers={FAULT: "503,503,ok"}
    )
    assert raw.status_code == 200
    assert raw.attempts == 3
    assert raw.parse().id == customer.id


@pytest.mark.finalpos_sandbox(faults="retry-after=0")
@pytest.mark.finalpos_client(max_retries=1, backoff_base=0.001, backoff_cap=0.01)
async def test_client_gives_up_when_the_script_outlasts_its_retries(finalpos_client: Any) -> None:
    from finalpos_async._exceptions import InternalServerError, RateLimitError

    with pytest.raises(RateLimitError):
        await finalpos_client.customers.retrieve("a" * 24, extra_headers={FAULT: "429,429,ok"})
    with pytest.raises(InternalServerError):
        await finalpos_client.customers.retrieve("b" * 24, extra_headers={FAULT: "500,500,ok"})


def test_the_sync_client_fixture_is_bound_to_a_threaded_sandbox(finalpos_sync_client: Any) -> None:
    outlet = finalpos_sync_client.outlets.create(
        name="Main Store",
        address="26 Federal Plaza",
        city="New York",
        state="NY",
        country="US",
        post_code="10278",
        phone="+12323232323",
    )
    assert outlet.sequence_number == 1
    assert finalpos_sync_client.outlets.retrieve(outlet.id) == outlet


README_EXAMPLE = """
import pytest

async def test_customer_round_trip(finalpos_client):
    customer = await finalpos_client.customers.create(
        email="ada@example.com", first_name="Ada", last_name="Lovelace"
    )
    assert (await finalpos_client.customers.retrieve(customer.id)).email == "ada@example.com"

@pytest.mark.finalpos_sandbox(faults="rate-limit=50,burst=2,retry-after=0")
async def test_my_code_survives_a_rate_limit(finalpos_client):
    for _ in range(5):
        await finalpos_client.customers.create(
            email="ada@example.com", first_name="Ada", last_name="Lovelace"
        )
    assert len([c async for c in finalpos_client.customers.list()]) == 5

def test_sync_code(finalpos_sync_client):
    assert list(finalpos_sync_client.customers.list()) == []
"""


def test_the_documented_example_passes_in_a_users_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_users_code=README_EXAMPLE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=3)
