"""Framing and hop-by-hop headers are refused wherever a caller can set headers.

`Content-Length`, `Transfer-Encoding`, `Host`, `Connection`, `Upgrade`, `TE`, `Trailer`,
`Keep-Alive` and any `Proxy-*`, in any case, in `extra_headers` (per call, both clients, the
typed methods and `request`) and in `default_headers` (constructor, both clients, and
`with_options`): a `ValueError` naming the header and why, before anything is sent. The wire
test reads the raw bytes a 127.0.0.1 server receives.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from finalpos_async import AsyncFinalPOS
from finalpos_sync import FinalPOS

REFUSED = [
    "Content-Length",
    "content-length",
    "Transfer-Encoding",
    "TRANSFER-ENCODING",
    "Host",
    "host",
    "Connection",
    "Upgrade",
    "TE",
    "te",
    "Trailer",
    "Keep-Alive",
    "Proxy-Authorization",
    "proxy-connection",
    "Proxy-Anything",
]
# Near misses that are ordinary headers and must keep working.
ALLOWED = ["Content-Type", "X-Forwarded-Host", "Hosting", "Tea", "Proxy", "X-Proxy-Id"]

CUSTOMER = {"email": "a@b.c", "first_name": "Ada", "last_name": "Lovelace"}


def why(setting: str, name: str) -> str:
    """The refusal's message, as a regex: the setting, the header, and the reason."""
    return rf"{setting} must not set '{re.escape(name)}': framing and hop-by-hop headers .*" + (
        r"set by the transport.*request smuggling"
    )


@attrs.define
class RawServer:
    """A 127.0.0.1 HTTP/1.1 server that keeps the raw bytes of every request and answers `{}`."""

    url: str = ""
    requests: list[bytes] = attrs.field(factory=list)
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?im)^content-length:\s*(\d+)\r$", head)
                body = await reader.readexactly(int(match.group(1))) if match else b""
                self.requests.append(head + body)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    server = RawServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


@pytest.mark.parametrize("name", REFUSED)
async def test_extra_headers_refuse_framing_and_hop_by_hop_headers(
    raw_server: RawServer, name: str
) -> None:
    async with AsyncFinalPOS("sk_test_headers", base_url=raw_server.url) as client:
        headers = {name: "chunked" if "transfer" in name.lower() else "0"}
        with pytest.raises(ValueError, match=why("extra_headers", name)):
            await client.request("POST", "/v1/api/customer", json={"a": 1}, extra_headers=headers)
        with pytest.raises(ValueError, match=why("extra_headers", name)):
            await client.request("GET", "/v1/api/customers", extra_headers=headers)
        with pytest.raises(ValueError, match=why("extra_headers", name)):
            await client.customers.create(**CUSTOMER, extra_headers=headers)
    assert raw_server.connections == 0  # refused before anything was sent


@pytest.mark.parametrize("name", REFUSED)
def test_default_headers_refuse_framing_and_hop_by_hop_headers(name: str) -> None:
    headers = {"X-Tenant": "t1", name: "v"}
    with pytest.raises(ValueError, match=why("default_headers", name)):
        AsyncFinalPOS("sk_test_headers", default_headers=headers)
    with pytest.raises(ValueError, match=why("default_headers", name)):
        AsyncFinalPOS("sk_test_headers").with_options(default_headers=headers)
    with pytest.raises(ValueError, match=why("default_headers", name)):
        FinalPOS("sk_test_headers", default_headers=headers)


def test_the_sync_client_refuses_them_per_call_and_in_with_options(raw_server: RawServer) -> None:
    with FinalPOS("sk_test_headers", base_url=raw_server.url) as client:
        with pytest.raises(ValueError, match=why("extra_headers", "Transfer-Encoding")):
            client.request(
                "POST", "/v1/api/customer", json={}, extra_headers={"Transfer-Encoding": "chunked"}
            )
        with pytest.raises(ValueError, match=why("extra_headers", "Content-Length")):
            client.customers.create(**CUSTOMER, extra_headers={"Content-Length": "0"})
        with pytest.raises(ValueError, match=why("default_headers", "Connection")):
            client.with_options(default_headers={"Connection": "close"})
    assert raw_server.connections == 0


async def test_on_the_wire_a_post_has_one_content_length_and_no_transfer_encoding(
    raw_server: RawServer,
) -> None:
    allowed: dict[str, Any] = {name: f"v-{i}" for i, name in enumerate(ALLOWED)}
    allowed["Content-Type"] = "application/json"
    async with AsyncFinalPOS("sk_test_headers", base_url=raw_server.url) as client:
        # The two calls of the issue: both refused, nothing sent.
        with pytest.raises(ValueError, match="Transfer-Encoding"):
            await client.request(
                "POST", "/v1/api/customer", json={"a": 1},
                extra_headers={"Transfer-Encoding": "chunked"},
            )  # fmt: skip
        with pytest.raises(ValueError, match="Content-Length"):
            await client.request(
                "POST", "/v1/api/customer", json={"a": 1}, extra_headers={"Content-Length": "0"}
            )
        assert raw_server.connections == 0
        # What is allowed goes out, and the framing stays the transport's.
        await client.request("POST", "/v1/api/customer", json={"a": 1}, extra_headers=allowed)
    (raw,) = raw_server.requests
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[1:]
    names = [line.split(":", 1)[0].lower() for line in lines]
    assert body == b'{"a":1}'
    assert names.count("content-length") == 1
    assert f"Content-Length: {len(body)}" in lines
    assert "transfer-encoding" not in names
    assert names.count("host") == 1
    for name, value in allowed.items():
        assert f"{name}: {value}" in lines


def test_the_readme_security_section_lists_the_refused_headers() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Security\n(.*?)(?=^## )", readme, re.M | re.S)
    assert match is not None, "README has no Security section"
    section = " ".join(match.group(1).split())
    canonical = ["Content-Length", "Transfer-Encoding", "Host", "Connection", "Upgrade", "TE"]
    for name in [*canonical, "Trailer", "Keep-Alive", "Proxy-*"]:
        assert f"`{name}`" in section, name
    for words in ("extra_headers", "default_headers", "framing and hop-by-hop headers",
                  "`ValueError` naming the header", "request smuggling"):  # fmt: skip
        assert words in section, words
