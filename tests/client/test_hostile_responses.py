"""Whatever a server sends back, only a `FinalPOSError` escapes, and within the call's deadline.

A real aiohttp server on 127.0.0.1 serves what hypothesis draws: truncated JSON, random bytes,
HTML with status 200, a wrong `Content-Type`, an array where an object belongs, fields of the
wrong type, bodies past the client's `max_response_bytes`, gzip bombs, broken gzip, a body
shorter than its `Content-Length`, garbage `Retry-After`, and a server that stalls forever
after the headers (or in the middle of the body). Each draw goes through the escape hatch
(`client.request`), the raw path (`client.send(...).json()`) and a typed resource method
(`client.customers.retrieve`, `client.customers.list`), so the model parsing is fuzzed too.
The socket stays because the aiohttp transport's reading (framing, decompression, size limits,
stalls mid-body) is under test along with the client.

Example counts are bounded (the file runs in well under 40 s); timeouts are tenths of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
from aiohttp import web
from conftest import aiohttp_transport, checked_out, serve_locally
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finalpos_async import AsyncFinalPOS, FinalPOSError
from finalpos_async._constants import MAX_RESPONSE_BYTES
from finalpos_async._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ResponseValidationError,
)

LIMIT = 64 * 1024  # the fuzzed client's max_response_bytes
READ_TIMEOUT = 0.25
DEADLINE = 1.0
# Scheduling noise on a shared 2-core machine; the deadline itself is what is asserted.
SLACK = 0.75
EXAMPLES = int(os.environ.get("FINALPOS_FUZZ_EXAMPLES", "150"))


@attrs.frozen
class Reply:
    """One drawn answer: what the hostile server writes for every request until the next draw.

    `mode` is `normal` (status, headers, body), `stall_headers` (headers, then nothing ever),
    `stall_body` (headers and half the body, then nothing), `short` (Content-Length larger than
    the body, then the connection closes), `chunked` (no Content-Length, the body in 1 KiB
    chunks), `trickle` (a byte at a time, forever, each inside the read timeout) or `reset` (the
    connection is dropped at once).
    """

    status: int = 200
    body: bytes = b"{}"
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    mode: str = "normal"
    label: str = ""


@attrs.define
class HostileServer:
    """Serves `reply` for every request; stalled handlers are let go at teardown."""

    url: str = ""
    reply: Reply = attrs.field(factory=Reply)
    hits: int = 0
    release: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.hits += 1
        reply = self.reply
        if reply.mode == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=599)
        headers = dict(reply.headers)
        if reply.content_type is not None:
            headers["Content-Type"] = reply.content_type
        if reply.mode == "normal":
            return web.Response(status=reply.status, body=reply.body, headers=headers)
        response = web.StreamResponse(status=reply.status, headers=headers)
        if reply.mode == "chunked":
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(reply.body), 1024):
                await response.write(reply.body[start : start + 1024])
            await response.write_eof()
            return response
        if reply.mode == "trickle":
            # One byte at a time, each well inside the read timeout: only the deadline ends it.
            response.content_length = len(reply.body) * 1000
            await response.prepare(request)
            with contextlib.suppress(ConnectionError):  # the client gave up: done
                while not self.release.is_set():
                    await response.write(b" ")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.release.wait(), READ_TIMEOUT / 5)
            return response
        if reply.mode == "short":
            response.content_length = len(reply.body) + 100
        elif reply.mode == "stall_body":
            response.content_length = len(reply.body) + 1
        await response.prepare(request)
        if reply.mode == "stall_body":
            await response.write(reply.body[: len(reply.body) // 2])
        elif reply.mode == "short":
            await response.write(reply.body)
            assert request.transport is not None
            request.transport.close()
            return response
        # stall_headers / stall_body: never finish (until the test ends).
        await self.release.wait()
        return response


@pytest.fixture
async def hostile_server() -> AsyncIterator[HostileServer]:
    """A real server on 127.0.0.1 (free port) answering whatever the test sets in `reply`."""
    server = HostileServer()
    async with serve_locally(
        server.handle, "/{tail:.*}", server.release, shutdown_timeout=0.2
    ) as url:
        server.url = url
        yield server


def make_client(server: HostileServer, **kwargs: Any) -> AsyncFinalPOS:
    settings_: dict[str, Any] = {
        "api_key": "sk_test_hostile",
        "base_url": server.url,
        "timeout": READ_TIMEOUT,
        "deadline": DEADLINE,
        "max_retries": 1,
        "backoff_base": 0.001,
        "backoff_cap": 0.002,
        "retry_after_cap": 0.05,
        "max_response_bytes": LIMIT,
    }
    settings_.update(kwargs)
    return AsyncFinalPOS(**settings_)


# ------------------------------------------------------------------------------- strategies

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=10), inner, max_size=4),
    ),
    max_leaves=12,
)
# Keys of the models, so "wrong field types" hit real fields, not only unknown extras.
_customer_keys = st.sampled_from(
    ["_id", "id", "email", "firstName", "lastName", "totalSpent", "createdAt", "updatedAt",
     "tags", "billing", "metadata", "notes", "data", "items", "total", "skip", "limit",
     "balance", "summary", "lineItems", "cartFees", "fromFinal", "fields", "values"]
)  # fmt: skip
_wrong_types = st.dictionaries(_customer_keys, _json, min_size=1, max_size=8)


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


_bodies = st.one_of(
    _json.map(_encode),
    _wrong_types.map(_encode),
    st.lists(_wrong_types, max_size=3).map(_encode),  # an array where an object belongs
    st.builds(lambda v, cut: _encode(v)[: max(1, len(_encode(v)) - cut)],
              _wrong_types, st.integers(1, 5)),  # truncated JSON
    st.binary(max_size=300),  # random bytes
    st.text(max_size=200).map(str.encode),
    st.just(b"<html><head><title>Welcome</title></head><body>not an API</body></html>"),
    st.just(b"\xff\xfe{\"id\": \"\xc3\x28\"}"),  # invalid UTF-8
    st.integers(600, 5000).map(_nested),  # deeper than any decoder's recursion limit
    st.just(b"  "),
    st.just(b'{"id": "' + b"x" * (LIMIT + 10) + b'"}'),  # past max_response_bytes
)  # fmt: skip
_content_types = st.sampled_from(
    [None, "application/json", "text/html; charset=utf-8", "text/plain",
     "application/octet-stream", "application/json; charset=latin-1", "image/png"]
)  # fmt: skip
_statuses = st.sampled_from([200, 200, 200, 201, 204, 301, 302, 400, 401, 404, 409, 418, 422,
                             429, 500, 502, 503, 504, 599])  # fmt: skip
_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
_extra_headers = st.lists(
    st.tuples(
        st.sampled_from(["Retry-After", "retry-after-ms", "X-Request-Id", "Location",
                         "Content-Language"]),
        _header_text,
    ),
    max_size=2,
)  # fmt: skip


def _gzip_bomb(size: int) -> Reply:
    return Reply(
        body=gzip.compress(b"0" * size, compresslevel=9),
        headers=(("Content-Encoding", "gzip"),),
        label=f"gzip bomb {size}",
    )


_special = st.one_of(
    st.sampled_from([2 * 1024 * 1024, 16 * 1024 * 1024]).map(_gzip_bomb),
    st.binary(min_size=1, max_size=50).map(
        lambda junk: Reply(body=junk, headers=(("Content-Encoding", "gzip"),), label="bad gzip")
    ),
    st.builds(
        lambda v: Reply(body=zlib.compress(_encode(v)), headers=(("Content-Encoding", "deflate"),),
                        label="deflate"),
        _wrong_types,
    ),
    st.sampled_from(["stall_headers", "stall_body", "short", "reset", "chunked"]).map(
        lambda mode: Reply(body=b'{"id": "c1", "email": "a@b.c"}', mode=mode, label=mode)
    ),
)  # fmt: skip

replies = st.one_of(
    st.builds(
        Reply,
        status=_statuses,
        body=_bodies,
        content_type=_content_types,
        headers=_extra_headers.map(tuple),
    ),
    _special,
)

Call = Callable[[AsyncFinalPOS], Awaitable[Any]]


async def _via_request(client: AsyncFinalPOS) -> Any:
    return await client.request("GET", "/v1/api/customer/c1")


async def _via_raw_json(client: AsyncFinalPOS) -> Any:
    raw = await client.send("POST", "/v1/api/customer", json={"email": "a@b.c"})
    return raw.json()


async def _via_retrieve(client: AsyncFinalPOS) -> Any:
    return await client.customers.retrieve("c1")


async def _via_list(client: AsyncFinalPOS) -> Any:
    return [c async for c in client.customers.list(max_items=5)]


async def _via_raw_parse(client: AsyncFinalPOS) -> Any:
    raw = await client.customers.with_raw_response.retrieve("c1")
    return raw.parse()


async def _via_orders(client: AsyncFinalPOS) -> Any:
    return await client.orders.list(limit=3)


async def _via_custom_row(client: AsyncFinalPOS) -> Any:
    return await client.custom_tables.retrieve_row("r1")


CALLS: dict[str, Call] = {
    "orders": _via_orders,
    "custom_row": _via_custom_row,
    "request": _via_request,
    "raw_json": _via_raw_json,
    "retrieve": _via_retrieve,
    "list": _via_list,
    "raw_parse": _via_raw_parse,
}


async def _call_and_check(client: AsyncFinalPOS, call: Call, reply: Reply) -> BaseException | None:
    """Make the call; only a FinalPOSError may escape, within the deadline (plus slack)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await call(client)
    except FinalPOSError as exc:
        outcome: BaseException | None = exc
    else:
        outcome = None
    # Anything else propagates and fails the test with hypothesis' minimal example.
    elapsed = loop.time() - started
    assert elapsed <= DEADLINE + SLACK, f"{reply.label or reply.mode}: took {elapsed:.2f} s"
    return outcome


