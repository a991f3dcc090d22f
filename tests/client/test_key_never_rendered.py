"""The API key (and a Redis URL's password) can never be rendered (issue 22, parts 1 and 7).

Every kind of error the client raises (status, timeout, connection, validation, malformed
answer, bulk, limiter) is rendered the ways an application or an error tracker does: a
traceback with every frame's locals (`traceback.TracebackException(capture_locals=True)` and
rich's `Traceback(show_locals=True)`), `repr`, `str`, `pickle`, its public attributes and the
SDK's own logger at DEBUG. The key appears in none of them; its mask (`sk_…3f9a`) shows where it
was held. Hostile servers on 127.0.0.1 echo the key back in their body and headers, or answer
with malformed HTTP that quotes it; the `MockTransport` seam stands in where no socket is needed.

It also checks that `Request` is a value: frozen, built by keyword, headers a read-only view that
no handler can change for the calls after it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import pickle
import re
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import attrs
import pytest
from aiohttp import web
from conftest import serve_locally
from redis_server import RedisServer, free_port
from rich.console import Console
from rich.traceback import Traceback

from finalpos_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncFinalPOS,
    AuthenticationError,
    HeaderSecret,
    InternalServerError,
    MockTransport,
    RateLimiter,
    RateLimitError,
    RateLimiterUnavailable,
    RedisRateLimiter,
    Request,
    ResponseValidationError,
    Secret,
    TransportResponse,
)
from finalpos_async.bulk import ItemStatus, JournalMismatchError
from finalpos_sync import FinalPOS

KEY = "sk_live_Zq8RENDERme_7Hx2Kp4Vw9Tn3f9a"
MASK = "sk_…3f9a"  # what shows instead: the first 3 and the last 4 characters
OTHER_KEY = "sk_live_another_key_Bq3Wd8Lm2Rx7"
REDIS_PASSWORD = "rEd1s_Pa55w0rd_Xy7Kq2Zm9"
README = Path(__file__).resolve().parents[2] / "README.md"


def leaks(text: str) -> list[str]:
    """What of the secrets shows in `text` (rich may wrap a long line: whitespace is ignored)."""
    flat = re.sub(r"[\s│]", "", text)
    found = [s for s in (KEY, KEY[8:24], REDIS_PASSWORD, REDIS_PASSWORD[3:15]) if s in flat]
    return found


def renderings(error: BaseException, caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """`error` rendered every way an application, a log or an error tracker renders one."""
    out = {
        "traceback.TracebackException(capture_locals=True)": "".join(
            traceback.TracebackException.from_exception(error, capture_locals=True).format()
        )
    }
    buffer = io.StringIO()
    console = Console(file=buffer, width=400, color_system=None)
    console.print(
        Traceback.from_exception(type(error), error, error.__traceback__, show_locals=True)
    )
    out["rich Traceback(show_locals=True)"] = buffer.getvalue()
    out["repr"] = f"{error!r} {error.args!r}"
    out["str"] = str(error)
    data = pickle.dumps(error)
    out["pickle"] = data.decode("latin-1") + repr(vars(pickle.loads(data)))
    out["attributes"] = repr({name: getattr(error, name) for name in vars(error)})
    response = getattr(error, "response", None)
    if response is not None:
        out["response"] = f"{response.text} {dict(response.headers)} {response.content!r}"
    caplog.clear()
    logging.getLogger("finalpos").debug("the call failed", exc_info=error)
    out["logging at DEBUG"] = caplog.text
    return out


def assert_never_rendered(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    """The key shows nowhere; where a frame held it, its mask shows instead."""
    for how, text in renderings(error, caplog).items():
        assert not leaks(text), f"{type(error).__name__}: {leaks(text)} in its {how}:\n{text}"
    cause: BaseException | None = error
    while cause is not None:
        # No dependency's exception is chained: aiohttp's carries the request's headers.
        assert not type(cause).__module__.startswith(("aiohttp", "redis")), repr(cause)
        # The chain as every renderer walks it (a suppressed context is not shown).
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)


@pytest.fixture(autouse=True)
def sdk_debug_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The SDK's logger at DEBUG for the whole test (its own attempt and retry lines too)."""
    caplog.set_level(logging.DEBUG, logger="finalpos")
    yield caplog
    assert not leaks(caplog.text)


# ------------------------------------------------------------------ hostile servers


def echo_headers(request: web.Request) -> dict[str, str]:
    """The credentials the client sent, echoed back in response headers."""
    key = request.headers.get("x-api-key", "")
    auth = request.headers.get("Authorization", "")
    return {
        "X-Echo-Key": key,
        "X-Echo-Authorization": auth,
        "X-Request-Id": f"req-{key}",
        "WWW-Authenticate": f'Bearer error="invalid_token", key="{key}"',
    }


