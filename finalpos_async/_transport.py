"""The HTTP transport: one pooled aiohttp session per client, and one attempt at a time.

The session and its `TCPConnector` are created lazily, inside the running loop, on the first
request; the loop is recorded so a later call from another loop fails clearly. Every response is
fully read and released before `send` returns or raises, so the pool never holds a connection
that nobody will release.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import types
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any, cast
from urllib.parse import quote

import aiohttp
import attrs
import yarl
from aiohttp.client_proto import ResponseHandler
from multidict import CIMultiDictProxy

from ._constants import (
    DNS_CACHE_TTL,
    KEEPALIVE_TIMEOUT,
    MAX_RESPONSE_BYTES,
)
from ._retry import FailureKind

__all__ = ["AttemptResult", "Transport", "TransportError", "flatten_params"]

# Distinct (total, read) timeout pairs kept; first attempts reuse one or two, retries add odd ones.
_TIMEOUT_CACHE_SIZE = 32


@attrs.frozen
class AttemptResult:
    """The status, headers and fully read body of one attempt (the connection is released)."""

    status: int
    headers: CIMultiDictProxy[str]
    content: bytes


class TransportError(Exception):
    """One attempt got no usable response; `kind` classifies it for the retry policy."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(message)


class _BodyTooLarge(Exception):
    """The response body (after decompression) grew past the client's `max_response_bytes`."""


class _TraceState:
    """Per-attempt facts gathered from aiohttp's trace signals."""

    __slots__ = ("queued",)

    def __init__(self) -> None:
        self.queued = False


async def _on_queued_start(
    session: aiohttp.ClientSession, ctx: types.SimpleNamespace, params: object
) -> None:
    state = ctx.trace_request_ctx
    if isinstance(state, _TraceState):
        state.queued = True


async def _on_queued_end(
    session: aiohttp.ClientSession, ctx: types.SimpleNamespace, params: object
) -> None:
    state = ctx.trace_request_ctx
    if isinstance(state, _TraceState):
        state.queued = False


def _make_trace_config() -> aiohttp.TraceConfig:
    # Tells a pool-slot wait apart from a slow TCP connect: aiohttp raises the same
    # ConnectionTimeoutError for both.
    config = aiohttp.TraceConfig()
    config.on_connection_queued_start.append(_on_queued_start)
    config.on_connection_queued_end.append(_on_queued_end)
    return config


# Set when an attempt's `connect` timeout fired while it waited for a free pool slot. A context
# variable: the connector runs inside the attempt's own task, so each attempt sees its own flag.
_POOL_WAIT_TIMED_OUT: ContextVar[bool] = ContextVar("finalpos_pool_wait_timed_out", default=False)


# Below this many seconds left, a read timer that fires counts as expired (timer granularity).
_READ_TIMER_SLACK = 0.001


class _ReadTimerProtocol(ResponseHandler):
    """aiohttp's client protocol with the same read timeout (`sock_read`) on a lazy timer.

    Stock aiohttp cancels and re-creates an event-loop timer on every chunk received and drops
    it at the end of every response: two timer objects per request, each pushed on and later
    swept off the loop's heap (about a tenth of the client's CPU per small request here). This
    keeps one timer per connection instead: data only moves the deadline forward; the timer,
    when it fires early, re-arms itself for the deadline; the end of a response only disarms it.
    The timeout itself is unchanged: no byte for `sock_read` seconds raises aiohttp's
    `SocketTimeoutError`, exactly as before.
    """

    _read_deadline: float | None = None  # None: disarmed (no read in progress)

    def _reschedule_timeout(self) -> None:
        timeout = self._read_timeout
        if not timeout:
            self._read_deadline = None
            return
        loop = self._loop
        deadline = self._read_deadline = loop.time() + timeout
        handle = self._read_timeout_handle
        if handle is not None and handle.when() <= deadline:
            return  # fires first and re-arms for the (later) deadline
        if handle is not None:
            handle.cancel()  # a shorter timeout than the armed one: fire sooner
        self._read_timeout_handle = loop.call_at(deadline, self._read_timer_fired)

    def _drop_timeout(self) -> None:
        # Disarm only; a timer still pending finds nothing to do and goes away by itself.
        self._read_deadline = None

    def _read_timer_fired(self) -> None:
        self._read_timeout_handle = None
        deadline = self._read_deadline
        if deadline is None:
            return
        if deadline - self._loop.time() > _READ_TIMER_SLACK:
            self._read_timeout_handle = self._loop.call_at(deadline, self._read_timer_fired)
            return
        self._read_deadline = None
        self._on_read_timeout()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        handle, self._read_timeout_handle = self._read_timeout_handle, None
        if handle is not None:
            handle.cancel()  # do not keep a closed connection alive until it fires