# --------------------------------------------------------------------------------- the fuzz


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=os.environ.get("FINALPOS_FUZZ_RANDOM") is None,
    database=None,
)
@given(reply=replies, call_name=st.sampled_from(sorted(CALLS)))
async def test_only_finalpos_errors_escape_whatever_the_server_sends(
    hostile_server: HostileServer, reply: Reply, call_name: str
) -> None:
    hostile_server.reply = reply
    async with make_client(hostile_server) as client:
        outcome = await _call_and_check(client, CALLS[call_name], reply)
        # Every path released its connection, whatever the body did.
        assert checked_out(client) == 0
    if outcome is None:
        # Success is only possible for a 2xx answer that was read completely.
        assert 200 <= reply.status < 300
        assert reply.mode in {"normal", "chunked"}


# ------------------------------------------------------- not even HTTP: raw bytes on the wire

_RAW_TEMPLATES = [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nBad Header\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 20000 + b"\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(300)) + b"\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"HTTP/1.1 099 X\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
    b"\x00\x00\x12\x04\x00\x00\x00\x00\x00",  # an HTTP/2 frame
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",  # then the connection closes
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",  # a valid answer, for contrast
]
raw_replies = st.one_of(
    st.sampled_from(_RAW_TEMPLATES),
    st.binary(max_size=200),
    st.builds(lambda t, cut: t[: max(1, len(t) - cut)], st.sampled_from(_RAW_TEMPLATES),
              st.integers(1, 40)),  # cut short anywhere
    st.builds(lambda t, junk: t + junk, st.sampled_from(_RAW_TEMPLATES), st.binary(max_size=50)),
)  # fmt: skip