@attrs.define
class EchoServer:
    """A server that echoes the client's credentials back in every answer's body and headers.

    The last path segment picks the answer: `401`, `429` (Retry-After past the cap), `500`
    (text, and the key as a Retry-After), `503` (Retry-After: 1), `notjson` (a 200 that is not
    JSON), `hang`, `reset`; any other path answers a 200 whose JSON has the key where a model
    needs a string id.
    """

    url: str = ""
    keys: list[str] = attrs.field(factory=list, repr=False)  # what arrived: the key itself
    release: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("x-api-key", "")
        self.keys.append(key)
        auth = request.headers.get("Authorization", "")
        headers = echo_headers(request)
        body = {"statusCode": 401, "message": f"Invalid API key {key}", "error": f"bad {auth}"}
        kind = request.path.rsplit("/", 1)[-1]
        if kind in ("401", "429", "503"):
            body["statusCode"] = int(kind)
            if kind != "401":
                headers["Retry-After"] = "999" if kind == "429" else "1"
            return web.json_response(body, status=int(kind), headers=headers)
        if kind == "500":  # and a Retry-After the client ignores, and logs at DEBUG
            headers["Retry-After"] = f"later, {key}"
            return web.Response(status=500, text=f"upstream: x-api-key={key}", headers=headers)
        if kind == "notjson":
            return web.Response(text=f"<html>hello {key}</html>", headers=headers)
        if kind == "hang":
            await self.release.wait()
        if kind == "reset":
            assert request.transport is not None
            request.transport.abort()
        return web.json_response({"id": 5, "email": key, "note": auth}, headers=headers)


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    async with serve_locally(
        server.handle, "/{tail:.*}", server.release, shutdown_timeout=0.2
    ) as url:
        server.url = url
        yield server


# Malformed answers that quote what the client sent (aiohttp's parser errors quote the bytes).
MALFORMED: dict[str, Callable[[bytes], bytes]] = {
    "nul-in-header": lambda key: b"HTTP/1.1 200 OK\r\nX-Echo: " + key + b"\x00\r\n\r\n",
    "bad-length": lambda key: b"HTTP/1.1 200 OK\r\nContent-Length: x" + key + b"\r\n\r\n",
    "bad-chunk": lambda key: (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + key + b"\r\n"
    ),
    "bad-status": lambda key: b"HTTP/1.1 2OO " + key + b"\r\n\r\n",
    "not-http": lambda key: b"KEY " + key + b"\r\n\r\n",
}


@pytest.fixture
async def malformed_server() -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 answering each request with `MALFORMED[last path segment]`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        sent = [line.split(b":", 1)[1].strip() for line in lines if b"x-api-key:" in line.lower()]
        kind = lines[0].split(b" ")[1].decode().rsplit("/", 1)[-1]
        writer.write(MALFORMED[kind](sent[0] if sent else b""))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


# ------------------------------------------------------------------ the error kinds


