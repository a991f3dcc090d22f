"""The lean request path sends exactly what the plain one did.

The owning client's headers are set once on the aiohttp session (a plain call passes none), so
these tests read the request head as it arrives on the socket: every header once, per-call
headers still win, and a request that does not carry a session default (another client sharing
the transport) never gets it. `Request` and `RawResponse` are built without keyword matching:
they stay equal to what their constructors build.
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType

import aiohttp
import attrs
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from finalpos_async import AiohttpTransport, AsyncFinalPOS, Request, TransportResponse
from finalpos_async._request import CallSettings, build_request
from finalpos_async._retry_loop import to_raw
from finalpos_async._types import RequestOptions


class _HeadRecorder:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 that records each request head's header lines
    (name, value) in the order and case sent, and answers `{}`."""

    def __init__(self) -> None:
        self.heads: list[list[tuple[str, str]]] = []
        self.server: asyncio.AbstractServer | None = None
        self.url = ""

    async def __aenter__(self) -> _HeadRecorder:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")[1:]
                fields = [_split(line) for line in lines if line]
                self.heads.append(fields)
                length = {name.lower(): value for name, value in fields}.get("content-length")
                if length:
                    await reader.readexactly(int(length))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def values(self, index: int, name: str) -> list[str]:
        """Every value request `index` carried for `name` (any case)."""
        return [value for key, value in self.heads[index] if key.lower() == name.lower()]


def _split(line: str) -> tuple[str, str]:
    name, _, value = line.partition(": ")
    return name, value


async def test_plain_calls_send_the_session_defaults_once_each() -> None:
    async with _HeadRecorder() as server:
        client = AsyncFinalPOS("sk_one", base_url=server.url, default_headers={"X-Tenant": "t1"})
        async with client:
            assert await client.request("GET", "/a") == {}
            assert await client.request("GET", "/b") == {}
            transport = client.transport
            assert isinstance(transport, AiohttpTransport)
            assert transport.session is not None
            # Set once, on the session: what a plain call no longer passes.
            assert transport.session.headers["x-api-key"] == "sk_one"
    for index in (0, 1):
        assert server.values(index, "x-api-key") == ["sk_one"]
        assert server.values(index, "X-Tenant") == ["t1"]
        assert server.values(index, "Accept") == ["application/json"]
        assert len(server.values(index, "User-Agent")) == 1
        assert server.values(index, "User-Agent")[0].startswith("finalpos-python/")


async def test_per_call_headers_and_a_body_still_override_the_session_defaults() -> None:
    async with _HeadRecorder() as server:
        client = AsyncFinalPOS("sk_one", base_url=server.url, default_headers={"X-Tenant": "t1"})
        async with client:
            extra = {"accept": "text/plain", "X-Tenant": "t2", "X-Extra": "1"}
            await client.request("GET", "/a", extra_headers=extra)
            await client.request("POST", "/b", json={"a": 1}, idempotency_key="key-1")
            await client.request("GET", "/c", timeout=5.0)  # per-call timeout: a plain call
    assert server.values(0, "Accept") == ["text/plain"]  # replaced, whatever its case
    assert server.values(0, "X-Tenant") == ["t2"]
    assert server.values(0, "X-Extra") == ["1"]
    assert server.values(0, "x-api-key") == ["sk_one"]
    assert server.values(1, "Content-Type") == ["application/json"]
    assert server.values(1, "Idempotency-Key") == ["key-1"]
    assert server.values(1, "x-api-key") == ["sk_one"]
    assert server.values(1, "X-Tenant") == ["t1"]
    assert server.values(2, "X-Extra") == []
    assert server.values(2, "Content-Type") == []


