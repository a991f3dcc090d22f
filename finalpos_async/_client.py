"""`AsyncFinalPOS`: configuration, lifecycle and the request loop (auth, retries, deadline)."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import os
import platform
import re
import uuid
import warnings
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import aiohttp
import attrs

from . import _codec
from ._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    CONNECT_TIMEOUT,
    DEADLINE,
    DEFAULT_BASE_URL,
    MAX_RESPONSE_BYTES,
    POOL_LIMIT,
    POOL_LIMIT_PER_HOST,
    POOL_TIMEOUT,
    READ_TIMEOUT,
    REQUEST_ID_HEADERS,
    RETRY_BUDGET_TOKENS,
    SANDBOX_API_KEY,
    SANDBOX_ENV,
)
from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    FinalPOSError,
    ResponseValidationError,
    TimeoutKind,
    make_status_error,
)
from ._logging import logger, setup_logging
from ._rate_limit import RateLimiter
from ._response import RawResponse
from ._retry import (
    IDEMPOTENT_METHODS,
    FailureKind,
    RetryBudget,
    RetryPolicy,
    may_have_taken_effect,
    parse_retry_after,
    safe_retries_only_active,
    should_retry,
)
from ._transport import AttemptResult, Transport, TransportError, flatten_params
from ._types import DEFAULT_OPTIONS, NOT_GIVEN, NotGiven, NotGivenOr, RequestOptions
from ._urls import normalize_base_url
from ._version import __version__
from .resources import AsyncResourcesMixin

if TYPE_CHECKING:
    from ._resource import RequestSender
    from .bulk import BulkRunner


class _SandboxLike(Protocol):
    """What the client needs of `finalpos_async.sandbox.Sandbox`."""

    @property
    def url(self) -> str: ...

    @property
    def api_key(self) -> str: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


__all__ = ["AsyncFinalPOS", "ClientState"]

ClientState = Literal["new", "open", "closed"]
"""`new`: no connection yet; `open`: the pool exists, bound to one loop; `closed`: for good."""

_ClientT = TypeVar("_ClientT", bound="AsyncFinalPOS")

USER_AGENT = (
    f"finalpos-python/{__version__} python/{platform.python_version()} "
    f"aiohttp/{aiohttp.__version__}"
)

_TRUTHY = frozenset({"1", "true", "yes", "on"})
_TIMEOUT_KINDS: dict[FailureKind, TimeoutKind] = {
    FailureKind.CONNECT_TIMEOUT: "connect",
    FailureKind.POOL_TIMEOUT: "pool",
    FailureKind.READ_TIMEOUT: "read",
}
# A timer firing up to this close to the deadline counts as the deadline (timer granularity).
_DEADLINE_SLACK = 0.005


@attrs.frozen(kw_only=True)
class _Config:
    """The settings of one client view (a `with_options` copy gets its own)."""

    api_key: str | None = attrs.field(repr=False)
    base_url: str | None  # None: taken from the embedded sandbox once it runs
    timeout: float | None
    deadline: float | None
    policy: RetryPolicy
    default_headers: Mapping[str, str]
    allow_insecure_http: bool


class _Core:
    """What a client and all its `with_options` views share: pool, retry budget, sandbox, state.

    Only the client that created it closes it.
    """

    __slots__ = (
        "budget",
        "limiter",
        "loop",
        "sandbox",
        "sandbox_api_key",
        "sandbox_lock",
        "sandbox_mode",
        "sleep",
        "state",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        budget: RetryBudget | None,
        *,
        sandbox_mode: bool,
        sandbox_api_key: str | None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.transport = transport
        self.budget = budget
        # One token per HTTP attempt, shared by every with_options view (and bulk run).
        self.limiter = limiter
        self.state: ClientState = "new"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sandbox_mode = sandbox_mode
        self.sandbox_api_key = sandbox_api_key
        self.sandbox: _SandboxLike | None = None
        self.sandbox_lock: asyncio.Lock | None = None
        # Backoff waits go through here; tests swap in a recorder to make retries instant.
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def __del__(self) -> None:
        # Never schedule work on a loop here (it may be closed or belong to another thread):
        # a ResourceWarning is all we do; cleanup is `await client.close()` / `async with`.
        if self.state == "open" and self.transport.owns_session:
            session = self.transport.session
            if session is not None and not session.closed:
                warnings.warn(
                    "AsyncFinalPOS was not closed; use `async with AsyncFinalPOS() as client:` "
                    "or `await client.close()`",
                    ResourceWarning,
                    source=self,
                    stacklevel=1,
                )


class AsyncFinalPOS(AsyncResourcesMixin):
    """The async client for the Final POS REST API.

    ```python
    async with AsyncFinalPOS() as client:          # key from FINALPOS_API_KEY
        customers = await client.request("GET", "/v1/api/customers", params={"limit": 10})
    ```

    Configuration: arguments win over environment variables (`FINALPOS_API_KEY`,
    `FINALPOS_BASE_URL`, `FINALPOS_SANDBOX`), which win over the defaults in `_constants.py`.

    - `timeout`: read timeout per attempt (seconds, `None` for none); `connect_timeout` bounds
      opening a socket, `pool_timeout` getting a ready connection (waiting for a free pool slot
      plus connecting); running out of either is never a processed request, so it is retried.
    - `deadline`: the whole logical call, across every attempt and backoff sleep (default 120 s).
    - `max_retries`, `backoff_base`, `backoff_cap`, `retry_after_cap`: the retry policy
      (`_retry.py`; `None` keeps the default: 3 retries, 0.5 s base, 8 s cap, 60 s cap on
      `Retry-After`); `retry_budget` is the client-wide retry token bucket (`None` disables it).
    - `rate_limit`: requests per second (token bucket, bursts of one second's worth), or a
      `RateLimiter` to share one cap between clients; `None` (default) for no cap. A token is
      taken before every HTTP attempt, retries included, and shared by every `with_options` copy
      and bulk run of this client; a call whose deadline would pass while it waits for a token
      raises `APITimeoutError` (kind "deadline") without sending.
    - `pool_limit`, `pool_limit_per_host`: connection pool size.
    - `session`: an `aiohttp.ClientSession` of your own; it is used as is and never closed by us.
    - `sandbox=True` (or `FINALPOS_SANDBOX=1`): start the embedded sandbox server on the first
      request and talk to it; it stops on `close()`.
    - `allow_insecure_http=True`: allow `http://` to a non-local host (the key travels in clear).
    - `max_response_bytes`: the largest response body accepted, counted after decompression
      (default 32 MiB); a larger one raises `APIConnectionError` and is not retried.
    - `insecure_skip_tls_verify=True`: do not verify the server's TLS certificate. Verification
      is on by default; this explicit opt-out exists for test rigs with self-signed
      certificates and should never be used against the real API.

    **States**: `new` (created, no connection yet) → `open` (first request made the pool inside
    the running loop and bound the client to that loop) → `closed` (after `close()`; for good:
    a closed client cannot be reopened, make a new one).

    **Threads and loops**: one client belongs to one event loop; any number of tasks on that
    loop may share it (create it once per process/app and reuse it). It is not thread-safe:
    from other threads use `finalpos_sync.FinalPOS`. Awaiting it from another loop raises a
    `RuntimeError` saying so.
    """

    _core: _Core
    _config: _Config
    _owns_core: bool
    _base_headers: dict[str, str] | None

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = READ_TIMEOUT,
        connect_timeout: float | None = CONNECT_TIMEOUT,
        pool_timeout: float | None = POOL_TIMEOUT,
        deadline: float | None = DEADLINE,
        max_retries: int | None = None,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        retry_after_cap: float | None = None,
        retry_budget: int | None = RETRY_BUDGET_TOKENS,
        rate_limit: float | RateLimiter | None = None,
        pool_limit: int = POOL_LIMIT,
        pool_limit_per_host: int = POOL_LIMIT_PER_HOST,
        default_headers: Mapping[str, str] | None = None,
        sandbox: bool | None = None,
        session: aiohttp.ClientSession | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        insecure_skip_tls_verify: bool = False,
    ) -> None:
        setup_logging()
        if sandbox is None:
            sandbox = os.environ.get(SANDBOX_ENV, "").strip().lower() in _TRUTHY
        if sandbox:
            if base_url is not None:
                raise ValueError("base_url and sandbox=True exclude each other; pass only one")
            if session is not None:
                raise ValueError("session and sandbox=True exclude each other; pass only one")
            if api_key is not None:
                _check_api_key(api_key)
            resolved_key = None
            resolved_url = None
        else:
            resolved_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
            if resolved_key is None or not resolved_key.strip():
                raise FinalPOSError(
                    f"No API key: pass AsyncFinalPOS(api_key=...) or set the {API_KEY_ENV} "
                    "environment variable (or use sandbox=True for the local sandbox)"
                )
            _check_api_key(resolved_key)
            # An empty FINALPOS_BASE_URL counts as unset; an empty argument is an error.
            raw_url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or None
            resolved_url = normalize_base_url(
                raw_url if raw_url is not None else DEFAULT_BASE_URL,
                allow_insecure_http=allow_insecure_http,
            )
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        _check_int("pool_limit", pool_limit, minimum=1)
        _check_int("pool_limit_per_host", pool_limit_per_host, minimum=0)
        _check_int("max_response_bytes", max_response_bytes, minimum=1)
        if not isinstance(insecure_skip_tls_verify, bool):
            raise TypeError(
                f"insecure_skip_tls_verify must be a bool, got {insecure_skip_tls_verify!r}"
            )
        if insecure_skip_tls_verify:
            logger.warning(
                "TLS certificate verification is OFF (insecure_skip_tls_verify=True); "
                "anyone on the network path can read the API key"
            )
        transport = Transport(
            connect_timeout=_check_seconds("connect_timeout", connect_timeout),
            pool_timeout=_check_seconds("pool_timeout", pool_timeout),
            limit=pool_limit,
            limit_per_host=pool_limit_per_host,
            external_session=session,
            max_response_bytes=max_response_bytes,
            verify_tls=not insecure_skip_tls_verify,
        )
        if retry_budget is None:
            budget = None
        else:
            _check_int("retry_budget", retry_budget, minimum=0)
            budget = RetryBudget(retry_budget)
        self._core = _Core(
            transport,
            budget,
            sandbox_mode=bool(sandbox),
            sandbox_api_key=api_key,
            limiter=_make_limiter(rate_limit),
        )
        self._owns_core = True
        self._base_headers = None
        self._config = _Config(
            api_key=resolved_key,
            base_url=resolved_url,
            timeout=_check_seconds("timeout", timeout),
            deadline=_check_seconds("deadline", deadline),
            policy=_make_policy(
                RetryPolicy(), max_retries, backoff_base, backoff_cap, retry_after_cap
            ),
            default_headers=_check_headers("default_headers", default_headers),
            allow_insecure_http=allow_insecure_http,
        )

    # ----------------------------------------------------------------------------- options

    def with_options(
        self: _ClientT,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: NotGivenOr[float | None] = NOT_GIVEN,
        deadline: NotGivenOr[float | None] = NOT_GIVEN,
        max_retries: int | None = None,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        retry_after_cap: float | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> _ClientT:
        """A light copy with other settings that shares this client's pool, budget and sandbox.

        The copy never owns or closes the pool (its `close()` does nothing); close the original.
        Making one is cheap: nothing is registered anywhere, so discarded copies are simply freed.
        `default_headers` are merged over this client's.
        """
        cfg = self._config
        new_url = cfg.base_url
        if base_url is not None:
            new_url = normalize_base_url(base_url, allow_insecure_http=cfg.allow_insecure_http)
        if api_key is not None:
            _check_api_key(api_key)
        headers = cfg.default_headers
        if default_headers is not None:
            headers = {**headers, **_check_headers("default_headers", default_headers)}
        config = _Config(
            api_key=api_key if api_key is not None else cfg.api_key,
            base_url=new_url,
            timeout=cfg.timeout
            if isinstance(timeout, NotGiven)
            else _check_seconds("timeout", timeout),
            deadline=cfg.deadline
            if isinstance(deadline, NotGiven)
            else _check_seconds("deadline", deadline),
            policy=_make_policy(
                cfg.policy, max_retries, backoff_base, backoff_cap, retry_after_cap
            ),
            default_headers=headers,
            allow_insecure_http=cfg.allow_insecure_http,
        )
        # Not copy.copy(): per-client caches (resources, headers) must not be shared.
        view = type(self).__new__(type(self))
        view._core = self._core
        view._config = config
        view._owns_core = False
        view._base_headers = None
        return view

    # --------------------------------------------------------------------------- properties

    @property
    def state(self) -> ClientState:
        """`new`, `open` or `closed` (shared by every `with_options` copy)."""
        return self._core.state

    @property
    def is_closed(self) -> bool:
        """True once `close()` ran on the client that owns the pool."""
        return self._core.state == "closed"

    @property
    def base_url(self) -> str | None:
        """The API root (`None` in sandbox mode until the sandbox has started)."""
        cfg = self._config
        if cfg.base_url is None and self._core.sandbox is not None:
            return str(self._core.sandbox.url).rstrip("/")
        return cfg.base_url

    @property
    def credentials_fingerprint(self) -> str:
        """A one-way fingerprint of the API key (16 hex digits of a SHA-256), safe to store.

        It tells two keys apart without revealing either; bulk journals record it so that a
        journal is never resumed with other credentials.
        """
        core = self._core
        key = self._config.api_key
        if key is None and core.sandbox is not None:
            key = core.sandbox.api_key
        if key is None:
            key = core.sandbox_api_key or SANDBOX_API_KEY
        return hashlib.sha256(b"finalpos-credentials:" + key.encode()).hexdigest()[:16]

    @property
    def is_embedded_sandbox(self) -> bool:
        """True when this client runs its own in-memory sandbox (`sandbox=True`).

        Its data dies with the client, so nothing recorded against it can be resumed later.
        """
        return self._core.sandbox_mode

    @property
    def timeout(self) -> float | None:
        """The read timeout per attempt, in seconds."""
        return self._config.timeout

    @property
    def deadline(self) -> float | None:
        """The time budget of one logical call across all attempts, in seconds."""
        return self._config.deadline

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt."""
        return self._config.policy.max_retries

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry settings of this client."""
        return self._config.policy

    @property
    def retry_budget(self) -> RetryBudget | None:
        """The client-wide retry token bucket (shared with `with_options` copies)."""
        return self._core.budget

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """The requests-per-second limiter every attempt waits on (shared with `with_options`)."""
        return self._core.limiter

    @property
    def bulk(self) -> BulkRunner:
        """Bulk operations over many inputs: `await client.bulk.run(client.customers.create, rows)`.

        Concurrency is capped at this client's pool; see `finalpos_async.bulk.BulkRunner.run`.
        """
        from .bulk import BulkRunner  # lazily: sqlite3 and the engine only when bulk is used

        return BulkRunner(self)

    @property
    def pool_limit_per_host(self) -> int:
        """Connections this client opens to one host at most (the pool's limit if unlimited)."""
        transport = self._core.transport
        return transport.limit_per_host or transport.limit

    def __repr__(self) -> str:
        # Never the API key.
        return (
            f"<{type(self).__name__} base_url={self.base_url!r} state={self._core.state!r}"
            f"{'' if self._owns_core else ' (with_options copy)'}>"
        )

    # ---------------------------------------------------------------------------- lifecycle

    async def __aenter__(self: _ClientT) -> _ClientT:
        if self._core.state == "closed":
            raise RuntimeError(
                "this AsyncFinalPOS is closed and cannot be reopened; create a new client"
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pool (and the sandbox, if this client started it). Idempotent.

        On a `with_options` copy this does nothing: the original owns the pool. A session passed
        in with `session=` is left open.
        """
        if not self._owns_core:
            return
        core = self._core
        if core.state == "closed":
            return
        if core.loop is not None:
            running = asyncio.get_running_loop()
            if core.loop is not running and not core.loop.is_closed():
                raise RuntimeError(
                    "AsyncFinalPOS.close() was awaited on a different event loop than the one "
                    "the client was opened on; close it on its own loop"
                )
        core.state = "closed"
        sandbox, core.sandbox = core.sandbox, None
        try:
            if core.loop is None or not core.loop.is_closed():
                await core.transport.close()
            else:
                # Its loop is gone, and the sockets with it; just drop the references.
                core.transport.closed = True
                core.transport.session = None
        finally:
            if sandbox is not None:
                await sandbox.close()

    # -------------------------------------------------------------------------- requests

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: NotGivenOr[float | None] = NOT_GIVEN,
        deadline: NotGivenOr[float | None] = NOT_GIVEN,
        max_retries: NotGivenOr[int] = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        retry_unsafe: bool | None = None,
    ) -> Any:
        """Call any route of the API and return the parsed JSON (the escape hatch).

        `path` is the URL path below the base URL, already percent-encoded (build parameters with
        `encode_path_param`), e.g. `"/v1/api/customers"`. Auth, retries, deadline and errors are
        the same as for the typed methods; a non-2xx answer raises the matching `APIStatusError`.
        """
        options = RequestOptions(
            timeout=timeout,
            deadline=deadline,
            max_retries=max_retries,
            extra_headers=extra_headers,
            idempotency_key=idempotency_key,
            retry_unsafe=retry_unsafe,
        )
        raw = await self._request(method, path, params=params, json=json, options=options)
        try:
            return raw.json()
        except ValueError as exc:
            raise ResponseValidationError(
                f"the {raw.status_code} response body is not valid JSON: {exc}", response=raw
            ) from exc

    def _sender(self) -> RequestSender:
        # The resources (built by `AsyncResourcesMixin`) and their paginators call this bound
        # method for every request.
        return self._request

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        options: RequestOptions = DEFAULT_OPTIONS,
    ) -> RawResponse[Any]:
        """One logical call: auth, retries, deadline. Non-2xx raises the typed error."""
        core = self._core
        loop = self._check_usable()
        if core.sandbox_mode and core.sandbox is None:
            await self._start_sandbox()
        cfg = self._config
        method = _check_method(method)
        url = self._url(path)

        read_timeout = cfg.timeout
        deadline = cfg.deadline
        policy = cfg.policy
        max_retries = policy.max_retries
        if options is not DEFAULT_OPTIONS:  # the shared default overrides nothing
            if not isinstance(options.timeout, NotGiven):
                read_timeout = _check_seconds("timeout", options.timeout)
            if not isinstance(options.deadline, NotGiven):
                deadline = _check_seconds("deadline", options.deadline)
            if not isinstance(options.max_retries, NotGiven):
                max_retries = _check_int("max_retries", options.max_retries, minimum=0)

        query = flatten_params(params)
        if options.extra_query:
            query.extend(flatten_params(options.extra_query))
        data = _encode_body(json) if json is not None else None

        # One key per logical call, reused on every attempt (a new key per retry would defeat it).
        idempotency_key = options.idempotency_key
        if idempotency_key is not None:
            _check_header_value("idempotency_key", idempotency_key)
        if idempotency_key is None and method not in IDEMPOTENT_METHODS:
            idempotency_key = _new_idempotency_key()
        # An explicit key (or retry_unsafe=True) is the caller's word that a repeat is harmless;
        # retry_unsafe=False (or a bulk run's safe_retries_only) takes that word back.
        strict = options.retry_unsafe is False or safe_retries_only_active()
        unsafe_ok = not strict and (
            options.retry_unsafe is True or options.idempotency_key is not None
        )
        # Whether some attempt of this call may have been processed: carried by the final error.
        maybe_processed = False
        headers = self._headers(data is not None, idempotency_key, options.extra_headers)

        transport = core.transport
        budget = core.budget
        limiter = core.limiter
        log_info = logger.isEnabledFor(logging.INFO)
        start = loop.time()
        deadline_at = None if deadline is None else start + deadline
        attempt = 0
        last_cost = 0
        last_error: FinalPOSError | None = None

        def out_of_time(attempts: int, last: FinalPOSError | None) -> APITimeoutError:
            error = self._deadline_error(
                deadline, method, url, attempts, idempotency_key, last_error=last
            )
            return _marked(error, maybe_processed)

        while True:
            attempt += 1
            if limiter is not None:
                # Every attempt (retries too) takes a token; the wait counts against the deadline
                # and is never allowed to cross it.
                left = None if deadline_at is None else deadline_at - loop.time()
                if not await limiter.acquire(timeout=left):
                    raise _rate_limit_deadline_error(
                        out_of_time(attempt - 1, last_error)
                    ) from last_error
                if core.state == "closed":
                    raise _closed_error() from last_error
            total_timeout = None
            if deadline_at is not None:
                total_timeout = deadline_at - loop.time()
                if total_timeout <= 0:
                    raise out_of_time(attempt - 1, last_error) from last_error
                if (
                    attempt == 1
                    and deadline is not None
                    and deadline - total_timeout < _DEADLINE_SLACK
                ):
                    # A first attempt that starts at once gets the whole deadline: a value that
                    # repeats, so the transport reuses its timeout object (within timer slack).
                    total_timeout = deadline
            attempt_start = loop.time()
            retry_after: float | None = None
            error: FinalPOSError
            try:
                result = await transport.send(
                    method,
                    url,
                    headers=headers,
                    params=query,
                    data=data,
                    read_timeout=read_timeout,
                    total_timeout=total_timeout,
                )
            except TransportError as exc:
                now = loop.time()
                if log_info:
                    _log_attempt(method, url, exc.kind.value, attempt, now - attempt_start)
                maybe_processed = maybe_processed or may_have_taken_effect(exc.kind)
                if deadline_at is not None and now >= deadline_at - _DEADLINE_SLACK:
                    # The deadline cut this attempt short: the previous attempt's failure (if
                    # any) is the one worth reporting.
                    raise out_of_time(attempt, last_error) from exc
                error = _connection_error(exc, method, url, attempt, idempotency_key)
                retryable = should_retry(method, exc.kind, unsafe_ok=unsafe_ok, strict=strict)
                timed_out = exc.kind.is_timeout
                cause: BaseException = exc
            else:
                now = loop.time()
                if log_info:
                    _log_attempt(method, url, result.status, attempt, now - attempt_start)
                raw = self._raw(result, method, url, now - start, attempt, idempotency_key)
                if 200 <= result.status < 300:
                    if budget is not None:
                        budget.record_success(last_cost)
                    return raw
                retry_after = _retry_after(result, policy)
                maybe_processed = maybe_processed or may_have_taken_effect(
                    FailureKind.STATUS, result.status
                )
                status_error = _marked(
                    make_status_error(raw, retry_after=retry_after, secret=_api_key_sent(headers)),
                    maybe_processed,
                )
                if retry_after is not None and retry_after > policy.retry_after_cap:
                    # A long stall is the caller's decision, not ours: raise at once.
                    raise status_error
                error = status_error
                retryable = should_retry(
                    method,
                    FailureKind.STATUS,
                    status=result.status,
                    has_retry_after=retry_after is not None,
                    unsafe_ok=unsafe_ok,
                    strict=strict,
                    retryable_statuses=policy.retryable_statuses,
                )
                timed_out = False
                cause = status_error

            _marked(error, maybe_processed)
            if not retryable or attempt > max_retries:
                raise error from (cause if cause is not error else None)
            last_error = error
            delay = policy.delay(attempt - 1, retry_after)
            if deadline_at is not None and loop.time() + delay >= deadline_at:
                # No sleep crosses the deadline.
                raise out_of_time(attempt, error) from error
            if budget is not None:
                cost = budget.acquire(timeout=timed_out)
                if cost is None:
                    logger.debug(
                        "retry budget exhausted; not retrying %s %s", method, _log_path(url)
                    )
                    raise error from (cause if cause is not error else None)
                last_cost = cost
            logger.debug(
                "retrying %s %s in %.3f s (attempt %d failed: %s)",
                method,
                _log_path(url),
                delay,
                attempt,
                error.message,
            )
            await core.sleep(delay)
            if core.state == "closed":
                raise _closed_error() from error

    # -------------------------------------------------------------------------- helpers

    def _check_usable(self) -> asyncio.AbstractEventLoop:
        core = self._core
        loop = asyncio.get_running_loop()
        if core.loop is loop:
            if core.state == "closed":
                raise _closed_error()
            return loop
        if core.state == "closed":
            raise _closed_error()
        if core.loop is not None:
            raise RuntimeError(
                "this AsyncFinalPOS is bound to the event loop it first ran on, and is being used "
                "from another loop; create one client per event loop (for example inside the "
                "coroutine you pass to asyncio.run), or use finalpos_sync.FinalPOS from threads"
            )
        # First use: bind to this loop and make the pool inside it.
        core.transport.ensure_session()
        core.loop = loop
        core.state = "open"
        return loop

    async def _start_sandbox(self) -> None:
        core = self._core
        if core.sandbox_lock is None:
            core.sandbox_lock = asyncio.Lock()
        async with core.sandbox_lock:
            if core.sandbox is not None:
                return
            if core.state == "closed":
                raise _closed_error()
            # Imported lazily: the sandbox pulls in the server side, which most users never need.
            # Imported lazily: the sandbox pulls in the server side, which most users never need.
            sandbox_cls = importlib.import_module("finalpos_async.sandbox").Sandbox
            sandbox: _SandboxLike = (
                sandbox_cls()
                if core.sandbox_api_key is None
                else sandbox_cls(api_key=core.sandbox_api_key)
            )
            await sandbox.start()
            core.sandbox = sandbox

    def _url(self, path: str) -> str:
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, got {type(path).__name__}")
        if not path.startswith("/") or "://" in path:
            raise ValueError(
                f"path must be a URL path starting with '/', such as '/v1/api/customers'; "
                f"got {path!r}"
            )
        if _CONTROL_CHAR.search(path):
            raise ValueError(
                "path must not contain control characters (CR, LF, ...) or lone surrogates"
            )
        base = self._config.base_url
        if base is None:
            sandbox = self._core.sandbox
            if sandbox is None:  # pragma: no cover - _request starts it first
                raise RuntimeError("the sandbox has not started")
            base = str(sandbox.url).rstrip("/")
        return base + path

    def _headers(
        self,
        has_body: bool,
        idempotency_key: str | None,
        extra: Mapping[str, str] | None,
    ) -> dict[str, str]:
        base = self._base_headers
        if base is None:
            base = self._base_headers = self._make_base_headers()
        if not has_body and idempotency_key is None and not extra:
            # A plain GET sends the cached dict itself (no copy per call); nobody mutates it:
            # aiohttp copies it into its own CIMultiDict.
            return base
        headers = dict(base)
        if has_body:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if extra:
            _merge_headers(headers, _check_headers("extra_headers", extra))
        return headers

    def _make_base_headers(self) -> dict[str, str]:
        cfg = self._config
        api_key = cfg.api_key
        if api_key is None:
            sandbox = self._core.sandbox
            api_key = None if sandbox is None else str(sandbox.api_key)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        _merge_headers(headers, cfg.default_headers)
        if api_key:
            _merge_headers(headers, {"x-api-key": api_key})
        return headers

    def _raw(
        self,
        result: AttemptResult,
        method: str,
        url: str,
        elapsed: float,
        attempts: int,
        idempotency_key: str | None,
    ) -> RawResponse[Any]:
        request_id = None
        for name in REQUEST_ID_HEADERS:
            request_id = result.headers.get(name)
            if request_id:
                break
        return RawResponse(
            status_code=result.status,
            headers=result.headers,
            content=result.content,
            elapsed=elapsed,
            attempts=attempts,
            request_id=request_id,
            method=method,
            url=url,
            idempotency_key=idempotency_key,
        )

    @staticmethod
    def _deadline_error(
        deadline: float | None,
        method: str,
        url: str,
        attempts: int,
        idempotency_key: str | None,
        *,
        last_error: FinalPOSError | None = None,
    ) -> APITimeoutError:
        message = f"the call's deadline of {deadline:g} s ran out after {attempts} " + (
            "attempt" if attempts == 1 else "attempts"
        )
        if last_error is not None:
            message += f"; last error: {last_error.headline}"
        return APITimeoutError(
            message,
            kind="deadline",
            method=method,
            url=url,
            attempts=attempts,
            idempotency_key=idempotency_key,
            last_error=last_error,
        )


_ErrorT = TypeVar("_ErrorT", bound=FinalPOSError)


def _marked(error: _ErrorT, maybe_processed: bool) -> _ErrorT:
    """`error` with `maybe_processed` set from every attempt of the call so far."""
    error.maybe_processed = maybe_processed
    return error


def _connection_error(
    exc: TransportError, method: str, url: str, attempts: int, idempotency_key: str | None
) -> APIConnectionError:
    kind = _TIMEOUT_KINDS.get(exc.kind)
    if kind is not None:
        return APITimeoutError(
            exc.message,
            kind=kind,
            method=method,
            url=url,
            attempts=attempts,
            idempotency_key=idempotency_key,
        )
    return APIConnectionError(
        exc.message, method=method, url=url, attempts=attempts, idempotency_key=idempotency_key
    )


def _retry_after(result: AttemptResult, policy: RetryPolicy) -> float | None:
    # Only statuses we might retry ask for a wait; parsing costs nothing on the success path.
    if result.status not in policy.retryable_statuses:
        return None
    return parse_retry_after(result.headers)


def _log_attempt(method: str, url: str, status: object, attempt: int, elapsed: float) -> None:
    logger.info(
        "%s %s -> %s attempt=%d elapsed_ms=%.1f",
        method,
        _log_path(url),
        status,
        attempt,
        elapsed * 1000,
    )


def _log_path(url: str) -> str:
    """The URL's path only: the query string may carry customer data (headers never logged)."""
    path = url.split("?", 1)[0]
    scheme_end = path.find("://")
    if scheme_end != -1:
        slash = path.find("/", scheme_end + 3)
        path = path[slash:] if slash != -1 else "/"
    return path


def _make_limiter(rate_limit: object) -> RateLimiter | None:
    """The client's limiter from its `rate_limit` argument (requests per second or a limiter)."""
    if rate_limit is None or isinstance(rate_limit, RateLimiter):
        return rate_limit
    if isinstance(rate_limit, bool) or not isinstance(rate_limit, (int, float)):
        raise TypeError(
            f"rate_limit must be requests per second (a number), a RateLimiter or None, "
            f"got {rate_limit!r}"
        )
    if not (rate_limit > 0 and rate_limit != float("inf")):
        raise ValueError(
            f"rate_limit must be a finite number of requests per second > 0 (or None), "
            f"got {rate_limit!r}"
        )
    return RateLimiter(rate_limit)


def _rate_limit_deadline_error(error: APITimeoutError) -> APITimeoutError:
    """Say that the wait for a rate-limit token is what would have crossed the deadline."""
    error.message += "; waiting for a rate-limit token (rate_limit=) would have crossed it"
    error.args = (error.message,)
    return error


def _new_idempotency_key() -> str:
    """A fresh `Idempotency-Key`: a random (os.urandom) version-4 UUID.

    Kept cryptographically random on purpose: a key predictable from earlier ones could let
    another party replay or block a caller's POSTs.
    """
    return str(uuid.uuid4())


def _closed_error() -> RuntimeError:
    return RuntimeError(
        "this AsyncFinalPOS is closed and cannot be used again; create a new client "
        "(or keep one open for the life of your app with `async with`)"
    )


def _check_api_key(key: object) -> None:
    # The key itself never appears in the messages.
    if not isinstance(key, str):
        raise TypeError(f"api_key must be a str, got {type(key).__name__}")
    if not key.strip():
        raise ValueError("api_key must not be empty")
    if key != key.strip():
        # A copy-paste artefact: sent as is it fails later as a 401 that hides the cause.
        raise ValueError(
            "api_key has spaces or line breaks around it; remove them (the key itself is not "
            "shown here)"
        )
    if _CONTROL_CHAR.search(key):
        raise ValueError(
            "api_key contains control characters (CR, LF, ...) or lone surrogates; "
            "check how it is read"
        )


# The methods the generated resources send, accepted as they are without further checks.
_PLAIN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def _check_method(method: object) -> str:
    if isinstance(method, str):
        # A plain str is returned as it is; a subclass (an enum member) becomes a plain str.
        if method.__class__ is str and method in _PLAIN_METHODS:
            return method
        if method.isalpha():
            return method.upper()
    raise ValueError(f"method must be an HTTP method such as 'GET' or 'POST', got {method!r}")


def _check_seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {value!r}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds > 0 (or None), got {value!r}")
    return float(value)


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


# RFC 9110 section 5.6.2: a header name is a "token"; anything else (":", space, "\r") could
# forge another header or split the request.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# One regex scan instead of an `ord()` per character: `_url` runs it on every call.
# Lone surrogates too: aiohttp and yarl silently drop them from headers and URLs, so two
# different values ("k\ud800", "k\udc00") would go out as the same one.
_CONTROL_CHAR = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _check_headers(name: str, headers: Mapping[str, str] | None) -> Mapping[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str, got {type(headers).__name__}")
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"{name} must map str to str; {key!r} maps to {type(value).__name__}")
        if not _TOKEN_RE.fullmatch(key):
            raise ValueError(
                f"{name} has an invalid header name {key!r}; a name is letters, digits and "
                "!#$%&'*+-.^_`|~ only (no spaces, colons or control characters)"
            )
        if _CONTROL_CHAR.search(value):
            raise ValueError(
                f"{name} entry {key!r} contains control characters (CR, LF, ...) or lone surrogates"
            )
    return headers


def _api_key_sent(headers: Mapping[str, str]) -> str | None:
    for key, value in headers.items():
        if key.lower() == "x-api-key":
            return value
    return None


def _merge_headers(headers: dict[str, str], extra: Mapping[str, str]) -> None:
    """Put `extra` into `headers`, replacing any header of the same name in another case.

    Header names are case-insensitive: an override must replace ours, not be sent next to it
    (two `x-api-key` or `User-Agent` headers).
    """
    overridden = {key.lower() for key in extra}
    for key in [k for k in headers if k.lower() in overridden]:
        del headers[key]
    headers.update(extra)


def _check_header_value(name: str, value: object) -> str:
    """A value that goes into a header: a non-empty str without control characters."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    if _CONTROL_CHAR.search(value):
        # The value itself is not echoed: it could be long or sensitive.
        raise ValueError(
            f"{name} contains control characters (CR, LF, ...) or lone surrogates; they are refused"
        )
    return value


def _encode_body(json: Any) -> bytes:
    """The request body as JSON bytes; what cannot be encoded is an error naming `json`."""
    try:
        return _codec.dumps(json)
    except TypeError as exc:
        raise TypeError(f"json (the request body) cannot be encoded as JSON: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"json (the request body) cannot be encoded as JSON: {exc}") from None


def _make_policy(
    base: RetryPolicy,
    max_retries: int | None,
    backoff_base: float | None,
    backoff_cap: float | None,
    retry_after_cap: float | None,
) -> RetryPolicy:
    changes: dict[str, Any] = {}
    if max_retries is not None:
        changes["max_retries"] = max_retries
    if backoff_base is not None:
        changes["backoff_base"] = backoff_base
    if backoff_cap is not None:
        changes["backoff_cap"] = backoff_cap
    if retry_after_cap is not None:
        changes["retry_after_cap"] = retry_after_cap
    return attrs.evolve(base, **changes) if changes else base