async def test_status_timeout_connection_and_validation_errors_never_render_the_key(
    echo_server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []
    async with AsyncFinalPOS(
        KEY,
        base_url=echo_server.url,
        default_headers={"Authorization": f"Bearer {KEY}"},  # echoed back as well
        timeout=0.3,
        deadline=5.0,
        max_retries=0,
    ) as client:
        for path, expected in [
            ("/x/401", AuthenticationError),
            ("/x/429", RateLimitError),
            ("/x/500", InternalServerError),
            ("/x/notjson", ResponseValidationError),
            ("/x/hang", APITimeoutError),
            ("/x/reset", APIConnectionError),
        ]:
            with pytest.raises(expected) as info:
                await client.request("GET", path)
            errors.append(info.value)
        with pytest.raises(ResponseValidationError) as model:
            await client.customers.retrieve("echo")  # the key where the model wants a str
        errors.append(model.value)
        with pytest.raises(APITimeoutError) as deadline:  # Retry-After crosses the deadline
            await client.with_options(deadline=0.5, max_retries=2).request("POST", "/x/503")
        assert deadline.value.kind == "deadline"
        assert deadline.value.last_error is not None
        errors.append(deadline.value)
    async with AsyncFinalPOS(KEY, base_url=f"http://127.0.0.1:{free_port()}") as refused:
        with pytest.raises(APIConnectionError) as info:
            await refused.request("GET", "/x")
        errors.append(info.value)
    # The Retry-After the client ignored was logged at DEBUG, masked.
    assert f"Retry-After header 'later, {MASK}'" in caplog.text
    # The key did go on the wire, as itself (a mask there would be a 401 from the real API).
    assert echo_server.keys
    assert set(echo_server.keys) == {KEY}
    echoed = errors[0]
    assert isinstance(echoed, AuthenticationError)
    assert echoed.message == f"Invalid API key {MASK}"
    assert echoed.headers["X-Echo-Key"] == MASK
    assert echoed.headers["X-Echo-Authorization"] == "Bea…3f9a"  # the header's own mask
    assert echoed.request_id == f"req-{MASK}"
    for error in errors:
        assert_never_rendered(error, caplog)
    # The frames' locals were rendered, with the mask where the key was held.
    rendered = renderings(errors[0], caplog)
    for how in (
        "traceback.TracebackException(capture_locals=True)",
        "rich Traceback(show_locals=True)",
    ):
        assert "request = " in rendered[how]
        assert MASK in rendered[how]


@pytest.mark.parametrize("kind", sorted(MALFORMED))
async def test_a_malformed_answer_quoting_the_key_never_renders_it(
    malformed_server: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncFinalPOS(KEY, base_url=malformed_server, max_retries=0) as client:
        # (aiohttp's wording differs between its C and pure-Python parsers.)
        with pytest.raises(APIConnectionError, match=r"malformed HTTP response|payload") as info:
            await client.request("GET", f"/x/{kind}")
    assert info.value.__cause__ is not None  # chained to our TransportError, not to aiohttp's
    assert_never_rendered(info.value, caplog)


def test_bad_arguments_never_render_the_key(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[BaseException] = []
    with pytest.raises(ValueError, match="timeout") as info:
        AsyncFinalPOS(KEY, timeout=-1)
    errors.append(info.value)
    with pytest.raises(ValueError, match="spaces or line breaks") as info:
        AsyncFinalPOS(KEY + "\n")
    errors.append(info.value)
    with pytest.raises(ValueError, match="deadline") as info:
        FinalPOS(KEY, deadline=0)
    errors.append(info.value)
    client = AsyncFinalPOS(OTHER_KEY, base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="timeout") as info:
        client.with_options(api_key=KEY, timeout=-1)
    errors.append(info.value)
    with pytest.raises(ValueError, match="rate") as info:
        RedisRateLimiter(f"redis://:{REDIS_PASSWORD}@127.0.0.1:9/0", rate=-1)
    errors.append(info.value)
    for error in errors:
        assert_never_rendered(error, caplog)
    assert MASK in renderings(errors[0], caplog)["rich Traceback(show_locals=True)"]


def echo_401(request: Request) -> TransportResponse:
    """A MockTransport handler for a server that echoes the key in a 401."""
    return TransportResponse(
        401,
        headers={"X-Echo-Key": str(request.headers["x-api-key"])},
        json={"statusCode": 401, "message": f"bad key {request.headers['x-api-key']!s}"},
    )


async def test_bulk_errors_never_render_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        {"email": f"c{i}@example.com", "first_name": "Ada", "last_name": "Lovelace"}
        for i in range(3)
    ]
    async with AsyncFinalPOS(KEY, transport=MockTransport(echo_401)) as client:
        job = client.bulk.run(client.customers.create, rows, concurrency=1)
        results = [result async for result in job]
    failed = [r for r in results if r.status is ItemStatus.FAILED]
    assert failed
    assert all(isinstance(r.error, AuthenticationError) for r in failed)
    for result in failed:
        assert result.error is not None
        assert_never_rendered(result.error, caplog)
        assert not leaks(f"{result!r} {result.reason}")
    assert not leaks(f"{job.report!r} {job.report}")

    def created(request: Request) -> TransportResponse:
        return TransportResponse(201, json={"id": "c1", **(request.json() or {})})

    journal = tmp_path / "customers.journal"
    async with AsyncFinalPOS(OTHER_KEY, transport=MockTransport(created)) as client:
        await client.bulk.run(client.customers.create, rows, journal=journal, key="email")
    async with AsyncFinalPOS(KEY, transport=MockTransport(created)) as client:
        with pytest.raises(JournalMismatchError, match=r"credentials|API key") as info:
            await client.bulk.run(client.customers.create, rows, journal=journal, key="email")
    assert_never_rendered(info.value, caplog)


async def test_limiter_errors_never_render_the_key_or_the_redis_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def answer(request: Request) -> TransportResponse:
        return TransportResponse(200, json={})

    nowhere = RedisRateLimiter(
        f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0", rate=10, redis_timeout=0.5
    )
    assert not leaks(repr(nowhere))
    async with AsyncFinalPOS(KEY, transport=MockTransport(answer), rate_limit=nowhere) as client:
        with pytest.raises(RateLimiterUnavailable) as down:
            await client.request("GET", "/x")
    async with AsyncFinalPOS(
        KEY, transport=MockTransport(answer), rate_limit=RateLimiter(1, burst=1), deadline=0.2
    ) as client:
        await client.request("GET", "/x")
        with pytest.raises(APITimeoutError, match="rate-limit token") as waited:
            await client.request("GET", "/x")
    for error in (down.value, waited.value):
        assert_never_rendered(error, caplog)


async def test_a_wrong_redis_password_is_never_rendered(
    redis_servers: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_servers(password="the-right-one")
    limiter = RedisRateLimiter(
        f"redis://:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0", rate=10, redis_timeout=2.0
    )
    transport = MockTransport(lambda request: TransportResponse(200, json={}))
    async with AsyncFinalPOS(KEY, transport=transport, rate_limit=limiter) as client:
        with pytest.raises(RateLimiterUnavailable) as info:
            await client.request("GET", "/x")
    await limiter.aclose()
    assert_never_rendered(info.value, caplog)


def test_the_sync_client_never_renders_the_key(caplog: pytest.LogCaptureFixture) -> None:
    with (
        FinalPOS(KEY, transport=MockTransport(echo_401)) as client,
        pytest.raises(AuthenticationError) as info,
    ):
        client.request("GET", "/x")
    assert info.value.message == f"bad key {MASK}"
    assert_never_rendered(info.value, caplog)


# ------------------------------------------------------------------ the values themselves


def test_a_secret_renders_masked_but_is_the_key_for_everything_else() -> None:
    secret = Secret(KEY)
    assert repr(secret) == repr(MASK)
    assert str(secret) == MASK
    assert f"{secret}" == MASK
    assert f"{secret}" == MASK
    assert secret == KEY
    assert hash(secret) == hash(KEY)
    assert secret.reveal() == KEY
    assert secret.encode() == KEY.encode()
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    sent = HeaderSecret(secret)  # what goes into the headers: the key for an HTTP library
    assert repr(sent) == repr(MASK)
    assert str(sent) == KEY
    assert repr(Secret("sk_test")) == "'…'"  # a short secret shows none of its characters
    buffer = io.StringIO()
    Console(file=buffer, width=400, color_system=None).print({"long": Secret(KEY * 4)})
    assert not leaks(buffer.getvalue())  # rich shows a long str as a slice: not this one


# ------------------------------------------------------------------ Request is a value


async def test_a_handler_cannot_change_the_request_for_the_calls_after_it() -> None:
    refused: list[str] = []

    def handler(request: Request) -> TransportResponse:
        if not refused:
            with pytest.raises(TypeError):
                request.headers["X-Added"] = "by the first call"  # type: ignore[index]  # read-only on purpose
            refused.append("headers")
            with pytest.raises(TypeError):
                del request.headers["Accept"]  # type: ignore[attr-defined]  # read-only on purpose
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                request.method = "DELETE"  # type: ignore[misc]  # frozen on purpose
            refused.append("fields")
        return TransportResponse(200, json={"id": "c1"})

    transport = MockTransport(handler)
    async with AsyncFinalPOS(KEY, transport=transport) as client:
        await client.request("GET", "/v1/api/customers")
        await client.request("GET", "/v1/api/customers")
        await client.request("POST", "/v1/api/customer", json={"email": "a@b.c"})
    assert refused == ["headers", "fields"]
    first, second, post = transport.requests
    for request in (first, second, post):
        assert "X-Added" not in request.headers
        assert "Accept" in request.headers
        assert request.method in ("GET", "POST")
        assert not leaks(repr(request))
        assert MASK in repr(request)
    # A plain GET sends the client's read-only view itself: no copy per call.
    assert first.headers is second.headers
    assert post.headers["Content-Type"] == "application/json"


def test_request_is_built_by_keyword_and_has_no_dead_fields() -> None:
    fields = {
        "method": "GET",
        "url": "https://api.finalpos.com/v1/api/customers",
        "query": (("limit", "10"),),
        "content": None,
        "headers": {"x-api-key": HeaderSecret(KEY)},
        "timeout": 60.0,
        "deadline": 120.0,
        "max_retries": 3,
        "idempotency_key": None,
        "unsafe_ok": False,
        "strict": False,
    }
    assert [field.name for field in attrs.fields(Request)] == list(fields)
    request = Request(**fields)
    assert request.params == {"limit": "10"}
    with pytest.raises(TypeError):
        request.headers["x-api-key"] = "changed"  # type: ignore[index]  # a plain dict was made read-only
    with pytest.raises(TypeError):
        Request(*fields.values())  # type: ignore[misc]  # positional on purpose
    assert attrs.evolve(request, method="HEAD").method == "HEAD"
    assert request.method == "GET"
    assert not leaks(repr(request))


# ------------------------------------------------------------------ the README says so


def test_the_readme_says_where_the_key_can_never_appear() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    for phrase in (
        "The API key can never appear in an error's message, `str`, `repr`, `args`, text, body,"
        " headers or pickled form",
        "in a traceback rendered with its frames' locals",
        "in a log line",
        "in the `repr` of the client, a `Request` or its headers",
        "The Redis URL's password is held the same way",
        "A `Request` is an immutable value",
    ):
        assert phrase in text, phrase
