"""The retry loop: one `Request` through an `Transport` until it succeeds or must stop.

The decisions are pure functions of the request, the call's state and the clock reading passed
in (testable without I/O); `send_with_retries` only sequences them around the awaits (the
rate-limit token, the attempt, the backoff sleep). The policy itself is in `_retry.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

import attrs

from ._constants import REQUEST_ID_HEADERS
from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    FinalPOSError,
    RateLimiterUnavailable,
    TimeoutKind,
    make_status_error,
)
from ._inflight import InFlight, closed_in_flight
from ._limiter import Limiter
from ._logging import logger
from ._middleware import Middleware, MiddlewareChain, make_chain
from ._request import Request
from ._response import RawResponse
from ._retry import (
    FailureKind,
    RetryBudget,
    RetryPolicy,
    may_have_taken_effect,
    parse_retry_after,
    should_retry,
)
from ._secret import HeaderSecret, mask_text, secrets_in
from ._transport import Transport, TransportError, TransportResponse

__all__ = [
    "CallState",
    "ClientParts",
    "Failure",
    "WithMiddleware",
    "attempt_timeout",
    "closed_error",
    "connection_error",
    "deadline_error",
    "log_path",
    "send_with_retries",
    "status_failure",
    "to_raw",
    "transport_failure",
    "with_middleware",
]

# A timer firing up to this close to the deadline counts as the deadline (timer granularity).
DEADLINE_SLACK = 0.005

_TIMEOUT_KINDS: dict[FailureKind, TimeoutKind] = {
    FailureKind.CONNECT_TIMEOUT: "connect",
    FailureKind.POOL_TIMEOUT: "pool",
    FailureKind.READ_TIMEOUT: "read",
}

_ErrorT = TypeVar("_ErrorT", bound=FinalPOSError)


class CallState:
    """What one logical call has learned so far, across its attempts."""

    __slots__ = (
        "attempt",
        "deadline_at",
        "last_cost",
        "last_error",
        "maybe_processed",
        "rekeyed",
        "start",
    )

    def __init__(self, start: float, deadline: float | None) -> None:
        self.start = start
        self.deadline_at = None if deadline is None else start + deadline
        self.attempt = 0
        self.last_cost = 0  # retry-budget tokens the latest retry took
        self.last_error: FinalPOSError | None = None
        # Whether some attempt may have been processed: carried by the final error.
        self.maybe_processed = False
        self.rekeyed = False  # repeated once already with a new key after a 401

    def marked(self, error: _ErrorT) -> _ErrorT:
        """`error` with `maybe_processed` set from every attempt of the call so far."""
        error.maybe_processed = self.maybe_processed
        return error


class Failure(NamedTuple):
    """One failed attempt, classified: the error to raise and whether a retry may follow."""

    error: FinalPOSError
    retryable: bool
    timed_out: bool
    retry_after: float | None
    cause: BaseException | None  # what the error is raised from (None: nothing)


class ClientParts(Protocol):
    """What a call needs of its client, shared by the client and its `with_options` copies.

    `calls` are the client's calls in flight, through which `close()` ends this one with
    `ClientClosedError` (see `_inflight.py`); `limiter` gives a token per attempt; `budget`
    bounds retries client-wide; `refresh_key` gives the key to repeat a call with after a 401;
    `middleware` (`None`: none) wraps every attempt.
    """

    @property
    def transport(self) -> Transport: ...

    @property
    def budget(self) -> RetryBudget | None: ...

    @property
    def limiter(self) -> Limiter | None: ...

    @property
    def calls(self) -> InFlight: ...

    async def refresh_key(self, sent: str, sent_at: float) -> str | None: ...

    @property
    def middleware(self) -> MiddlewareChain | None: ...


def with_middleware(parts: ClientParts, middleware: Sequence[Middleware] | None) -> ClientParts:
    """`parts` sending through `middleware` (checked); `None` keeps those of `parts`."""
    return parts if middleware is None else WithMiddleware(parts, make_chain(middleware))


class WithMiddleware:
    """`parts` with other middleware (a client's or a view's own `middleware=`)."""

    __slots__ = ("_parts", "budget", "calls", "limiter", "middleware", "transport")

    def __init__(self, parts: ClientParts, middleware: MiddlewareChain | None) -> None:
        self._parts = parts
        self.transport = parts.transport
        self.budget = parts.budget
        self.limiter = parts.limiter
        self.calls = parts.calls
        self.middleware = middleware

    async def refresh_key(self, sent: str, sent_at: float) -> str | None:
        """The client's own (the key is shared by every view)."""
        return await self._parts.refresh_key(sent, sent_at)