_read_timer_hooks: bool | None = None  # found out once per process (it is aiohttp's version)


def _has_read_timer_hooks(loop: asyncio.AbstractEventLoop) -> bool:
    """The aiohttp internals `_ReadTimerProtocol` relies on are all there (else: stock).

    Checked once, on a throwaway protocol object (making one opens nothing).
    """
    global _read_timer_hooks
    if _read_timer_hooks is None:
        probe = ResponseHandler(loop)
        _read_timer_hooks = all(
            hasattr(probe, name)
            for name in ("_read_timeout", "_read_timeout_handle", "_loop", "_on_read_timeout")
        ) and all(
            callable(getattr(ResponseHandler, name, None))
            for name in ("_reschedule_timeout", "_drop_timeout", "start_timeout")
        )
    return _read_timer_hooks


class _PoolConnector(aiohttp.TCPConnector):
    """A `TCPConnector` that notes an attempt timing out while queued for a pool slot.

    This replaces aiohttp tracing, which costs a dozen signal dispatches and parameter objects
    on every request (about 5 % of the client's CPU per call) just to see two rare events.
    Its connections use `_ReadTimerProtocol` when this aiohttp has the hooks it needs.
    """

    def __init__(self, **kwargs: Any) -> None:
        # aiohttp's own signature is partly untyped (its `socket_factory` parameter takes a
        # `tuple[Unknown, ...]`); nothing passed here is.
        super().__init__(**kwargs)  # pyright: ignore[reportUnknownMemberType]
        factory = getattr(self, "_factory", None)
        if (
            isinstance(factory, functools.partial)
            and factory.func is ResponseHandler
            and _has_read_timer_hooks(self._loop)
        ):
            self._factory = cast(
                "functools.partial[ResponseHandler]",
                functools.partial(_ReadTimerProtocol, *factory.args, **factory.keywords),
            )

    async def _wait_for_available_connection(self, key: Any, traces: Any) -> None:
        try:
            await super()._wait_for_available_connection(key, traces)
        except asyncio.CancelledError:
            # aiohttp's `connect` timeout cancels this wait; the flag is read (and cleared)
            # by `Transport.send` only when that timeout is what ended the attempt.
            _POOL_WAIT_TIMED_OUT.set(True)
            raise


# aiohttp < 3.10 has no such hook: fall back to tracing the pool-queue signals there.
_TRACE_POOL_WAITS = not hasattr(aiohttp.TCPConnector, "_wait_for_available_connection")


