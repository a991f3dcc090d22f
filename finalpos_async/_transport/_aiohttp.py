"""`AiohttpTransport`: the default transport, one pooled aiohttp session per client.

It uses aiohttp's public API only (the one exception, turning off aiohttp's own silent repeat
of a request, lives in `_compat.py`). The session and its `TCPConnector` are created lazily,
inside the running loop, on the first attempt. Every response is fully read and released
before `send` returns or raises, so the pool never holds a connection nobody will release.
"""

from __future__ import annotations

import asyncio
import math
import re
import types
import warnings
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs
import yarl

from .._constants import DNS_CACHE_TTL, KEEPALIVE_TIMEOUT, MAX_RESPONSE_BYTES
from .._request import Request
from .._retry import FailureKind
from ._compat import disable_connection_retry
from ._protocol import TransportError, TransportResponse

__all__ = ["AIOHTTP_VERSION", "URL_SAFE", "AiohttpTransport", "ClientSession", "wire_url"]

# The names the rest of the SDK needs of aiohttp's client (the `session=` argument's type, the
# version in the User-Agent), so that this package stays the only one importing it.
ClientSession = aiohttp.ClientSession
AIOHTTP_VERSION: str = aiohttp.__version__

# Distinct (total, read) timeout pairs kept; first attempts reuse one or two, retries add odd ones.
_TIMEOUT_CACHE_SIZE = 32
# aiohttp rounds the timers of a `ClientTimeout` (the total, which is what is left of the
# call's deadline, and the connect ones) of 5 s or more up to the next whole second of the loop
# clock, so a 5.05 s deadline ended up to a second late. No value reaches this threshold.
_NEVER_ROUND = math.inf


class _BodyTooLarge(Exception):
    """The response body (after decompression) grew past the client's `max_response_bytes`."""


class _TraceState:
    """Per-attempt facts gathered from aiohttp's trace signals.

    `waiting` is the transport's set of tasks whose attempt waits for a pool slot right now.
    """

    __slots__ = ("queued", "waiting")

    def __init__(self, waiting: set[asyncio.Task[Any]]) -> None:
        self.queued = False
        self.waiting = waiting


async def _on_queued_start(
    session: aiohttp.ClientSession, ctx: types.SimpleNamespace, params: object
) -> None:
    state = ctx.trace_request_ctx
    if isinstance(state, _TraceState):
        state.queued = True
        task = asyncio.current_task()
        if task is not None:
            state.waiting.add(task)


async def _on_queued_end(
    session: aiohttp.ClientSession, ctx: types.SimpleNamespace, params: object
) -> None:
    state = ctx.trace_request_ctx
    if isinstance(state, _TraceState):
        state.queued = False
        task = asyncio.current_task()
        if task is not None:
            state.waiting.discard(task)


def _make_trace_config() -> aiohttp.TraceConfig:
    # Tells a pool-slot wait apart from a slow TCP connect: aiohttp raises the same
    # ConnectionTimeoutError for both (its `connect` timeout covers the wait and the connect).
    config = aiohttp.TraceConfig()
    config.on_connection_queued_start.append(_on_queued_start)
    config.on_connection_queued_end.append(_on_queued_end)
    return config