async def send_with_retries(
    request: Request,
    client: ClientParts,
    policy: RetryPolicy,
    clock: Callable[[], float],
    called_at: float | None = None,
) -> RawResponse[Any]:
    """Send `request` (retrying as `policy` allows) and return the 2xx response, or raise.

    `clock` is the loop's monotonic time; the deadline counts from `called_at` when the call
    waited for something before (a key function's first key), else from now. (Arguments by
    position: this runs on every call.)
    """
    transport, budget, limiter = client.transport, client.budget, client.limiter
    calls, chain = client.calls, client.middleware
    start = clock()
    state = CallState(start if called_at is None else called_at, request.deadline)
    task = calls.enter()
    sending = False  # an attempt is in the transport: its request may have been sent
    started = 0  # attempts handed to the transport
    try:
        if calls.closed:
            raise _closed(request, state, started, sending=False)
        log_info = logger.isEnabledFor(logging.INFO)
        while True:
            state.attempt += 1
            if limiter is not None:
                await _take_token(request, state, limiter, calls, clock)
                attempt_start = clock()
            elif state.attempt == 1:
                attempt_start = start  # nothing awaited since: the same reading
            else:
                attempt_start = clock()
            timeout = attempt_timeout(request, state, attempt_start)
            sending = True
            started += 1
            try:
                if chain is None:
                    response = await transport.send(request, timeout=timeout)
                else:  # what a middleware raises is handled as the transport's own
                    response = await chain.send(request, transport, timeout, state.attempt, clock)
            except TransportError as exc:
                sending = False
                now = clock()
                if log_info:
                    _log_attempt(request, exc.kind.value, state.attempt, now - attempt_start)
                failure = transport_failure(request, state, exc, now)
            else:
                sending = False
                now = clock()
                if log_info:
                    _log_attempt(request, response.status, state.attempt, now - attempt_start)
                raw = to_raw(request, response, now - state.start, state.attempt)
                if 200 <= response.status < 300:
                    if budget is not None:
                        budget.record_success(state.last_cost)
                    return raw
                failure = status_failure(request, state, raw, policy)
                if response.status == 401:  # repeated once if the key function gives a new key
                    fresh = await _rekeyed(request, state, client, failure, attempt_start, clock)
                    if fresh is not None:
                        request = fresh
                        continue  # at once: no backoff, no retry budget (see _rekeyed)
            delay = _next_delay(request, state, failure, policy, budget, clock())
            logger.debug(
                "retrying %s %s in %.3f s (attempt %d failed: %s)",
                request.method,
                log_path(request.url),
                delay,
                state.attempt,
                failure.error.message,
            )
            await asyncio.sleep(delay)
            if calls.closed:  # closed from this very task (a hook): nothing cancelled us
                raise _closed(request, state, started, sending=False) from failure.error
    except asyncio.CancelledError as exc:
        if not calls.claims(task, exc):
            raise  # a real cancellation: the caller's task was cancelled
        # The client's close() ended this call; whether the attempt under way was sent is
        # known only when it was still waiting for a connection.
        sent = sending and calls.sent(task)
        made = started if sent or not sending else started - 1
        raise _closed(request, state, made, sending=sent) from state.last_error
    finally:
        calls.leave(task)


async def _take_token(
    request: Request,
    state: CallState,
    limiter: Limiter,
    calls: InFlight,
    clock: Callable[[], float],
) -> None:
    """Every attempt (retries too) takes a token; the wait never crosses the deadline."""
    left = None if state.deadline_at is None else state.deadline_at - clock()
    try:
        granted = await limiter.acquire(timeout=left)
    except RateLimiterUnavailable as unavailable:
        # On a retry, what the earlier attempts did decides whether the call may have
        # taken effect (a bulk run must not forget a row whose first attempt got a 503).
        unavailable.method, unavailable.url = request.method, request.url
        unavailable.attempts = state.attempt - 1
        unavailable.idempotency_key = request.idempotency_key
        raise state.marked(unavailable) from state.last_error
    if not granted:
        error = deadline_error(request, state, state.attempt - 1, state.last_error)
        error.message += "; waiting for a rate-limit token (rate_limit=) would have crossed it"
        error.args = (error.message,)
        raise error from state.last_error
    if calls.closed:
        raise _closed(request, state, state.attempt - 1, sending=False) from state.last_error