@attrs.define(eq=False)
class Transport:
    """Owns (or borrows) the aiohttp session shared by a client and all its `with_options` views.

    `limit`/`limit_per_host` size the connector; `connect_timeout` bounds the TCP/TLS connect and
    `pool_timeout` the wait for a free pool slot. `max_response_bytes` caps a body after
    decompression (a gzip bomb stops there); `verify_tls=False` turns certificate checks off
    (only ever set through the client's explicit `insecure_skip_tls_verify=True`).
    """

    connect_timeout: float | None
    pool_timeout: float | None
    limit: int
    limit_per_host: int
    external_session: aiohttp.ClientSession | None = None
    max_response_bytes: int = MAX_RESPONSE_BYTES
    verify_tls: bool = True
    session: aiohttp.ClientSession | None = attrs.field(default=None, init=False)
    loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)
    closed: bool = attrs.field(default=False, init=False)
    # (total, read) -> ClientTimeout: the same few values recur on almost every call.
    # `lambda: {}` rather than `dict`: a bare `dict` factory is typed `dict[Unknown, Unknown]`.
    _timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = attrs.field(
        factory=lambda: {}, init=False, repr=False
    )

    def ensure_session(self) -> aiohttp.ClientSession:
        """The session, created on first use inside the running loop."""
        session = self.session
        if session is not None:
            return session
        if self.closed:
            # Never make a fresh pool behind a closed client (a retry racing close(), say).
            raise RuntimeError("this AsyncFinalPOS is closed; create a new client")
        loop = asyncio.get_running_loop()
        if self.external_session is not None:
            session = self.external_session
        else:
            connector = _PoolConnector(
                limit=self.limit,
                limit_per_host=self.limit_per_host,
                keepalive_timeout=KEEPALIVE_TIMEOUT,
                ttl_dns_cache=DNS_CACHE_TTL,
                # True: aiohttp's default verified context; False only on explicit opt-out.
                ssl=self.verify_tls,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                # Per-request timeouts are passed on every call; no session-wide total.
                timeout=aiohttp.ClientTimeout(total=None),
                trace_configs=[_make_trace_config()] if _TRACE_POOL_WAITS else None,
                raise_for_status=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            # aiohttp silently repeats an idempotent request once when a connection drops; our
            # retry loop owns every repeat so attempts, backoff, budget and deadline stay exact.
            # (A private flag, the one aiohttp's own test client turns off; every aiohttp the
            # floor in pyproject.toml admits has it, and without it attempts would be miscounted.
            # aiohttp has no public switch for it, hence the pyright ignore.)
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False  # pyright: ignore[reportPrivateUsage]
        self.session = session
        self.loop = loop
        return session

    def _make_timeout(self, total: float | None, read: float | None) -> aiohttp.ClientTimeout:
        timeout = aiohttp.ClientTimeout(
            total=total,
            # aiohttp's `connect` bounds getting a ready connection: the pool-slot wait plus
            # opening a new socket when needed; `sock_connect` bounds the socket connect alone.
            connect=self.pool_timeout,
            sock_connect=self.connect_timeout,
            sock_read=read,
        )
        if len(self._timeouts) >= _TIMEOUT_CACHE_SIZE:
            self._timeouts.clear()  # retries bring odd totals; keep the cache small
        self._timeouts[(total, read)] = timeout
        return timeout

    @property
    def owns_session(self) -> bool:
        """True when the session is ours to close (not handed in by the caller)."""
        return self.external_session is None

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Sequence[tuple[str, str]] | None,
        data: bytes | None,
        read_timeout: float | None,
        total_timeout: float | None,
    ) -> AttemptResult:
        """Make one attempt and return the fully read response, or raise `TransportError`."""
        session = self.ensure_session()
        timeout = self._timeouts.get((total_timeout, read_timeout))
        if timeout is None:
            timeout = self._make_timeout(total_timeout, read_timeout)
        state = _TraceState() if _TRACE_POOL_WAITS else None
        if _POOL_WAIT_TIMED_OUT.get():
            _POOL_WAIT_TIMED_OUT.set(False)  # left over from a cancelled earlier attempt
        try:
            async with session.request(
                method,
                _wire_url(url),
                headers=headers,
                params=params,
                data=data,
                timeout=timeout,
                # A redirect would carry the API key to wherever it points: never follow one.
                allow_redirects=False,
                trace_request_ctx=state,
            ) as resp:
                content = await _read_body(resp, self.max_response_bytes)
                return AttemptResult(resp.status, resp.headers, content)
        except _BodyTooLarge as exc:
            # The same resource would answer the same size again: never retried. Leaving the
            # `async with` early closes (never pools) the half-read connection.
            raise TransportError(FailureKind.FATAL, str(exc)) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            queued = _POOL_WAIT_TIMED_OUT.get() if state is None else state.queued
            _POOL_WAIT_TIMED_OUT.set(False)
            if queued:
                raise TransportError(
                    FailureKind.POOL_TIMEOUT,
                    f"timed out after {self.pool_timeout} s waiting for a free connection "
                    f"(pool limit {self.limit}, per host {self.limit_per_host})",
                ) from exc
            raise TransportError(
                FailureKind.CONNECT_TIMEOUT, f"timed out connecting ({self.connect_timeout} s)"
            ) from exc
        except aiohttp.SocketTimeoutError as exc:
            raise TransportError(
                FailureKind.READ_TIMEOUT, f"no answer within the read timeout ({read_timeout} s)"
            ) from exc
        except (aiohttp.ClientSSLError, aiohttp.InvalidURL) as exc:
            raise TransportError(FailureKind.FATAL, _describe(exc)) from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(FailureKind.CONNECT, _describe(exc)) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # Reset, disconnect or truncated body after the request was (maybe) sent.
            raise TransportError(FailureKind.DISCONNECTED, _describe(exc)) from exc
        except aiohttp.ClientResponseError as exc:
            # Not HTTP at all, or broken HTTP (bad status line, header or chunk framing, an
            # encoding we cannot decode): aiohttp's parser refused it. The request was sent, so
            # it counts as a connection lost after sending.
            lines = [line.strip() for line in str(exc.message).splitlines() if line.strip()]
            detail = " ".join(lines[:2]) if lines else "unreadable"
            raise TransportError(
                FailureKind.DISCONNECTED, f"the server sent a malformed HTTP response: {detail}"
            ) from exc
        except aiohttp.ClientError as exc:
            # Anything else aiohttp may add later: still a FinalPOSError for the caller.
            raise TransportError(FailureKind.DISCONNECTED, _describe(exc)) from exc
        except asyncio.TimeoutError as exc:
            # aiohttp's `total` timer: the caller's deadline ran out mid-attempt.
            raise TransportError(FailureKind.READ_TIMEOUT, "the call's deadline ran out") from exc

    async def close(self) -> None:
        """Close the session if it is ours (a caller-supplied session is left open)."""
        self.closed = True
        session, self.session = self.session, None
        if session is not None and self.owns_session:
            await session.close()

    def open_connections(self) -> int:
        """Connections currently checked out of the pool (0 when every response was released)."""
        session = self.session
        if session is None or session.connector is None:
            return 0
        acquired = getattr(session.connector, "_acquired", ())
        return len(acquired)