@pytest.fixture
async def raw_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A TCP server on 127.0.0.1 writing `reply[0]` verbatim to every request, then closing."""
    reply: list[bytes] = [b""]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply[0])
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", reply
    finally:
        server.close()
        await server.wait_closed()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=os.environ.get("FINALPOS_FUZZ_RANDOM") is None,
    database=None,
)
@given(data=raw_replies, call_name=st.sampled_from(sorted(CALLS)))
async def test_only_finalpos_errors_escape_whatever_bytes_come_back(
    raw_server: tuple[str, list[bytes]], data: bytes, call_name: str
) -> None:
    url, reply = raw_server
    reply[0] = data
    async with AsyncFinalPOS(
        "sk_test_hostile", base_url=url, timeout=READ_TIMEOUT, deadline=DEADLINE, max_retries=1,
        backoff_base=0, backoff_cap=0, max_response_bytes=LIMIT,
    ) as client:  # fmt: skip
        await _call_and_check(client, CALLS[call_name], Reply(label=repr(data[:40])))
        assert checked_out(client) == 0


# ----------------------------------------------------------------- named hostile scenarios


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compression_bomb_stops_at_the_limit_after_one_attempt(
    hostile_server: HostileServer, encoding: str
) -> None:
    # 64 MiB of zeros compress to ~64 KiB: far under the limit on the wire, far over inflated.
    bomb = _gzip_bomb(64 * 1024 * 1024)
    if encoding == "deflate":
        bomb = Reply(
            body=zlib.compress(b"0" * (64 * 1024 * 1024), 9),
            headers=(("Content-Encoding", "deflate"),),
        )
    assert len(bomb.body) < 1024 * 1024
    hostile_server.reply = bomb
    async with make_client(hostile_server, max_response_bytes=1024 * 1024, deadline=10.0) as c:
        with pytest.raises(APIConnectionError, match="max_response_bytes") as info:
            await c.request("GET", "/v1/api/customers")
        assert not isinstance(info.value, APITimeoutError)
        # Too large is not transient: never retried.
        assert hostile_server.hits == 1
        assert info.value.attempts == 1
        assert checked_out(c) == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_beyond_max_response_bytes_is_refused_without_retry(
    hostile_server: HostileServer, chunked: bool
) -> None:
    body = b'{"blob": "' + b"x" * 5000 + b'"}'
    # Chunked: no Content-Length, so the limit must hold while streaming, not only on a header.
    hostile_server.reply = Reply(body=body, mode="chunked" if chunked else "normal")
    async with make_client(hostile_server, max_response_bytes=4096) as client:
        with pytest.raises(APIConnectionError, match="4096 bytes"):
            await client.request("GET", "/v1/api/customers")
        assert hostile_server.hits == 1
        # Exactly at the limit is fine.
        hostile_server.reply = Reply(body=b'"' + b"y" * 4094 + b'"')
        assert len(await client.request("GET", "/v1/api/customers")) == 4094


def test_max_response_bytes_defaults_to_the_constant_and_is_validated() -> None:
    client = AsyncFinalPOS(api_key="sk_test", base_url="http://127.0.0.1:9")
    assert aiohttp_transport(client).max_response_bytes == MAX_RESPONSE_BYTES
    with pytest.raises(ValueError, match="max_response_bytes"):
        AsyncFinalPOS(api_key="sk_test", base_url="http://127.0.0.1:9", max_response_bytes=0)
    with pytest.raises(TypeError, match="max_response_bytes"):
        AsyncFinalPOS(api_key="sk_test", base_url="http://127.0.0.1:9", max_response_bytes="1")  # type: ignore[arg-type]  # wrong on purpose


@pytest.mark.parametrize("mode", ["stall_headers", "stall_body", "trickle"])
async def test_a_server_that_stalls_forever_is_cut_off_by_the_deadline(
    hostile_server: HostileServer, mode: str
) -> None:
    hostile_server.reply = Reply(body=b'{"id": "c1"}', mode=mode)
    # The read timeout is longer than the deadline (and a trickle never trips it): only the
    # deadline can end this call.
    async with make_client(hostile_server, deadline=0.5, max_retries=3) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(APITimeoutError) as info:
            await client.customers.retrieve("c1")
        elapsed = loop.time() - started
        assert info.value.kind == "deadline"
        assert 0.45 <= elapsed <= 0.5 + SLACK
        assert checked_out(client) == 0


async def test_html_200_gives_a_response_validation_error_with_the_response(
    hostile_server: HostileServer,
) -> None:
    page = b"<html><head><title>Captive portal</title></head><body>log in</body></html>"
    hostile_server.reply = Reply(body=page, content_type="text/html")
    async with make_client(hostile_server) as client:
        for call in (_via_request, _via_retrieve, _via_raw_parse, _via_list):
            with pytest.raises(ResponseValidationError, match="not valid JSON") as info:
                await call(client)
            assert info.value.response is not None
            assert info.value.response.status_code == 200
            assert "text/html" in str(info.value)


async def test_wrong_field_types_name_the_field(hostile_server: HostileServer) -> None:
    body = _encode({"id": "c1", "email": "a@b.c", "firstName": "A", "lastName": "B",
                    "totalSpent": {"amount": 3}})  # fmt: skip
    hostile_server.reply = Reply(body=body)
    async with make_client(hostile_server) as client:
        with pytest.raises(ResponseValidationError) as info:
            await client.customers.retrieve("c1")
        assert info.value.field_path == "totalSpent"
        hostile_server.reply = Reply(body=_encode([{"_id": "c1"}]))
        with pytest.raises(ResponseValidationError):
            await client.customers.retrieve("c1")


async def test_a_redirect_is_never_followed(hostile_server: HostileServer) -> None:
    hostile_server.reply = Reply(
        status=302, body=b"", headers=(("Location", "http://evil.example/steal"),)
    )
    async with make_client(hostile_server) as client:
        with pytest.raises(APIStatusError) as info:
            await client.request("GET", "/v1/api/customers")
        assert info.value.status_code == 302
        assert hostile_server.hits == 1


@pytest.mark.parametrize(
    "page",
    [
        b"<html><title>" * 25_000,  # many openings, never closed
        b"<html><h1>" * 30_000,
        b"<html>" + b"<" * 300_000,  # a "<" that never closes, over and over
        b"<html><body>" + b"<script>" * 40_000,
    ],
    ids=["titles", "headings", "brackets", "scripts"],
)
async def test_a_pathological_html_error_page_is_summarised_in_linear_time(
    hostile_server: HostileServer, page: bytes
) -> None:
    # The summary of an HTML error page used to rescan the page from every "<title" (or "<"),
    # so 300 KB took minutes of CPU: the event loop froze and no deadline could fire.
    hostile_server.reply = Reply(status=502, body=page, content_type="text/html")
    async with make_client(hostile_server, max_retries=0, max_response_bytes=4 * 1024**2) as c:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(APIStatusError) as info:
            await c.request("GET", "/v1/api/customers")
        assert loop.time() - started < 2.0
    assert info.value.status_code == 502
    assert len(info.value.message) <= 400


# ------------------------------------ every read operation, fed bodies of the wrong shape


def _read_operations() -> list[tuple[str, str, tuple[str, ...]]]:
    """(resource, method, required argument names) for operations callable with string ids."""
    import inspect

    from finalpos_async._resource import AsyncAPIResource

    client = AsyncFinalPOS(api_key="sk_test_hostile", base_url="http://127.0.0.1:9")
    found = []
    for attr in sorted(dir(client)):
        if attr.startswith("_") or attr == "bulk":
            continue
        resource = getattr(client, attr, None)
        if not isinstance(resource, AsyncAPIResource):
            continue
        for name, function in inspect.getmembers(type(resource), inspect.isfunction):
            if name.startswith("_") or name.startswith(("create", "update")):
                continue
            required = tuple(
                p.name
                for p in list(inspect.signature(function).parameters.values())[1:]
                if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD
            )
            found.append((attr, name, required))
    return found


READ_OPERATIONS = _read_operations()


def test_the_read_operations_were_found() -> None:
    assert len(READ_OPERATIONS) >= 15, READ_OPERATIONS


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=os.environ.get("FINALPOS_FUZZ_RANDOM") is None,
    database=None,
)
@given(
    operation=st.sampled_from(READ_OPERATIONS),
    body=st.one_of(
        _json,
        _wrong_types,
        st.lists(_wrong_types, max_size=3),
        st.fixed_dictionaries({"data": st.lists(_wrong_types, max_size=3), "total": _json}),
    ),
)
async def test_every_read_operation_turns_a_misshapen_body_into_a_finalpos_error(
    hostile_server: HostileServer, operation: tuple[str, str, tuple[str, ...]], body: Any
) -> None:
    attr, name, required = operation
    hostile_server.reply = Reply(body=_encode(body))
    async with make_client(hostile_server) as client:
        method = getattr(getattr(client, attr), name)

        async def call(c: AsyncFinalPOS) -> Any:
            result = method(**dict.fromkeys(required, "x1"))
            if hasattr(result, "__aiter__"):
                return [item async for item in result]
            return await result

        await _call_and_check(client, call, Reply(label=f"{attr}.{name}"))