async def _rekeyed(
    request: Request,
    state: CallState,
    client: ClientParts,
    refused: Failure,
    sent_at: float,
    clock: Callable[[], float],
) -> Request | None:
    """`request` carrying a new key after its attempt (started at `sent_at`) got a 401, or
    `None` (the key is fixed or did not change, or the call was repeated for its key already):
    the call is then repeated once, whatever its method.

    That repeat is always safe: a 401 means the server refused the request before processing it
    (nothing was created or changed), so sending it again cannot apply it twice. It is not a
    retry of a failure (`max_retries`, the backoff and the retry budget do not apply), but it is
    an attempt: it takes a rate-limit token and stays within the call's deadline, as does the
    wait for the key function (the ask goes on for the other calls sharing it).
    """
    name = next((name for name in request.headers if name.lower() == "x-api-key"), None)
    if name is None or state.rekeyed:
        return None
    left = None if state.deadline_at is None else state.deadline_at - clock()
    if left is not None and left <= 0:
        return None  # no time for a repeat: the 401 stands
    state.last_error = refused.error
    try:
        fresh = await asyncio.wait_for(client.refresh_key(request.headers[name], sent_at), left)
    except asyncio.TimeoutError:
        error = deadline_error(request, state, state.attempt, refused.error)
        error.message += "; it ran out waiting for the api_key function to give a new key"
        error.args = (error.message,)
        raise error from refused.error
    if fresh is None:
        return None
    state.rekeyed = True
    logger.debug(
        "%s %s got a 401; repeating it once with the new key from the api_key function",
        request.method,
        log_path(request.url),
    )
    headers = dict(request.headers)
    headers[name] = HeaderSecret(fresh)
    return attrs.evolve(request, headers=headers)


def _closed(request: Request, state: CallState, attempts: int, *, sending: bool) -> FinalPOSError:
    """`ClientClosedError` for a call `close()` ended after `attempts` attempts."""
    return closed_in_flight(
        maybe_processed=state.maybe_processed or sending,
        method=request.method,
        url=request.url,
        attempts=attempts,
        idempotency_key=request.idempotency_key,
    )


def attempt_timeout(request: Request, state: CallState, now: float) -> float | None:
    """What is left of the deadline for this attempt (raises when nothing is)."""
    if state.deadline_at is None:
        return None
    left = state.deadline_at - now
    if left <= 0:
        raise deadline_error(request, state, state.attempt - 1, state.last_error) from (
            state.last_error
        )
    deadline = request.deadline
    if state.attempt == 1 and deadline is not None and deadline - left < DEADLINE_SLACK:
        # A first attempt that starts at once gets the whole deadline: a value that repeats,
        # so the transport reuses its timeout object (within timer slack).
        return deadline
    return left


def transport_failure(
    request: Request, state: CallState, exc: TransportError, now: float
) -> Failure:
    """Classify a transport failure (raises at once when the deadline cut the attempt short)."""
    # A malformed answer's text may quote what the server sent back, the key included: mask it
    # in the TransportError itself, which the caller's error is chained to.
    message = mask_text(exc.message, secrets_in(request.headers))
    if message is not exc.message:
        exc.message, exc.args = message, (message,)
    # Nor is it chained to what the transport raised it during (aiohttp's exception carries the
    # request's headers). `AiohttpTransport` raises it after its `except` blocks, but on Python
    # 3.10 a task that the pure-Python `asyncio.Task` resumed with an exception (as
    # pytest-asyncio's runner does) is still handling that exception until it next suspends.
    exc.__context__ = None
    state.maybe_processed = state.maybe_processed or may_have_taken_effect(exc.kind)
    if state.deadline_at is not None and now >= state.deadline_at - DEADLINE_SLACK:
        # The previous attempt's failure (if any) is the one worth reporting.
        raise deadline_error(request, state, state.attempt, state.last_error) from exc
    error = state.marked(connection_error(request, exc, state.attempt))
    retryable = should_retry(
        request.method, exc.kind, unsafe_ok=request.unsafe_ok, strict=request.strict
    )
    return Failure(error, retryable, exc.kind.is_timeout, None, exc)


def status_failure(
    request: Request,
    state: CallState,
    raw: RawResponse[Any],
    policy: RetryPolicy,
) -> Failure:
    """Classify an error status (raises at once for a `Retry-After` over the cap)."""
    status = raw.status_code
    # Only statuses we might retry ask for a wait; parsing costs nothing on the success path.
    retry_after = parse_retry_after(raw.headers) if status in policy.retryable_statuses else None
    state.maybe_processed = state.maybe_processed or may_have_taken_effect(
        FailureKind.STATUS, status
    )
    error = state.marked(make_status_error(raw, retry_after=retry_after))
    if retry_after is not None and retry_after > policy.retry_after_cap:
        # A long stall is the caller's decision, not ours: raise at once.
        raise error
    retryable = should_retry(
        request.method,
        FailureKind.STATUS,
        status=status,
        has_retry_after=retry_after is not None,
        unsafe_ok=request.unsafe_ok,
        strict=request.strict,
        retryable_statuses=policy.retryable_statuses,
    )
    return Failure(error, retryable, False, retry_after, None)