async def _read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    length = resp.content_length
    if length is not None and length > limit:
        raise _BodyTooLarge(
            f"the response body of {length} bytes exceeds the client's limit of {limit} bytes "
            "(max_response_bytes)"
        )
    content = resp.content
    if content.is_eof():
        # The whole body came in with the headers (the usual case for an API answer): take
        # what is buffered at once, with no await per chunk.
        body = content.read_nowait()
        if len(body) > limit:
            raise _BodyTooLarge(
                f"the response body exceeds the client's limit of {limit} bytes "
                "(max_response_bytes; counted after decompression)"
            )
        return body
    chunks: list[bytes] = []
    size = 0
    # aiohttp hands decompressed data out in bounded chunks, so a gzip bomb stops here after
    # at most one chunk past the limit, never after inflating all of it. (`readany` directly,
    # not `async for ... iter_any()`: one async-iterator layer less on every response.)
    while chunk := await content.readany():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge(
                f"the response body exceeds the client's limit of {limit} bytes "
                "(max_response_bytes; counted after decompression)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


# Everything RFC 3986 allows in a URL, plus "%" so existing escapes stay as they are.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
# A URL made only of these characters is what `quote(url, safe=_URL_SAFE)` returns unchanged.
_PLAIN_URL = re.compile(r"[A-Za-z0-9_.\-:/?#\[\]@!$&'()*+,;=%~]*")


def _wire_url(url: str) -> yarl.URL:
    """`url` exactly as built, for the request line.

    The path is already percent-encoded (`encode_path_param`); yarl's default parsing would
    "normalise" it and decode `%3D`, `%3B`, `%40`... back to `=`, `;`, `@`, so an id like
    `c1;jsessionid=1` would reach a server as a matrix parameter of `c1`. Only characters that
    may not appear in a URL at all (spaces, non-ASCII) are escaped here; nothing is decoded.
    """
    if _PLAIN_URL.fullmatch(url):
        # The usual case (every path parameter was percent-encoded already): no `quote` pass.
        return yarl.URL(url, encoded=True)
    if url.isascii():
        return yarl.URL(quote(url, safe=_URL_SAFE), encoded=True)
    # A non-ASCII host needs IDNA, which yarl's normal parsing does; the rest is kept as is.
    scheme, _, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    origin = str(yarl.URL(f"{scheme}://{netloc}"))
    return yarl.URL(origin + quote(slash + tail, safe=_URL_SAFE), encoded=True)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def flatten_params(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Flatten query parameters: `None` dropped, bools as true/false, sequences repeated."""
    out: list[tuple[str, str]] = []
    if not params:
        return out
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of names to values, got {type(params).__name__}")
    for key, value in params.items():
        if not isinstance(key, str):
            raise TypeError(f"params keys must be str, got {key!r} ({type(key).__name__})")
        if _SURROGATE.search(key):
            raise ValueError(f"query parameter name {key!r} holds a lone surrogate")
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            for item in cast("list[object] | tuple[object, ...]", value):
                if item is not None:
                    out.append((key, query_value(key, item)))
        else:
            out.append((key, query_value(key, value)))
    return out


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def query_value(key: str, value: object) -> str:
    """One query value in its wire form; a value that cannot be sent raises, naming `key`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        # "nan"/"inf" in a filter would be read as a word, or match nothing, silently.
        raise ValueError(f"query parameter {key!r} must be a finite number, got {value!r}")
    if isinstance(value, str):
        if _SURROGATE.search(value):
            # yarl would silently drop it: a different value than the caller's would be sent.
            raise ValueError(f"query parameter {key!r} holds a lone surrogate (invalid Unicode)")
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        # A naive time means a different instant on every machine; the API needs an offset.
        raise ValueError(
            f"query parameter {key!r} is a naive datetime ({value.isoformat()}); pass a "
            "timezone-aware one, e.g. datetime.now(timezone.utc)"
        )
    # Enums, Decimals, dates and the like: their str() is the wire form.
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    enum_value = getattr(value, "value", None)
    if isinstance(enum_value, (str, int)):
        return str(enum_value)
    if type(value).__name__ == "Decimal":
        return str(value)
    raise TypeError(
        f"query parameter {key!r} has a value of type {type(value).__name__}, which cannot be "
        "sent in a URL; pass a str, int, float, bool, date/datetime, enum or a list of them"
    )
