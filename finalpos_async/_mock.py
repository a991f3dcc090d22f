"""`MockTransport`: the documented testing seam (answers requests with a function, no network)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from ._http import TransportError, TransportResponse
from ._request import Request
from ._retry import FailureKind

__all__ = ["MockTransport"]

Handler = Callable[[Request], "TransportResponse | Awaitable[TransportResponse]"]


class MockTransport:
    """A transport that answers every attempt by calling `handler(request)` (sync or async).

    ```python
    def handler(request: Request) -> TransportResponse:
        return TransportResponse(200, json={"id": "c1", "name": "Ada"})

    async with AsyncFinalPOS("sk_test", transport=MockTransport(handler)) as client:
        customer = await client.customers.retrieve("c1")
    ```

    The client's retries, deadline, errors and idempotency keys work as with a real server:
    the handler sees each attempt (`request.method`, `.url`, `.params`, `.headers`,
    `.json()`; the `Request` is immutable, its headers read-only), a non-2xx
    `TransportResponse` raises the matching `APIStatusError`, and raising
    `TransportError(FailureKind.DISCONNECTED, ...)` plays a lost connection. An async handler
    that outlasts the read timeout (`request.timeout`) or the deadline fails the attempt as a
    read timeout. `requests` lists every attempt the handler was called with.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.closed = False

    async def send(self, request: Request, *, timeout: float | None) -> TransportResponse:
        """Call the handler with `request` (awaiting it if it is async) and return its answer."""
        if self.closed:
            raise RuntimeError("this MockTransport is closed")
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            limit = _shortest(timeout, request.timeout)
            try:
                answer = await asyncio.wait_for(answer, limit)
            except asyncio.TimeoutError:
                raise TransportError(
                    FailureKind.READ_TIMEOUT, f"the mock handler took longer than {limit} s"
                ) from None
        if not isinstance(answer, TransportResponse):
            raise TypeError(
                f"a MockTransport handler must return a TransportResponse, got "
                f"{type(answer).__name__}"
            )
        return answer

    async def aclose(self) -> None:
        """Mark the transport closed (later sends raise)."""
        self.closed = True


def _shortest(first: float | None, second: float | None) -> float | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)
