"""`MockTransport`, the `transport=` seam, and the one private aiohttp touch (`_compat.py`).

The `_compat` test keeps a real server on 127.0.0.1: a dropped keep-alive connection is what
aiohttp would silently repeat a request over.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from conftest import RESET, ScriptedServer, ok

from finalpos_async import (
    APITimeoutError,
    AsyncFinalPOS,
    Customer,
    MockTransport,
    NotFoundError,
    Request,
    TransportResponse,
)

KEY = "sk_test_mock"


def client_for(transport: MockTransport, **kwargs: Any) -> AsyncFinalPOS:
    settings: dict[str, Any] = {"backoff_base": 0.001, "backoff_cap": 0.002}
    settings.update(kwargs)
    return AsyncFinalPOS(KEY, transport=transport, **settings)


async def test_a_typed_call_goes_through_the_handler() -> None:
    def handler(request: Request) -> TransportResponse:
        assert request.method == "GET"
        assert request.url == "https://api.finalpos.com/v1/api/customer/c1"
        assert request.headers["x-api-key"] == KEY
        assert request.content is None
        return TransportResponse(200, json={"id": "c1", "name": "Ada"}, headers={"X-Id": "r1"})

    transport = MockTransport(handler)
    async with client_for(transport) as client:
        customer = await client.customers.retrieve("c1")
        assert isinstance(customer, Customer)
        raw = await client.send("GET", "/v1/api/customer/c1")
        assert raw.headers["x-id"] == "r1"  # case-insensitive
    assert len(transport.requests) == 2
    assert transport.closed  # the client's close() closed it


async def test_status_errors_and_query_reach_the_caller() -> None:
    def handler(request: Request) -> TransportResponse:
        assert request.params == {"limit": "5", "active": "true"}
        return TransportResponse(404, json={"statusCode": 404, "message": "no such thing"})

    async with client_for(MockTransport(handler)) as client:
        with pytest.raises(NotFoundError, match="no such thing"):
            await client.request("GET", "/v1/api/customers", params={"limit": 5, "active": True})


async def test_a_slow_async_handler_is_a_read_timeout() -> None:
    async def handler(request: Request) -> TransportResponse:
        await asyncio.sleep(5)
        return TransportResponse(200)

    async with client_for(MockTransport(handler), timeout=0.05, max_retries=1) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.request("GET", "/v1/api/customers")
    assert info.value.kind == "read"
    assert info.value.attempts == 2


def test_transport_excludes_session_and_sandbox_and_must_be_a_transport() -> None:
    transport = MockTransport(lambda request: TransportResponse(200))
    with pytest.raises(ValueError, match="transport and sandbox"):
        AsyncFinalPOS(transport=transport, sandbox=True)
    with pytest.raises(TypeError, match="Transport"):
        AsyncFinalPOS(KEY, transport=object())  # type: ignore[arg-type]  # the point of the test


async def test_transport_and_session_exclude_each_other() -> None:
    transport = MockTransport(lambda request: TransportResponse(200))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="transport and session"):
            AsyncFinalPOS(KEY, transport=transport, session=session)


async def test_connection_retry_is_off(scripted_server: ScriptedServer) -> None:
    # `_compat.disable_connection_retry`: when a reused keep-alive connection drops, aiohttp
    # would re-send a GET once by itself; with it off, our retry loop counts that attempt.
    scripted_server.play(ok(), RESET, ok())
    async with scripted_server.client() as client:
        first = await client.send("GET", "/v1/api/customers")
        second = await client.send("GET", "/v1/api/customers")
    assert first.attempts == 1
    assert scripted_server.attempts == 3
    assert second.attempts == 2  # aiohttp's own silent repeat would leave this at 1
