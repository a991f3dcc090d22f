"""Middleware: async callables that wrap every HTTP attempt, inside the retry loop.

A middleware is `async def mw(request, call_next) -> TransportResponse`. The client composes
its list once, at construction (`MiddlewareChain`); the retry loop hands each attempt to the
chain, whose first middleware is the outermost and whose innermost `call_next` is the
transport's `send`. A client without middleware has no chain, and its attempts go straight to
the transport as before.

What a middleware raises is handled as if the transport had raised it: a `TransportError` fails
the attempt and is classified by its `kind` (retried as a lost connection or a timeout would
be); any other exception propagates to the caller unchanged and is never retried. A response a
middleware returns is the attempt's response, status and all (a 503 it makes up is retried).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from ._request import Request
from ._retry import FailureKind
from ._transport import Transport, TransportError, TransportResponse

__all__ = ["CallNext", "Middleware", "MiddlewareChain", "make_chain"]


class CallNext(Protocol):
    """What a middleware calls to pass the attempt on: the next middleware, then the transport.

    `await call_next(request)` returns the attempt's `TransportResponse` (any status) or raises
    `TransportError`; pass the request you were given, or a changed copy of it
    (`request.with_headers({...})`, `attrs.evolve(request, ...)`). Calling it more than once
    sends again within the same attempt (no rate-limit token, not counted as a retry).
    """

    @property
    def attempt(self) -> int:
        """Which attempt of the logical call this is: 1, then 2, 3, ... on retries."""
        ...

    def __call__(self, request: Request, /) -> Awaitable[TransportResponse]: ...


class Middleware(Protocol):
    """An async callable `(request, call_next) -> TransportResponse` run once per HTTP attempt.

    ```python
    async def add_attempt_header(request: Request, call_next: CallNext) -> TransportResponse:
        return await call_next(request.with_headers({"X-Attempt": str(call_next.attempt)}))
    ```

    Any `async def` function (or object with an `async def __call__`) of that shape is one.
    """

    def __call__(
        self, request: Request, call_next: CallNext, /
    ) -> Awaitable[TransportResponse]: ...


class _Next:
    """Calling it runs middleware number `index` of one attempt (past the last: the transport).

    The chain's entry has `index` 0; the `call_next` handed to middleware `i` has `i + 1`.
    """

    __slots__ = ("_chain", "_clock", "_deadline_at", "_index", "_transport", "attempt")

    def __init__(
        self,
        chain: tuple[Middleware, ...],
        index: int,
        transport: Transport,
        attempt: int,
        deadline_at: float | None,
        clock: Callable[[], float],
    ) -> None:
        self._chain = chain
        self._index = index
        self._transport = transport
        self.attempt = attempt
        self._deadline_at = deadline_at
        self._clock = clock

    async def __call__(self, request: Request, /) -> TransportResponse:
        index = self._index
        if not isinstance(request, Request):
            raise TypeError(
                f"{_name(self._chain[index - 1], index - 1)} called call_next with a "
                f"{type(request).__name__}; pass a Request (the one it was given, or a copy "
                "from request.with_headers(...) or attrs.evolve(request, ...))"
            )
        chain = self._chain
        if index == len(chain):
            return await self._transport.send(request, timeout=self._left())
        middleware = chain[index]
        call_next = _Next(
            chain, index + 1, self._transport, self.attempt, self._deadline_at, self._clock
        )
        answer = middleware(request, call_next)
        if not inspect.isawaitable(answer):
            raise TypeError(
                f"{_name(middleware, index)} returned a {type(answer).__name__}, not an "
                "awaitable; a middleware is an async callable: `async def mw(request, call_next)`"
            )
        response = await answer
        if not isinstance(response, TransportResponse):
            raise TypeError(
                f"{_name(middleware, index)} returned a {type(response).__name__}; a middleware "
                "returns a TransportResponse (the one `await call_next(request)` gave it, or "
                "one of its own)"
            )
        return response

    def _left(self) -> float | None:
        """What is left of the attempt's time for the transport, after the middleware's own."""
        deadline_at = self._deadline_at
        if deadline_at is None:
            return None
        left = deadline_at - self._clock()
        if left <= 0:
            # Nothing was sent: a kind that says so, for the caller's `maybe_processed`.
            raise TransportError(
                FailureKind.CONNECT_TIMEOUT,
                "the call's deadline ran out in middleware, before the request was sent",
            )
        return left


class MiddlewareChain:
    """A client's middleware, composed once: `send` runs one attempt through all of them."""

    __slots__ = ("middleware",)

    def __init__(self, middleware: tuple[Middleware, ...]) -> None:
        self.middleware = middleware

    def send(
        self,
        request: Request,
        transport: Transport,
        timeout: float | None,
        attempt: int,
        clock: Callable[[], float],
    ) -> Awaitable[TransportResponse]:
        """Attempt number `attempt` of `request`: the middleware, then `transport.send`.

        `timeout` is what is left of the call's deadline as the attempt starts (`None`: no
        limit); the transport gets what the middleware have not used of it.
        """
        deadline_at = None if timeout is None else clock() + timeout
        return _Next(self.middleware, 0, transport, attempt, deadline_at, clock)(request)


def make_chain(middleware: Sequence[Middleware] | None) -> MiddlewareChain | None:
    """The chain for `middleware=` (checked), or `None` when there are none."""
    if middleware is None:
        return None
    if callable(middleware) or not isinstance(middleware, Sequence):
        raise TypeError(
            "middleware must be a list of async callables, got "
            f"{type(middleware).__name__}; pass a list, even of one: middleware=[mw]"
        )
    checked = tuple(middleware)
    for index, item in enumerate(checked):
        if not callable(item):
            raise TypeError(
                f"middleware[{index}] must be an async callable (request, call_next) -> "
                f"TransportResponse, got {type(item).__name__}"
            )
        if inspect.iscoroutinefunction(item):
            continue  # an `async def` (or a partial of one)
        # A plain Python function, or an object whose `__call__` is one: never awaitable. (What
        # cannot be told before it runs is checked when it does.)
        call = item if _is_python(item) else type(item).__call__
        if _is_python(call) and not inspect.iscoroutinefunction(call):
            raise TypeError(
                f"{_name(item, index)} is a plain function; a middleware must be an `async def` "
                "(it awaits call_next; the sync client runs it on its private event loop too)"
            )
    return MiddlewareChain(checked) if checked else None


def _is_python(value: object) -> bool:
    return inspect.isfunction(value) or inspect.ismethod(value)


def _name(middleware: object, index: int) -> str:
    name = getattr(middleware, "__qualname__", None) or type(middleware).__qualname__
    return f"middleware[{index}] ({name})"