def _next_delay(
    request: Request,
    state: CallState,
    failure: Failure,
    policy: RetryPolicy,
    budget: RetryBudget | None,
    now: float,
) -> float:
    """The wait before the next attempt; raises the failure when no retry may follow."""
    error = failure.error
    if not failure.retryable or state.attempt > request.max_retries:
        raise error from failure.cause
    state.last_error = error
    delay = policy.delay(state.attempt - 1, failure.retry_after)
    if state.deadline_at is not None and now + delay >= state.deadline_at:
        # No sleep crosses the deadline.
        raise deadline_error(request, state, state.attempt, error) from error
    if budget is not None:
        cost = budget.acquire(timeout=failure.timed_out)
        if cost is None:
            logger.debug(
                "retry budget exhausted; not retrying %s %s",
                request.method,
                log_path(request.url),
            )
            raise error from failure.cause
        state.last_cost = cost
    return delay


def connection_error(request: Request, exc: TransportError, attempts: int) -> APIConnectionError:
    """The caller-facing error for a transport failure (`APITimeoutError` for timeouts)."""
    kind = _TIMEOUT_KINDS.get(exc.kind)
    if kind is not None:
        return APITimeoutError(
            exc.message,
            kind=kind,
            method=request.method,
            url=request.url,
            attempts=attempts,
            idempotency_key=request.idempotency_key,
        )
    return APIConnectionError(
        exc.message,
        method=request.method,
        url=request.url,
        attempts=attempts,
        idempotency_key=request.idempotency_key,
    )


def deadline_error(
    request: Request, state: CallState, attempts: int, last_error: FinalPOSError | None
) -> APITimeoutError:
    """The call's deadline ran out after `attempts` attempts (`last_error`: the latest failure)."""
    message = f"the call's deadline of {request.deadline:g} s ran out after {attempts} " + (
        "attempt" if attempts == 1 else "attempts"
    )
    if last_error is not None:
        message += f"; last error: {last_error.headline}"
    error = APITimeoutError(
        message,
        kind="deadline",
        method=request.method,
        url=request.url,
        attempts=attempts,
        idempotency_key=request.idempotency_key,
        last_error=last_error,
    )
    return state.marked(error)


def to_raw(
    request: Request, response: TransportResponse, elapsed: float, attempts: int
) -> RawResponse[Any]:
    """The caller-facing `RawResponse` for the final attempt."""
    headers: Mapping[str, str] = response.headers
    request_id = None
    for name in REQUEST_ID_HEADERS:
        request_id = headers.get(name)
        if request_id:
            break
    # By position (one per call: ten keywords cost more than building the object): status_code,
    # headers, content, elapsed, attempts, request_id, method, url, idempotency_key,
    # request_headers, as `RawResponse` declares them.
    raw: RawResponse[Any] = RawResponse(
        response.status,
        headers,
        response.content,
        elapsed,
        attempts,
        request_id,
        request.method,
        request.url,
        request.idempotency_key,
        request.headers,
    )
    # An error status is masked at once, so that no frame (whose locals a traceback may render)
    # holds a server's echo of the key; a 2xx body is the caller's data and is kept as it came.
    return raw if 200 <= response.status < 300 else raw.redacted()


def closed_error() -> RuntimeError:
    """The error for using a client after `close()`."""
    return RuntimeError(
        "this AsyncFinalPOS is closed and cannot be used again; create a new client "
        "(or keep one open for the life of your app with `async with`)"
    )


def _log_attempt(request: Request, status: object, attempt: int, elapsed: float) -> None:
    logger.info(
        "%s %s -> %s attempt=%d elapsed_ms=%.1f",
        request.method,
        log_path(request.url),
        status,
        attempt,
        elapsed * 1000,
    )


def log_path(url: str) -> str:
    """The URL's path only: the query string may carry customer data (headers never logged)."""
    path = url.split("?", 1)[0]
    scheme_end = path.find("://")
    if scheme_end != -1:
        slash = path.find("/", scheme_end + 3)
        path = path[slash:] if slash != -1 else "/"
    return path
