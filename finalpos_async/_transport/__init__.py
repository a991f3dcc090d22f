"""The transport seam: what carries one attempt of a request, and what comes back.

- `_protocol.py`: the `Transport` protocol and its values, `TransportResponse` and
  `TransportError`.
- `_aiohttp.py`: `AiohttpTransport`, the default (aiohttp's public API only).
- `_compat.py`: the one touch of aiohttp's private internals, and why.
- `_build.py`: the client's transport from its arguments (`make_transport`).
- `_proxy.py`: which proxy each attempt goes through (`proxy=`, `trust_env`, `NO_PROXY`).
- `_mock.py`: `MockTransport`, the documented testing seam.

This package is the only place that imports aiohttp's client; the rest of the SDK reaches it
through the names below. Building requests (`Request`, query encoding) is `_request.py`'s.
"""

from ._aiohttp import AIOHTTP_VERSION, URL_SAFE, AiohttpTransport, ClientSession, wire_url
from ._build import PoolSettings, make_transport
from ._mock import MockTransport
from ._protocol import Transport, TransportError, TransportResponse

__all__ = [
    "AIOHTTP_VERSION",
    "URL_SAFE",
    "AiohttpTransport",
    "ClientSession",
    "MockTransport",
    "PoolSettings",
    "Transport",
    "TransportError",
    "TransportResponse",
    "make_transport",
    "wire_url",
]