async def test_a_with_options_copy_sends_its_own_key_and_headers_once() -> None:
    async with _HeadRecorder() as server:
        client = AsyncFinalPOS("sk_one", base_url=server.url, default_headers={"X-Tenant": "t1"})
        async with client:
            await client.request("GET", "/owner")  # the session takes the owner's headers
            view = client.with_options(api_key="sk_two", default_headers={"x-tenant": "t2"})
            await view.request("GET", "/view")
            await view.request("POST", "/view", json={})
    for index in (1, 2):
        assert server.values(index, "x-api-key") == ["sk_two"]
        assert server.values(index, "X-Tenant") == ["t2"]


async def test_another_client_on_the_same_transport_never_sends_the_first_ones_headers() -> None:
    transport = AiohttpTransport(connect_timeout=5.0, pool_timeout=5.0, limit=10, limit_per_host=10)
    async with _HeadRecorder() as server:
        first = AsyncFinalPOS(
            "sk_one", base_url=server.url, default_headers={"X-Tenant": "t1"}, transport=transport
        )
        second = AsyncFinalPOS("sk_two", base_url=server.url, transport=transport)
        try:
            await first.request("GET", "/first")
            await second.request("GET", "/second")
            await second.request("POST", "/second", json={"a": 1})
        finally:
            await second.close()
            await first.close()
    assert server.values(0, "X-Tenant") == ["t1"]
    for index in (1, 2):
        assert server.values(index, "x-api-key") == ["sk_two"]
        assert server.values(index, "X-Tenant") == []  # a default of the session, not of theirs


async def test_a_callers_session_keeps_its_own_defaults_and_ours_go_per_call() -> None:
    async with _HeadRecorder() as server:
        session = aiohttp.ClientSession(headers={"X-Mine": "m", "x-api-key": "theirs"})
        try:
            async with AsyncFinalPOS("sk_one", base_url=server.url, session=session) as client:
                await client.request("GET", "/a")
            assert session.headers["x-api-key"] == "theirs"  # never changed by the client
        finally:
            await session.close()
    assert server.values(0, "X-Mine") == ["m"]
    assert server.values(0, "x-api-key") == ["sk_one"]


@pytest.mark.parametrize(
    "options",
    [
        RequestOptions(),
        RequestOptions(extra_headers={"X-A": "1"}, idempotency_key="k", timeout=3.0),
        RequestOptions(retry_unsafe=False, extra_query={"q": ["a", "b"]}),
    ],
)
def test_build_request_equals_what_the_constructor_builds(options: RequestOptions) -> None:
    base = build_request(
        "POST",
        "https://api.example/v1/x",
        _base_headers(),
        _settings(),
        params={"skip": 0, "limit": 10},
        json={"a": 1},
        options=options,
    )
    names = {field.name for field in attrs.fields(Request)}
    assert set(vars(base)) == names  # every field, no other attribute
    rebuilt = Request(**{name: getattr(base, name) for name in names})
    assert rebuilt == base
    assert repr(rebuilt) == repr(base)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        base.url = "https://elsewhere"  # type: ignore[misc]
    with pytest.raises(TypeError):
        base.headers["X-B"] = "2"  # type: ignore[index]
    assert attrs.evolve(base, url="https://other/").url == "https://other/"


def test_to_raw_fills_every_field_by_its_name() -> None:
    request = build_request("GET", "https://api.example/v1/x", _base_headers(), _settings())
    headers = CIMultiDictProxy(CIMultiDict({"X-Request-Id": "rid-1"}))
    raw = to_raw(request, TransportResponse(201, headers=headers, content=b"{}"), 0.25, 2)
    assert (raw.status_code, raw.content, raw.elapsed, raw.attempts) == (201, b"{}", 0.25, 2)
    assert raw.headers is headers
    assert raw.request_id == "rid-1"
    assert (raw.method, raw.url) == ("GET", "https://api.example/v1/x")
    assert raw.idempotency_key is None
    assert raw.request_headers is request.headers


def _settings() -> CallSettings:
    return CallSettings(60.0, 120.0, 3)


def _base_headers() -> MappingProxyType[str, str]:
    return MappingProxyType({"Accept": "application/json", "x-api-key": "sk_one"})
