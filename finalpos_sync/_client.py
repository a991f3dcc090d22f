"""`FinalPOS`: the sync client, a twin of `AsyncFinalPOS` running on a private loop.

The constructor, `with_options`, `request` and the properties mirror `AsyncFinalPOS` one for one
(tests/sync/test_sync_parity.py holds them to the same signatures); the resource attributes come
from the generated `SyncResourcesMixin`, the lifecycle from `BaseSyncClient`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from finalpos_async._client import AsyncFinalPOS, ClientState
from finalpos_async._constants import (
    CONNECT_TIMEOUT,
    DEADLINE,
    MAX_RESPONSE_BYTES,
    POOL_LIMIT,
    POOL_LIMIT_PER_HOST,
    POOL_TIMEOUT,
    READ_TIMEOUT,
    RETRY_BUDGET_TOKENS,
)
from finalpos_async._key_source import KeyFunction
from finalpos_async._limiter import Limiter
from finalpos_async._middleware import Middleware
from finalpos_async._response import RawResponse
from finalpos_async._retry import RetryBudget, RetryPolicy
from finalpos_async._secret import conceal, conceal_url
from finalpos_async._transport import Transport
from finalpos_async._types import DEFAULT_OPTIONS, NOT_GIVEN, NotGivenOr, RequestOptions
from finalpos_sync.resources import SyncResourcesMixin

if TYPE_CHECKING:
    from finalpos_sync._bulk import SyncBulkRunner

__all__ = ["FinalPOS"]

_ClientT = TypeVar("_ClientT", bound="FinalPOS")


class FinalPOS(SyncResourcesMixin):
    """The synchronous client for the Final POS REST API.

    ```python
    with FinalPOS() as client:                     # key from FINALPOS_API_KEY
        customer = client.customers.retrieve("c_123")
        for c in client.customers.list():          # one page per round trip
            ...
    ```

    The same constructor parameters, resources, methods, models and errors as
    `finalpos_async.AsyncFinalPOS`, minus `await`: every method runs the async client's coroutine
    on one private event loop in a background thread (started on the first call, stopped by
    `close()`), where the connection pool lives.

    **Threads**: thread-safe. Any number of threads may share one client; every call is
    marshalled to the single private loop, so they share one pool. Create one per process and
    reuse it.

    **Where it works**: plain scripts and threads; inside a thread that runs an event loop
    (Jupyter, an async web handler calling legacy code: it works, but blocks that loop while it
    waits, so outside IPython a one-time `RuntimeWarning` suggests the async client); after
    `os.fork()` (the child starts its own loop and pool on first use); without `close()` (once
    the client is garbage collected its loop thread stops and its pool closes; at interpreter
    exit an `atexit` hook closes it). Calling it from its own loop thread (an event hook) raises
    `RuntimeError`: use `client.async_client` and `await` there. Ctrl-C during a call cancels
    the request and raises `KeyboardInterrupt`; `close()` from another thread ends the calls in
    flight with `ClientClosedError`.

    **States**: `new` → `open` (first call) → `closed` (after `close()`, for good).
    `with_options(...)` returns a light view sharing the loop and pool; closing a view does
    nothing.

    `api_key=` may be a function, sync or async, returning the key (as for `AsyncFinalPOS`): it
    runs on the private loop's thread, so it must not call this client.

    There is no `session=` here (an aiohttp session belongs to the loop it was made on, and this
    client runs its own); tune the pool with `pool_limit` / `pool_limit_per_host` instead.

    `middleware=[...]` takes the same async callables as `AsyncFinalPOS`: they run on the
    private loop thread, around every attempt, so they must not block (no `time.sleep`, no
    sync I/O). A plain `def` is refused with a `TypeError`: it could not await `call_next`.
    """

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
        proxy: str | None = None,
        trust_env: bool = True,
        allow_insecure_http: bool = False,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        insecure_skip_tls_verify: bool = False,
        transport: Transport | None = None,
        middleware: Sequence[Middleware] | None = None,
    ) -> None:
        # First, so that this frame, the kwargs below and the factory kept for after a fork
        # hold the key masked (a failing check in the async constructor renders them all).
        api_key = conceal(api_key)
        proxy = conceal_url(proxy)  # its URL may hold a password
        self._init_root(
            AsyncFinalPOS,
            {
                "api_key": api_key,
                "base_url": base_url,
                "timeout": timeout,
                "connect_timeout": connect_timeout,
                "pool_timeout": pool_timeout,
                "deadline": deadline,
                "max_retries": max_retries,
                "backoff_base": backoff_base,
                "backoff_cap": backoff_cap,
                "retry_after_cap": retry_after_cap,
                "retry_budget": retry_budget,
                "rate_limit": rate_limit,
                "pool_limit": pool_limit,
                "pool_limit_per_host": pool_limit_per_host,
                "default_headers": default_headers,
                "sandbox": sandbox,
                "proxy": proxy,
                "trust_env": trust_env,
                "allow_insecure_http": allow_insecure_http,
                "max_response_bytes": max_response_bytes,
                "insecure_skip_tls_verify": insecure_skip_tls_verify,
                "transport": transport,
                "middleware": middleware,
            },
        )

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
        api_key = conceal(api_key)  # the closure below keeps it: masked, like in the async twin
        return self._view(
            lambda c: c.with_options(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                deadline=deadline,
                max_retries=max_retries,
                backoff_base=backoff_base,
                backoff_cap=backoff_cap,
                retry_after_cap=retry_after_cap,
                default_headers=default_headers,
                middleware=middleware,
            )
        )

    @property
    def state(self) -> ClientState:
        """`new`, `open` or `closed` (shared by every `with_options` copy)."""
        return self.async_client.state

    @property
    def base_url(self) -> str | None:
        """The API root (`None` in sandbox mode until the sandbox has started)."""
        return self.async_client.base_url

    @property
    def credentials_fingerprint(self) -> str:
        """A one-way fingerprint of the API key (16 hex digits of a SHA-256), safe to store.

        It tells two keys apart without revealing either; bulk journals record it so that a
        journal is never resumed with other credentials. With `api_key=` a function it stands
        for "a key that rotates" rather than for one key: the same for every such client, and
        unchanged when the key rotates, so a journal resumes across rotations.
        """
        return self.async_client.credentials_fingerprint

    @property
    def is_embedded_sandbox(self) -> bool:
        """True when this client runs its own in-memory sandbox (`sandbox=True`).

        Its data dies with the client, so nothing recorded against it can be resumed later.
        """
        return self.async_client.is_embedded_sandbox

    @property
    def timeout(self) -> float | None:
        """The read timeout per attempt, in seconds."""
        return self.async_client.timeout

    @property
    def deadline(self) -> float | None:
        """The time budget of one logical call across all attempts, in seconds."""
        return self.async_client.deadline

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt."""
        return self.async_client.max_retries

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry settings of this client."""
        return self.async_client.retry_policy

    @property
    def retry_budget(self) -> RetryBudget | None:
        """The client-wide retry token bucket (shared with `with_options` copies)."""
        return self.async_client.retry_budget

    @property
    def rate_limiter(self) -> Limiter | None:
        """The requests-per-second limiter every attempt waits on (shared with `with_options`)."""
        return self.async_client.rate_limiter

    @property
    def bulk(self) -> SyncBulkRunner:
        """Bulk operations over many inputs: `client.bulk.run(client.customers.create, rows)`.

        Concurrency is capped at this client's pool; see `finalpos_sync.bulk.SyncBulkRunner.run`.
        """
        from finalpos_sync._bulk import SyncBulkRunner

        return SyncBulkRunner(self, self._run, lambda c: c.bulk)

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """What every HTTP attempt of this client (or view) runs through, outermost first.

        Async callables, as for `AsyncFinalPOS`: they run on this client's private event loop.
        """
        return self.async_client.middleware

    @property
    def transport(self) -> Transport:
        """What carries this client's attempts (shared with `with_options` copies).

        An `AiohttpTransport` unless `transport=` was given; closed by the client's `close()`.
        """
        return self.async_client.transport

    @property
    def pool_limit_per_host(self) -> int:
        """Connections this client opens to one host at most (the pool's limit if unlimited)."""
        return self.async_client.pool_limit_per_host

    def request(
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
        return self._run(
            self.async_client.request(
                method=method,
                path=path,
                params=params,
                json=json,
                timeout=timeout,
                deadline=deadline,
                max_retries=max_retries,
                extra_headers=extra_headers,
                idempotency_key=idempotency_key,
                retry_unsafe=retry_unsafe,
            )
        )

    def send(
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
        return self._run(
            self.async_client.send(
                method=method, path=path, params=params, json=json, options=options
            )
        )
