"""The transport seam: what the retry loop needs of whatever carries one attempt.

`Transport` is a protocol; `AiohttpTransport` (`_transport.py`, the default) and
`MockTransport` (`_mock.py`, for tests) implement it, and so can a transport of your own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from . import _codec
from ._request import Request
from ._retry import FailureKind

__all__ = ["Transport", "TransportError", "TransportResponse"]


class TransportResponse:
    """The status, headers and fully read body of one attempt.

    `headers` are case-insensitive; pass `json=` instead of `content=` to send a JSON body
    (with its `Content-Type`): `TransportResponse(200, json={"id": "c1"})`.
    """

    __slots__ = ("content", "headers", "status")

    status: int
    headers: Mapping[str, str]
    content: bytes

    def __init__(
        self,
        status: int,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        json: Any = None,
    ) -> None:
        self.status = status
        if json is not None:
            content = _codec.dumps(json)
            if headers is None:
                headers = {"Content-Type": "application/json"}
        if headers is None:
            self.headers = _NO_HEADERS
        elif isinstance(headers, CIMultiDictProxy):
            self.headers = headers  # aiohttp's own: already case-insensitive and read-only
        else:
            self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self.content = content

    def __repr__(self) -> str:
        return f"<TransportResponse {self.status} ({len(self.content)} bytes)>"


_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


class TransportError(Exception):
    """One attempt got no usable response; `kind` classifies it for the retry policy."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(message)


class Transport(Protocol):
    """Carries one attempt of a `Request` and returns the fully read response.

    `send` raises `TransportError` (with a `FailureKind`) when no response came back; any
    status, 4xx and 5xx included, is a response. `timeout` is what is left of the call's
    deadline for this attempt (`None`: no limit); `request.timeout` is the read timeout.
    `request.headers` is a read-only mapping; the API key in it is a `HeaderSecret`, a `str`
    that renders masked in a `repr` but whose `str()` is the key, so HTTP libraries send it.
    `aclose()` frees what the transport holds; the client calls it from its own `close()`.
    """

    async def send(self, request: Request, *, timeout: float | None) -> TransportResponse: ...

    async def aclose(self) -> None: ...
