"""`middleware=[...]`: async callables around every HTTP attempt, inside the retry loop.

Through the public surface: the `scripted` fixture plays answers through `MockTransport` (what
it records in `seen` is what the transport was handed), `scripted_server` where the header has
to cross a real socket. The rule for what a middleware raises: a `TransportError` is handled as
the transport's own (classified by its kind, retried or not as the policy says), anything else
propagates unchanged and is never retried.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import pytest
from conftest import RESET, ScriptedServer, ScriptedTransport, ok, status

from finalpos_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncFinalPOS,
    CallNext,
    Customer,
    FailureKind,
    HeaderSecret,
    InternalServerError,
    Middleware,
    MockTransport,
    Request,
    TransportError,
    TransportResponse,
)
from finalpos_async.bulk import ItemStatus

PATH = "/v1/api/customers"


class Counter:
    """A middleware that counts the attempts it sees and the statuses they end with."""

    def __init__(self) -> None:
        self.attempts: list[int] = []
        self.statuses: list[int] = []

    async def __call__(self, request: Request, call_next: CallNext) -> TransportResponse:
        self.attempts.append(call_next.attempt)
        response = await call_next(request)
        self.statuses.append(response.status)
        return response


async def attempt_header(request: Request, call_next: CallNext) -> TransportResponse:
    return await call_next(request.with_headers({"X-Attempt": str(call_next.attempt)}))


# ------------------------------------------------------------------- once per attempt


async def test_a_middleware_counts_three_attempts_for_503_503_200(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(status(503), status(503), ok())
    counter = Counter()
    async with scripted.client(middleware=[counter]) as client:
        raw = await client.send("GET", PATH)
    assert counter.attempts == [1, 2, 3]
    assert counter.statuses == [503, 503, 200]
    assert raw.attempts == 3
    assert scripted.attempts == 3


async def test_a_per_attempt_header_reaches_the_server_on_every_attempt(
    scripted_server: ScriptedServer,
) -> None:
    # A real socket: the header goes out next to the session's default headers, once each.
    scripted_server.play(status(503), status(502), ok())
    async with scripted_server.client(middleware=[attempt_header]) as client:
        assert await client.request("GET", PATH) == {"ok": True}
    assert [seen.headers.get("X-Attempt") for seen in scripted_server.seen] == ["1", "2", "3"]
    assert all(seen.headers.get("x-api-key") == "sk_test_scripted" for seen in scripted_server.seen)


async def test_a_timing_middleware_sees_each_attempt_and_its_status(
    scripted: ScriptedTransport,
) -> None:
    timings: list[tuple[int, int, float]] = []

    async def timing(request: Request, call_next: CallNext) -> TransportResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await call_next(request)
        timings.append((call_next.attempt, response.status, loop.time() - started))
        return response

    scripted.play(status(500), ok())
    async with scripted.client(middleware=[timing]) as client:
        await client.send("GET", PATH)
    assert [(attempt, code) for attempt, code, _ in timings] == [(1, 500), (2, 200)]
    assert all(0 <= elapsed < 60 for _, _, elapsed in timings)


async def test_two_middleware_run_in_list_order_the_first_outermost(
    scripted: ScriptedTransport,
) -> None:
    events: list[str] = []

    def tracer(name: str) -> Middleware:
        async def trace(request: Request, call_next: CallNext) -> TransportResponse:
            events.append(f"{name} in (sees X-Trace={request.headers.get('X-Trace')})")
            response = await call_next(request.with_headers({"X-Trace": name}))
            events.append(f"{name} out")
            return response

        return trace

    scripted.play(ok())
    async with scripted.client(middleware=[tracer("a"), tracer("b")]) as client:
        await client.send("GET", PATH)
    assert events == ["a in (sees X-Trace=None)", "b in (sees X-Trace=a)", "b out", "a out"]
    assert scripted.seen[0].headers["X-Trace"] == "b"  # the innermost's change goes out


async def test_a_middleware_can_answer_or_replace_the_response(
    scripted: ScriptedTransport,
) -> None:
    async def cached(request: Request, call_next: CallNext) -> TransportResponse:
        if request.url.endswith("/cached"):
            return TransportResponse(200, json={"from": "cache"})
        return await call_next(request)

    async def flaky_first(request: Request, call_next: CallNext) -> TransportResponse:
        response = await call_next(request)
        return TransportResponse(503) if call_next.attempt == 1 else response

    scripted.play(ok({"from": "server"}))
    async with scripted.client(middleware=[cached, flaky_first]) as client:
        assert await client.request("GET", "/cached") == {"from": "cache"}
        assert scripted.attempts == 0  # answered without the transport
        assert await client.request("GET", PATH) == {"from": "server"}
    assert scripted.attempts == 2  # the 503 made up by the middleware was retried


# -------------------------------------------------------------------- what it raises


async def test_a_transport_error_from_middleware_is_retried_as_the_transports_own(
    scripted: ScriptedTransport,
) -> None:
    async def drop_first(request: Request, call_next: CallNext) -> TransportResponse:
        if call_next.attempt == 1:
            raise TransportError(FailureKind.DISCONNECTED, "dropped by middleware")
        return await call_next(request)

    scripted.play(ok())
    async with scripted.client(middleware=[drop_first]) as client:
        raw = await client.send("GET", PATH)
        assert raw.attempts == 2
        assert scripted.attempts == 1
        # A POST without a key is not repeated after a lost connection: the same rule.
        with pytest.raises(APIConnectionError, match="dropped by middleware") as caught:
            await client.send("POST", PATH, json={"a": 1})
    assert caught.value.attempts == 1
    assert caught.value.maybe_processed
    assert scripted.attempts == 1


async def test_any_other_exception_from_middleware_propagates_unchanged_and_is_not_retried(
    scripted: ScriptedTransport,
) -> None:
    boom = ValueError("middleware says no")
    seen: list[int] = []

    async def refuse_after(request: Request, call_next: CallNext) -> TransportResponse:
        seen.append(call_next.attempt)
        await call_next(request)
        raise boom

    scripted.play(status(503), ok())
    async with scripted.client(middleware=[refuse_after]) as client:
        with pytest.raises(ValueError, match="middleware says no") as caught:
            await client.send("GET", PATH)
        assert caught.value is boom
        assert seen == [1]
        assert scripted.attempts == 1
        # The client is still usable: the call left its in-flight set.
        scripted.play(ok())
        async with scripted.client() as plain:
            assert await plain.request("GET", PATH) == {"ok": True}


async def test_an_error_status_after_middleware_is_the_usual_typed_error(
    scripted: ScriptedTransport,
) -> None:
    counter = Counter()
    scripted.play(status(500))
    async with scripted.client(middleware=[counter], max_retries=2) as client:
        with pytest.raises(InternalServerError) as caught:
            await client.send("GET", PATH)
    assert caught.value.attempts == 3
    assert counter.attempts == [1, 2, 3]


async def test_time_a_middleware_spends_counts_against_the_deadline(
    scripted: ScriptedTransport,
) -> None:
    async def slow(request: Request, call_next: CallNext) -> TransportResponse:
        await asyncio.sleep(0.2)  # the slow middleware under test, longer than the deadline
        return await call_next(request)

    async with scripted.client(middleware=[slow], deadline=0.05) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.send("POST", PATH, json={"a": 1})
    assert caught.value.kind == "deadline"
    assert not caught.value.maybe_processed  # nothing was sent
    assert scripted.attempts == 0


# ------------------------------------------------------------------------- bad input


async def _passthrough(request: Request, call_next: CallNext) -> TransportResponse:
    return await call_next(request)


def _plain(request: Request, call_next: CallNext) -> TransportResponse:
    return TransportResponse(200)


@pytest.mark.parametrize(
    ("middleware", "message"),
    [
        (_passthrough, r"must be a list .*middleware=\[mw\]"),
        ([_plain], r"middleware\[0\] \(_plain\) is a plain function; .*async def"),
        ([_passthrough, "log"], r"middleware\[1\] must be an async callable .*got str"),
    ],
)
def test_bad_middleware_is_refused_at_construction(middleware: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        AsyncFinalPOS(
            "sk_test",
            transport=MockTransport(lambda r: TransportResponse(200)),
            middleware=middleware,
        )


async def test_a_middleware_returning_the_wrong_thing_is_named(
    scripted: ScriptedTransport,
) -> None:
    async def returns_dict(request: Request, call_next: CallNext) -> Any:
        return {"status": 200}

    async def passes_a_dict(request: Request, call_next: CallNext) -> TransportResponse:
        return await call_next({"url": request.url})  # type: ignore[arg-type]  # on purpose

    async with scripted.client(middleware=[returns_dict]) as client:
        with pytest.raises(TypeError, match=r"middleware\[0\] .*returns_dict.* returned a dict"):
            await client.send("GET", PATH)
    async with scripted.client(middleware=[passes_a_dict]) as client:
        with pytest.raises(TypeError, match=r"passes_a_dict.* called call_next with a dict"):
            await client.send("GET", PATH)


def test_with_headers_checks_replaces_by_name_and_keeps_credentials_masked() -> None:
    request = Request(
        method="GET",
        url="https://api.invalid/v1/api/customers",
        query=(),
        content=None,
        headers={"x-api-key": HeaderSecret("sk_live_0123456789abcdef"), "Accept": "a/b"},
        timeout=None,
        deadline=None,
        max_retries=0,
        idempotency_key=None,
        unsafe_ok=False,
        strict=False,
    )
    changed = request.with_headers({"accept": "application/json", "Authorization": "Bearer t0k3n"})
    assert dict(changed.headers) == {
        "x-api-key": "sk_live_0123456789abcdef",
        "accept": "application/json",
        "Authorization": "Bearer t0k3n",
    }
    assert isinstance(changed.headers["Authorization"], HeaderSecret)
    # Built without attrs' introspection, it equals what attrs.evolve builds, field by field.
    assert changed == attrs.evolve(request, headers=dict(changed.headers))
    assert isinstance(changed.headers, MappingProxyType)
    assert "t0k3n" not in repr(changed)
    assert "0123456789" not in repr(changed)
    assert request.headers["Accept"] == "a/b"  # the original is unchanged
    with pytest.raises(ValueError, match="with_headers must not set 'Content-Length'"):
        request.with_headers({"Content-Length": "0"})


# ---------------------------------------------------- views, bulk runs, no middleware


async def test_with_options_views_inherit_the_middleware_or_replace_them(
    scripted: ScriptedTransport,
) -> None:
    first, second = Counter(), Counter()
    scripted.play(ok())
    async with scripted.client(middleware=[first]) as client:
        view = client.with_options(timeout=5)
        assert view.middleware == client.middleware == (first,)
        await view.send("GET", PATH)
        assert first.attempts == [1]

        replaced = client.with_options(middleware=[attempt_header, second])
        await replaced.send("GET", PATH)
        assert (first.attempts, second.attempts) == ([1], [1])
        assert scripted.seen[-1].headers["X-Attempt"] == "1"
        assert replaced.with_options(deadline=9).middleware == (attempt_header, second)

        none = client.with_options(middleware=[])
        assert none.middleware == ()
        await none.send("GET", PATH)
        assert "X-Attempt" not in scripted.seen[-1].headers
        await client.send("GET", PATH)
    assert (first.attempts, second.attempts) == ([1, 1], [1])
    assert scripted.attempts == 4


async def test_a_bulk_runs_requests_pass_through_the_middleware() -> None:
    answers = iter([TransportResponse(429, headers={"Retry-After": "0"})])

    def handler(request: Request) -> TransportResponse:
        return next(answers, None) or TransportResponse(201, json={"id": "c1", **request.json()})

    counter = Counter()
    transport = MockTransport(handler)
    rows = [{"email": f"p{i}@b.co", "first_name": "P", "last_name": "Q"} for i in range(3)]
    async with AsyncFinalPOS(
        "sk_test", transport=transport, backoff_base=0.001, middleware=[counter, attempt_header]
    ) as client:
        results = [r async for r in client.bulk.run(client.customers.create, rows)]
    assert [r.status for r in results] == [ItemStatus.SUCCEEDED] * 3
    assert all(isinstance(r.value, Customer) for r in results)
    assert len(transport.requests) == 4  # three rows, one of them retried after its 429
    assert sorted(counter.attempts) == [1, 1, 1, 2]
    assert counter.statuses.count(429) == 1
    assert sorted(r.headers["X-Attempt"] for r in transport.requests) == ["1", "1", "1", "2"]


async def test_a_call_repeated_with_a_rotated_key_passes_through_the_middleware_again() -> None:
    keys = iter(["sk_live_rotation_OLD_key_Aa11Bb22", "sk_live_rotation_NEW_key_Cc33Dd44"])

    def handler(request: Request) -> TransportResponse:
        if request.headers["x-api-key"] != "sk_live_rotation_NEW_key_Cc33Dd44":
            return TransportResponse(401, json={"statusCode": 401, "message": "Invalid API key"})
        return TransportResponse(200, json={"ok": True})

    counter = Counter()
    transport = MockTransport(handler)
    async with AsyncFinalPOS(
        lambda: next(keys), transport=transport, middleware=[counter, attempt_header]
    ) as client:
        assert await client.request("GET", PATH) == {"ok": True}
    assert counter.attempts == [1, 2]  # the 401, then its repeat with the new key
    assert counter.statuses == [401, 200]
    assert [r.headers["X-Attempt"] for r in transport.requests] == ["1", "2"]


async def test_without_middleware_the_client_has_none(scripted: ScriptedTransport) -> None:
    scripted.play(ok())
    async with scripted.client() as client:
        assert client.middleware == ()
        assert client.with_options(timeout=1).middleware == ()
        await client.send("GET", PATH)
    assert "X-Attempt" not in scripted.seen[0].headers


async def test_a_middleware_sees_a_lost_connection_raised_through_call_next(
    scripted: ScriptedTransport,
) -> None:
    lost: list[FailureKind] = []

    async def watch(request: Request, call_next: CallNext) -> TransportResponse:
        try:
            return await call_next(request)
        except TransportError as error:
            lost.append(error.kind)
            raise

    scripted.play(RESET, ok())  # the first attempt's connection drops (a TransportError)
    async with scripted.client(middleware=[watch]) as client:
        raw = await client.send("GET", PATH)
    assert lost == [FailureKind.DISCONNECTED]
    assert raw.attempts == 2


# ----------------------------------------------------------------------------- README

README = Path(__file__).resolve().parents[2] / "README.md"


def _middleware_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Middleware.*?(?=^## )", text, re.M | re.S)
    assert match is not None, "README has no Middleware section"
    return match.group(0)


def test_the_readme_middleware_program_runs_as_written() -> None:
    section = _middleware_section()
    blocks = re.findall(r"^```python\n(.*?)^```$", section, re.M | re.S)
    assert len(blocks) == 1
    assert "X-Attempt" in blocks[0]
    assert "class Timing" in blocks[0]
    # Its own asserts check the two attempts' headers and timings (and a 503 backoff: < 0.5 s).
    exec(compile(blocks[0], "README.md (Middleware)", "exec"), {"__name__": "readme_middleware"})


def test_the_readme_states_the_rules_these_tests_hold() -> None:
    words = " ".join(_middleware_section().split())
    assert "Each runs once per HTTP attempt, inside the retry loop" in words
    assert "any other exception reaches the caller unchanged, is not wrapped and is never" in words
    assert "a `with_options` view runs its client's middleware" in words
    assert "`with_options(middleware=[...])` replaces them" in words
    assert "runs them on its private event-loop thread" in words
    assert "A plain `def` is refused with a `TypeError`" in words
