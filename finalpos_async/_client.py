"""`AsyncFinalPOS`: configuration, lifecycle, the resources and the escape hatch.

A call is built into a `Request` value (`_request.py`) and sent by the retry loop
(`_retry_loop.py`) through the client's `Transport` (`_transport/`).
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Awaitable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._checks import check_method, check_path, merge_headers
from ._config import (
    ClientSettings,
    make_budget,
    make_limiter,
    resolve_endpoint,
    resolve_settings,
)
from ._constants import (
    CLOSE_UNWIND_TIMEOUT,
    CONNECT_TIMEOUT,
    DEADLINE,
    MAX_RESPONSE_BYTES,
    POOL_LIMIT,
    POOL_LIMIT_PER_HOST,
    POOL_TIMEOUT,
    READ_TIMEOUT,
    RETRY_BUDGET_TOKENS,
)
from ._core import ClientCore, ClientState
from ._exceptions import APITimeoutError, ResponseValidationError
from ._inflight import closed_in_flight
from ._key_source import KeyFunction
from ._limiter import Limiter
from ._logging import setup_logging
from ._middleware import Middleware
from ._request import build_request, call_deadline
from ._response import RawResponse
from ._retry import RetryBudget, RetryPolicy
from ._retry_loop import closed_error, send_with_retries, with_middleware
from ._secret import HeaderSecret, conceal, conceal_url, fingerprint
from ._transport import (
    AIOHTTP_VERSION,
    AiohttpTransport,
    ClientSession,
    PoolSettings,
    Transport,
    make_transport,
)
from ._types import DEFAULT_OPTIONS, NOT_GIVEN, NotGivenOr, RequestOptions
from ._version import __version__
from .resources import AsyncResourcesMixin

if TYPE_CHECKING:
    from ._resource import RequestSender
    from .bulk import BulkRunner


__all__ = ["AsyncFinalPOS", "ClientState"]

_ClientT = TypeVar("_ClientT", bound="AsyncFinalPOS")

USER_AGENT = (
    f"finalpos-python/{__version__} python/{platform.python_version()} aiohttp/{AIOHTTP_VERSION}"
)


class AsyncFinalPOS(AsyncResourcesMixin):
    """The async client for the Final POS REST API.

    ```python
    async with AsyncFinalPOS() as client:          # key from FINALPOS_API_KEY
        customers = await client.request("GET", "/v1/api/customers", params={"limit": 10})
    ```

    Configuration: arguments win over environment variables (`FINALPOS_API_KEY`,
    `FINALPOS_BASE_URL`, `FINALPOS_SANDBOX`), which win over the defaults in `_constants.py`.

    - `api_key`: the key (a str), or a function, sync or async, that returns it: asked when the
      client opens and again after a 401, and a call refused with a 401 is then repeated once
      with the new key if it changed (the README's "Key rotation"). `with_options` takes a str.
    - `timeout`: read timeout per attempt (seconds, `None` for none); `connect_timeout` bounds
      opening a socket, `pool_timeout` getting a ready connection (waiting for a free pool slot
      plus connecting); running out of either is never a processed request, so it is retried.
    - `deadline`: the whole logical call, across every attempt and backoff sleep (default 120 s).
    - `max_retries`, `backoff_base`, `backoff_cap`, `retry_after_cap`: the retry policy
      (`_retry.py`; `None` keeps the default: 3 retries, 0.5 s base, 8 s cap, 60 s cap on
      `Retry-After`); `retry_budget` is the client-wide retry token bucket (`None` disables it).
    - `rate_limit`: requests per second (token bucket, bursts of one second's worth), or a
      `RateLimiter` to share one cap between clients (a `RedisRateLimiter`: between processes
      and hosts); `None` (default) for no cap. A token is taken before every HTTP attempt,
      retries included, and shared by every `with_options` copy and bulk run of this client;
      a call whose deadline would pass while it waits for a token
      raises `APITimeoutError` (kind "deadline") without sending.
    - `pool_limit`, `pool_limit_per_host`: connection pool size.
    - `session`: an `aiohttp.ClientSession` of your own; it is used as is and never closed by us.
    - `proxy`: an `http://[user:password@]host[:port]` proxy every request goes through (https
      targets through a CONNECT tunnel); its password renders as `***` everywhere.
    - `trust_env` (default True, as in requests and httpx): without `proxy`, honour
      `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` and `NO_PROXY` (loopback hosts always go direct)
      and `SSL_CERT_FILE`/`SSL_CERT_DIR`, read once, here. With `session=` or `transport=`
      neither applies (`proxy` with them is an error); the embedded sandbox is always direct.
    - `transport`: any `Transport` (such as `MockTransport(handler)` in tests) instead of
      the default aiohttp one; the pool settings and `session` then do not apply, and the
      client's `close()` calls its `aclose()`.
    - `middleware`: async callables run around every HTTP attempt (`finalpos_async.Middleware`).
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

    _core: ClientCore
    _config: ClientSettings
    _owns_core: bool
    _root: str  # the base URL this view sends to, set with `_base_headers` by its first call
    _base_headers: MappingProxyType[str, str] | None
    _key_epoch: int  # the core's `key_epoch` when `_base_headers` were built

    def __init__(
        self,
        api_key: str | KeyFunction | None = None,
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
        rate_limit: float | Limiter | None = None,
        pool_limit: int = POOL_LIMIT,
        pool_limit_per_host: int = POOL_LIMIT_PER_HOST,
        default_headers: Mapping[str, str] | None = None,
        sandbox: bool | None = None,
        session: ClientSession | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        allow_insecure_http: bool = False,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        insecure_skip_tls_verify: bool = False,
        transport: Transport | None = None,
        middleware: Sequence[Middleware] | None = None,
    ) -> None:
        api_key = conceal(api_key)  # first: a failing check below must not show it in locals
        proxy = conceal_url(proxy)  # its URL may hold a password
        setup_logging()
        endpoint = resolve_endpoint(
            api_key,
            sandbox,
            base_url=base_url,
            session=session,
            transport=transport,
            allow_insecure_http=allow_insecure_http,
        )
        pool = PoolSettings(
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
            pool_limit=pool_limit,
            pool_limit_per_host=pool_limit_per_host,
            session=session,
            max_response_bytes=max_response_bytes,
            insecure_skip_tls_verify=insecure_skip_tls_verify,
            proxy=proxy,
            trust_env=trust_env,
        )
        settings = resolve_settings(
            timeout=timeout,
            deadline=deadline,
            retry={
                "max_retries": max_retries,
                "backoff_base": backoff_base,
                "backoff_cap": backoff_cap,
                "retry_after_cap": retry_after_cap,
            },
            default_headers=default_headers,
            allow_insecure_http=allow_insecure_http,
        )
        self._core = ClientCore(
            make_transport(
                pool,
                transport,
                direct=endpoint.embedded,
                plain_http=(endpoint.base_url or "").startswith("http://"),
            ),
            make_budget(retry_budget),
            make_limiter(rate_limit),
            pool,
            endpoint,
        )
        self._parts = with_middleware(self._core, middleware)
        self._owns_core = True
        self._base_headers = None
        self._key_epoch = 0
        self._config = settings

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
        middleware: Sequence[Middleware] | None = None,
    ) -> _ClientT:
        """A light copy with other settings that shares this client's pool, budget and sandbox.

        The copy never owns or closes the pool (its `close()` does nothing); close the original.
        Making one is cheap: nothing is registered anywhere, so discarded copies are simply freed.
        `default_headers` are merged over this client's; `middleware` replaces its middleware.
        """
        api_key = conceal(api_key)
        settings = self._config.evolve(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            deadline=deadline,
            retry={
                "max_retries": max_retries,
                "backoff_base": backoff_base,
                "backoff_cap": backoff_cap,
                "retry_after_cap": retry_after_cap,
            },
            default_headers=default_headers,
        )
        # Not copy.copy(): per-client caches (resources, headers) must not be shared.
        view = type(self).__new__(type(self))
        view._core = self._core
        view._config = settings
        view._owns_core = False
        view._base_headers = None
        view._key_epoch = 0
        view._parts = with_middleware(self._parts, middleware)
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
        return self._config.base_url or self._core.endpoint.base_url

    @property
    def credentials_fingerprint(self) -> str:
        """A one-way fingerprint of the API key (16 hex digits of a SHA-256), safe to store.

        It tells two keys apart without revealing either; bulk journals record it so that a
        journal is never resumed with other credentials. With `api_key=` a function it stands
        for "a key that rotates" rather than for one key: the same for every such client, and
        unchanged when the key rotates, so a journal resumes across rotations.
        """
        return fingerprint(self._config.api_key or self._core.endpoint.credentials)

    @property
    def is_embedded_sandbox(self) -> bool:
        """True when this client runs its own in-memory sandbox (`sandbox=True`).

        Its data dies with the client, so nothing recorded against it can be resumed later.
        """
        return self._core.endpoint.embedded

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
    def rate_limiter(self) -> Limiter | None:
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
    def middleware(self) -> tuple[Middleware, ...]:
        """What every HTTP attempt of this client (or view) runs through, outermost first."""
        return () if (chain := self._parts.middleware) is None else chain.middleware

    @property
    def transport(self) -> Transport:
        """What carries this client's attempts (shared with `with_options` copies).

        An `AiohttpTransport` unless `transport=` was given; closed by the client's `close()`.
        """
        return self._core.transport

    @property
    def pool_limit_per_host(self) -> int:
        """Connections this client opens to one host at most (the pool's limit if unlimited)."""
        core = self._core
        return core.pool_limit_per_host or core.pool_limit

    def __repr__(self) -> str:
        if not hasattr(self, "_config"):  # its constructor raised (shown in a traceback's locals)
            return f"<{type(self).__name__} (not constructed)>"
        return (  # never the API key
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

        It does not wait for calls in flight: each one (in any task, on any `with_options` copy)
        ends with `ClientClosedError`, whose `maybe_processed` says whether its request may have
        been sent; it returns once they have unwound. A task that was itself cancelled still
        gets `CancelledError`. Await your calls first to keep their answers.

        On a `with_options` copy this does nothing: the original owns the pool. A session passed
        in with `session=` is left open; a `transport=` given is closed (its `aclose()`).
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
        transport = core.transport
        try:
            # Before the pool closes: its close would cancel the calls waiting for a slot.
            unsent = (
                transport.waiting_for_connection if isinstance(transport, AiohttpTransport) else ()
            )
            await core.calls.abort(unsent=unsent, timeout=CLOSE_UNWIND_TIMEOUT)
        finally:
            try:
                await transport.aclose()
            finally:
                await core.endpoint.aclose()

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
        raw = await self.send(method, path, params=params, json=json, options=options)
        try:
            return raw.json()
        except ValueError as exc:
            raise ResponseValidationError(
                f"the {raw.status_code} response body is not valid JSON: {exc}", response=raw
            ) from exc

    def _sender(self) -> RequestSender:
        # The resources (built by `AsyncResourcesMixin`) and their paginators call `_call`.
        return self._call

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        options: RequestOptions = DEFAULT_OPTIONS,
    ) -> RawResponse[Any]:
        """One logical call, returning the final `RawResponse` (what the resources use).

        Auth, retries and the deadline apply as configured (`options` overrides them for this
        call); a non-2xx answer raises the matching `APIStatusError`.
        """
        return await self._call(method, path, params=params, json=json, options=options)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        options: RequestOptions = DEFAULT_OPTIONS,
        called_at: float | None = None,
    ) -> Awaitable[RawResponse[Any]]:
        # `send` without a coroutine of its own: the resources await what it returns at once,
        # and every await inside the call then resumes one frame less.
        loop = self._check_usable()
        base = self._base_headers
        if base is None or self._key_epoch != self._core.key_epoch:
            # This view's first call (the endpoint may have to start), or the key rotated.
            return self._first_call(method, path, params, json, options, called_at)
        method = check_method(method)
        url = self._root + check_path(path)
        cfg = self._config
        request = build_request(
            method, url, base, cfg.call, params=params, json=json, options=options
        )
        return send_with_retries(request, self._parts, cfg.policy, loop.time, called_at)

    async def _first_call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        options: RequestOptions,
        called_at: float | None,
    ) -> RawResponse[Any]:
        if called_at is None:
            called_at = asyncio.get_running_loop().time()
        deadline = call_deadline(self._config.call.deadline, options)
        try:
            await self._open_view(within=deadline)
        except asyncio.TimeoutError:
            if self._core.endpoint.embedded:  # not a wait the deadline bounds (see Endpoint)
                raise
            raise APITimeoutError(
                f"the call's deadline of {deadline:g} s ran out waiting for the api_key "
                "function's first key, so nothing was sent; make the function answer (or raise) "
                "sooner, or give the call a longer deadline",
                kind="deadline",
                method=method,
                url=conceal_url(self._config.base_url or self._core.endpoint.base_url or "") + path,
            ) from None
        return await self._call(
            method, path, params=params, json=json, options=options, called_at=called_at
        )

    # -------------------------------------------------------------------------- helpers

    def _check_usable(self) -> asyncio.AbstractEventLoop:
        core = self._core
        loop = asyncio.get_running_loop()
        if core.loop is loop:
            if core.state == "closed":
                raise closed_error()
            return loop
        if core.state == "closed":
            raise closed_error()
        if core.loop is not None:
            raise RuntimeError(
                "this AsyncFinalPOS is bound to the event loop it first ran on, and is being used "
                "from another loop; create one client per event loop (for example inside the "
                "coroutine you pass to asyncio.run), or use finalpos_sync.FinalPOS from threads"
            )
        # First use: bind to this loop (the transport makes its pool inside it).
        core.loop = loop
        core.state = "open"
        return loop

    async def _open_view(self, within: float | None = None) -> MappingProxyType[str, str]:
        endpoint = self._core.endpoint
        # An endpoint that runs a server starts it here; a key function gives its first key.
        resolved = await endpoint.resolve(within)
        if resolved is None or self._core.state == "closed":  # close() ran while it started
            raise closed_in_flight(maybe_processed=False)
        cfg = self._config
        root = cfg.base_url or resolved
        self._key_epoch = self._core.key_epoch  # read with the key, after the last await
        api_key = cfg.api_key or endpoint.api_key
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        merge_headers(headers, cfg.default_headers)
        if api_key:
            merge_headers(headers, {"x-api-key": HeaderSecret(api_key)})
        self._root = root
        # Read-only: every plain GET sends it, uncopied.
        old, view = self._base_headers, MappingProxyType(headers)
        self._base_headers = view
        if self._owns_core and isinstance(self._core.transport, AiohttpTransport):
            # On the session, not on each call (after a rotation, in place of the old ones).
            self._core.transport.use_default_headers(view, replacing=old)
        return view
