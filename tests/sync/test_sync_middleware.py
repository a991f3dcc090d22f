"""`finalpos_sync.FinalPOS(middleware=[...])`: the same async callables, on the private loop."""

from __future__ import annotations

import threading

import pytest

from finalpos_sync import (
    CallNext,
    FinalPOS,
    MockTransport,
    Request,
    TransportResponse,
)


def test_the_sync_client_runs_async_middleware_on_its_loop_thread_once_per_attempt() -> None:
    answers = [TransportResponse(503), TransportResponse(503)]

    def handler(request: Request) -> TransportResponse:
        return answers.pop(0) if answers else TransportResponse(200, json={"ok": True})

    seen: list[tuple[int, str, int]] = []

    async def record(request: Request, call_next: CallNext) -> TransportResponse:
        request = request.with_headers({"X-Attempt": str(call_next.attempt)})
        response = await call_next(request)
        seen.append((call_next.attempt, threading.current_thread().name, response.status))
        return response

    transport = MockTransport(handler)
    with FinalPOS(
        "sk_test", transport=transport, backoff_base=0.001, middleware=[record]
    ) as client:
        assert client.request("GET", "/v1/api/customers") == {"ok": True}
        assert client.middleware == (record,)
        assert client.with_options(timeout=5).middleware == (record,)
        assert client.with_options(middleware=[]).request("GET", "/v1/api/customers")
    assert [(attempt, code) for attempt, _, code in seen] == [(1, 503), (2, 503), (3, 200)]
    assert {thread for _, thread, _ in seen} != {threading.current_thread().name}
    assert [r.headers.get("X-Attempt") for r in transport.requests] == ["1", "2", "3", None]


def test_a_plain_function_is_refused_by_the_sync_client_too() -> None:
    def plain(request: Request, call_next: CallNext) -> TransportResponse:
        return TransportResponse(200)

    with pytest.raises(TypeError, match=r"middleware\[0\] \(.*plain\) is a plain function"):
        FinalPOS(
            "sk_test", transport=MockTransport(lambda r: TransportResponse(200)), middleware=[plain]
        )  # type: ignore[list-item]  # a sync callable, on purpose