@attrs.define(eq=False)
class AiohttpTransport:
    """Owns (or borrows) the aiohttp session shared by a client and all its `with_options` views.

    `limit`/`limit_per_host` size the connector; `connect_timeout` bounds the TCP/TLS connect and
    `pool_timeout` getting a ready connection (the wait for a free pool slot plus connecting).
    `max_response_bytes` caps a body after decompression (a gzip bomb stops there);
    `verify_tls=False` turns certificate checks off (only ever set through the client's explicit
    `insecure_skip_tls_verify=True`). A `session` passed in is used as is and never closed here.

    Headers that every request of the owning client carries are set once on the session
    (`use_default_headers`); a request whose `headers` is that very mapping passes none per call.
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
    in_flight: int = attrs.field(default=0, init=False)
    """Attempts in progress: waiting for, or holding, a connection (a gauge of pool pressure).

    It drops back once an attempt's response is fully read and its connection released (or
    closed), so 0 means no connection is checked out of the pool."""
    # (total, read) -> ClientTimeout: the same few values recur on almost every call.
    # `lambda: {}` rather than `dict`: a bare `dict` factory is typed `dict[Unknown, Unknown]`.
    _timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = attrs.field(
        factory=lambda: {}, init=False, repr=False
    )
    _traced: aiohttp.ClientSession | None = attrs.field(default=None, init=False, repr=False)
    # What `use_default_headers` was given, and what the session was made with (None: none).
    _wanted_defaults: Mapping[str, str] | None = attrs.field(default=None, init=False, repr=False)
    _defaults: Mapping[str, str] | None = attrs.field(default=None, init=False, repr=False)
    # Attempts in flight from which a new one may have to wait for a pool slot.
    _queue_from: int = attrs.field(default=0, init=False, repr=False)
    # Tasks whose (traced) attempt waits for a pool slot: see `waiting_for_connection`.
    _waiting: set[asyncio.Task[Any]] = attrs.field(factory=lambda: set(), init=False, repr=False)

    def __del__(self) -> None:
        # Never schedule work on a loop here (it may be closed or belong to another thread):
        # a ResourceWarning is all we do; cleanup is `await client.close()` / `async with`.
        session = self.session
        if session is not None and not self.closed and self.owns_session and not session.closed:
            warnings.warn(
                "AsyncFinalPOS was not closed; use `async with AsyncFinalPOS() as client:` "
                "or `await client.close()`",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    @property
    def waiting_for_connection(self) -> frozenset[asyncio.Task[Any]]:
        """The tasks whose attempt is waiting for a free pool slot: none of it was sent yet.

        Known only while the pool may be full (the attempts traced then); the client's
        `close()` reads it to report such calls as not processed.
        """
        return frozenset(self._waiting)

    @property
    def owns_session(self) -> bool:
        """True when the session is ours to close (not handed in by the caller)."""
        return self.external_session is None

    def use_default_headers(
        self, headers: Mapping[str, str], *, replacing: Mapping[str, str] | None = None
    ) -> None:
        """Set `headers` on the session once, as its default headers (the first call wins).

        The owning client passes its read-only base headers (the same mapping object its plain
        requests carry), so those requests pass no headers per call. A request with any other
        headers still sends exactly its own (see `send`). Takes effect only if the session does
        not exist yet, and never on a caller's `session=` (which keeps its own defaults).

        `replacing`: the headers given before, which `headers` replace (the owning client's key
        rotated), on the session too if it exists already, so that a plain call again passes no
        headers and the session never holds a stale key. Safe between requests: aiohttp copies
        the session's defaults when it prepares each request. Any other mapping is ignored.
        """
        if replacing is None:
            if self._wanted_defaults is None and self.session is None:
                self._wanted_defaults = headers
            return
        if self._wanted_defaults is not replacing:
            return
        self._wanted_defaults = headers
        session = self.session
        if session is not None and self._defaults is replacing:
            session.headers.clear()
            session.headers.update(headers)
            self._defaults = headers

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
            # Used as is: no trace of ours, so a pool wait there reports as a connect timeout.
            session = self.external_session
        else:
            connector = aiohttp.TCPConnector(
                limit=self.limit,
                limit_per_host=self.limit_per_host,
                keepalive_timeout=KEEPALIVE_TIMEOUT,
                ttl_dns_cache=DNS_CACHE_TTL,
                # True: aiohttp's default verified context; False only on explicit opt-out.
                ssl=self.verify_tls,
            )
            defaults = self._wanted_defaults
            session = _make_session(connector, owner=True, traced=False, headers=defaults)
            # The same pool, traced and with no default headers: used when the pool may be
            # full, and for a request that does not carry every default header (see `send`).
            self._traced = _make_session(connector, owner=False, traced=True, headers=None)
            self._defaults = defaults
            per_host = self.limit_per_host
            self._queue_from = min(self.limit, per_host) if per_host else self.limit
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
            # One timer where one does the job: the read timer counts from when the request
            # was sent, so one no shorter than `total` can never fire first.
            sock_read=read if total is None or (read is not None and read < total) else None,
            ceil_threshold=_NEVER_ROUND,
        )
        if len(self._timeouts) >= _TIMEOUT_CACHE_SIZE:
            self._timeouts.clear()  # retries bring odd totals; keep the cache small
        self._timeouts[(total, read)] = timeout
        return timeout

    async def send(self, request: Request, *, timeout: float | None) -> TransportResponse:
        """Make one attempt and return the fully read response, or raise `TransportError`."""
        session = self.session or self.ensure_session()
        # Read-only view; the key in it is a HeaderSecret, whose str() is the key.
        headers: Mapping[str, str] | None = request.headers
        defaults = self._defaults
        lacking = False  # the request lacks a header the session would add
        if headers is defaults:
            headers = None  # exactly the session's default headers: nothing to pass per call
        elif defaults is not None:
            headers = _beyond_defaults(request.headers, defaults)
            lacking = headers is None
        state: _TraceState | None = None
        traced = self._traced
        if traced is not None and (lacking or self.in_flight >= self._queue_from):
            # The same pool, with no default headers (the request's own are passed) and traced.
            # Used when every slot may be taken, so that an attempt that queues tells a pool
            # wait from a slow connect: tracing costs a dozen signal dispatches per request
            # (about a tenth of the client's CPU on a small POST), so the usual attempt goes
            # untraced.
            session, headers = traced, request.headers
            state = _TraceState(self._waiting)
        read_timeout = request.timeout
        client_timeout = self._timeouts.get((timeout, read_timeout))
        if client_timeout is None:
            client_timeout = self._make_timeout(timeout, read_timeout)
        resp: aiohttp.ClientResponse | None = None
        self.in_flight += 1
        try:
            async with session.request(
                request.method,
                wire_url(request.url),
                headers=headers,
                params=request.query,
                data=request.content,
                timeout=client_timeout,
                # A redirect would carry the API key to wherever it points: never follow one.
                allow_redirects=False,
                trace_request_ctx=state,
            ) as resp:
                content = await _read_body(resp, self.max_response_bytes)
                return TransportResponse(resp.status, headers=resp.headers, content=content)
        except aiohttp.ConnectionTimeoutError:
            if state is not None and state.queued:
                error = TransportError(
                    FailureKind.POOL_TIMEOUT,
                    f"timed out after {self.pool_timeout} s waiting for a free connection "
                    f"(pool limit {self.limit}, per host {self.limit_per_host})",
                )
            else:
                error = TransportError(
                    FailureKind.CONNECT_TIMEOUT, f"timed out connecting ({self.connect_timeout} s)"
                )
        except (_BodyTooLarge, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = _transport_error(exc, read_timeout)
        finally:
            # After the `async with` has exited: the connection is back in the pool or closed.
            self.in_flight -= 1
            if state is not None and state.queued and (task := asyncio.current_task()) is not None:
                # Left while waiting (cancelled): aiohttp sends no queued-end signal then.
                self._waiting.discard(task)
        # Raised here, after the `except` blocks, so that aiohttp's exception is neither the
        # cause nor the context of ours: its request info holds the request's headers and its
        # frames the request. The response goes from this frame's locals (which a traceback
        # with locals renders) because its repr shows the headers the server sent.
        resp = None
        raise error

    async def aclose(self) -> None:
        """Close the session if it is ours (a caller-supplied session is left open)."""
        self.closed = True
        session, self.session = self.session, None
        traced, self._traced = self._traced, None
        if session is None or not self.owns_session:
            return
        if self.loop is not None and self.loop.is_closed():
            return  # its loop is gone, and the sockets with it: just drop the reference
        if traced is not None:
            await traced.close()  # not the pool's owner: this closes nothing shared
        await session.close()


def _make_session(
    connector: aiohttp.TCPConnector,
    *,
    owner: bool,
    traced: bool,
    headers: Mapping[str, str] | None,
) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        connector_owner=owner,
        # Per-request timeouts are passed on every call; no session-wide total.
        timeout=aiohttp.ClientTimeout(total=None),
        trace_configs=[_make_trace_config()] if traced else None,
        raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    # Our retry loop owns every repeat, so attempts, backoff, budget and deadline stay exact
    # (see `_compat.disable_connection_retry`).
    disable_connection_retry(session)
    return session


def _beyond_defaults(
    headers: Mapping[str, str], defaults: Mapping[str, str]
) -> dict[str, str] | None:
    """What `headers` sets beyond the session's `defaults`: aiohttp merges it over them, by
    case-insensitive name, into exactly `headers`. None when `headers` lacks a default's name
    (the session would add a header this request does not carry, such as another client's key).
    """
    # Values are compared by identity: a request's headers are a copy of the client's, so the
    # same objects (a differing value is passed on; an equal copy costs nothing but a merge).
    extra = {name: value for name, value in headers.items() if defaults.get(name) is not value}
    if len(headers) - len(extra) == len(defaults):
        return extra  # every default name is there, with the same value: the usual case
    present = {name.lower() for name in headers}
    if all(name.lower() in present for name in defaults):
        return extra  # a default overridden (in another case, perhaps): `extra` replaces it
    return None


def _transport_error(exc: BaseException, read_timeout: float | None) -> TransportError:
    """The `TransportError` for what aiohttp raised (connect timeouts are told apart earlier)."""
    if isinstance(exc, _BodyTooLarge):
        # The same resource would answer the same size again: never retried. Leaving the
        # `async with` early closes (never pools) the half-read connection.
        return TransportError(FailureKind.FATAL, str(exc))
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return TransportError(
            FailureKind.READ_TIMEOUT, f"no answer within the read timeout ({read_timeout} s)"
        )
    if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.InvalidURL)):
        return TransportError(FailureKind.FATAL, _describe(exc))
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(FailureKind.CONNECT, _describe(exc))
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        # Reset, disconnect or truncated body after the request was (maybe) sent.
        return TransportError(FailureKind.DISCONNECTED, _describe(exc))
    if isinstance(exc, aiohttp.ClientResponseError):
        # Not HTTP at all, or broken HTTP (bad status line, header or chunk framing, an
        # encoding we cannot decode): aiohttp's parser refused it. The request was sent, so
        # it counts as a connection lost after sending.
        lines = [line.strip() for line in str(exc.message).splitlines() if line.strip()]
        detail = " ".join(lines[:2]) if lines else "unreadable"
        return TransportError(
            FailureKind.DISCONNECTED, f"the server sent a malformed HTTP response: {detail}"
        )
    if isinstance(exc, aiohttp.ClientError):
        # Anything else aiohttp may add later: still a FinalPOSError for the caller.
        return TransportError(FailureKind.DISCONNECTED, _describe(exc))
    # aiohttp's `total` timer: the caller's deadline ran out mid-attempt.
    return TransportError(FailureKind.READ_TIMEOUT, "the call's deadline ran out")


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
URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
# A URL made only of these characters is what `quote(url, safe=URL_SAFE)` returns unchanged.
_PLAIN_URL = re.compile(r"[A-Za-z0-9_.\-:/?#\[\]@!$&'()*+,;=%~]*")


def wire_url(url: str) -> yarl.URL:
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
        return yarl.URL(quote(url, safe=URL_SAFE), encoded=True)
    # A non-ASCII host needs IDNA, which yarl's normal parsing does; the rest is kept as is.
    scheme, _, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    origin = str(yarl.URL(f"{scheme}://{netloc}"))
    return yarl.URL(origin + quote(slash + tail, safe=URL_SAFE), encoded=True)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
