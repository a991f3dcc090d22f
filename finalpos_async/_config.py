"""Client configuration: arguments over environment over defaults, validated in one place.

`resolve_endpoint` and `resolve_settings` (the constructor) and `ClientSettings.evolve`
(`with_options`) use the same checks (`_checks.py`), as does every per-call option
(`_request.build_request`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from ._checks import check_api_key, check_headers, check_int, check_seconds
from ._constants import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL, SANDBOX_ENV
from ._endpoint import Endpoint, FixedEndpoint, embedded_sandbox
from ._exceptions import FinalPOSError
from ._key_source import KeyFunction, KeySource, RotatingEndpoint
from ._limiter import Limiter
from ._logging import logger
from ._rate_limit import RateLimiter
from ._request import CallSettings
from ._retry import RetryBudget, RetryPolicy
from ._secret import conceal
from ._types import NotGiven, NotGivenOr
from ._urls import normalize_base_url

__all__ = [
    "ClientSettings",
    "make_budget",
    "make_limiter",
    "make_policy",
    "resolve_endpoint",
    "resolve_sandbox",
    "resolve_settings",
]

_TRUTHY = frozenset({"1", "true", "yes", "on"})


@attrs.frozen(kw_only=True)
class ClientSettings:
    """The settings of one client view (a `with_options` copy gets its own)."""

    # A `with_options` override (a `Secret`, see `_secret.py`); None: the endpoint's.
    api_key: str | None = attrs.field(repr=False)
    base_url: str | None  # a `with_options` override; None: the endpoint's
    timeout: float | None
    deadline: float | None
    policy: RetryPolicy
    default_headers: Mapping[str, str]
    allow_insecure_http: bool
    call: CallSettings = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        # What every call starts from, built once (a plain tuple read on the hot path).
        call = CallSettings(self.timeout, self.deadline, self.policy.max_retries)
        object.__setattr__(self, "call", call)

    def evolve(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: NotGivenOr[float | None],
        deadline: NotGivenOr[float | None],
        retry: Mapping[str, float | int | None],
        default_headers: Mapping[str, str] | None,
    ) -> ClientSettings:
        """These settings with the `with_options` arguments applied (same rules as the start)."""
        headers = self.default_headers
        if default_headers is not None:
            headers = {**headers, **check_headers("default_headers", default_headers)}
        return ClientSettings(
            api_key=self.api_key if api_key is None else check_api_key(conceal(api_key)),
            base_url=self.base_url
            if base_url is None
            else normalize_base_url(base_url, allow_insecure_http=self.allow_insecure_http),
            timeout=self.timeout
            if isinstance(timeout, NotGiven)
            else check_seconds("timeout", timeout),
            deadline=self.deadline
            if isinstance(deadline, NotGiven)
            else check_seconds("deadline", deadline),
            policy=make_policy(self.policy, retry),
            default_headers=headers,
            allow_insecure_http=self.allow_insecure_http,
        )


def resolve_sandbox(
    sandbox: bool | None, *, base_url: str | None, session: object, transport: object
) -> bool:
    """Whether the client runs the embedded sandbox.

    Arguments win over the environment: `FINALPOS_SANDBOX` is read only when `sandbox` was not
    given and no argument that points elsewhere was either (`base_url`, `session`, `transport`);
    with one of them it is ignored. `api_key` alone does not contradict it (the sandbox then
    accepts that key).
    """
    given = [
        name
        for name, value in (("base_url", base_url), ("session", session), ("transport", transport))
        if value is not None
    ]
    if sandbox is None:
        from_env = os.environ.get(SANDBOX_ENV, "").strip().lower() in _TRUTHY
        if from_env and given:
            logger.debug(
                "%s is ignored: the %s argument points the client elsewhere", SANDBOX_ENV, given[0]
            )
        return from_env and not given
    if sandbox and given:
        raise ValueError(
            f"{given[0]} and sandbox=True, both passed as arguments, exclude each other; "
            "pass only one"
        )
    return bool(sandbox)


# Names for a value read from the environment, in errors: where it came from, and what it sets.
_API_KEY_FROM_ENV = f"api_key (from the {API_KEY_ENV} environment variable)"
_BASE_URL_FROM_ENV = f"base_url (from the {BASE_URL_ENV} environment variable)"


def resolve_endpoint(
    api_key: str | KeyFunction | None,
    sandbox: bool | None,
    *,
    base_url: str | None,
    session: object,
    transport: object,
    allow_insecure_http: bool,
) -> Endpoint:
    """The root client's endpoint from its arguments and the environment (arguments win).

    The embedded sandbox's (`resolve_sandbox` says whether), a `RotatingEndpoint` for a key
    function, or a `FixedEndpoint`. An error about a value read from the environment names its
    variable.
    """
    if resolve_sandbox(sandbox, base_url=base_url, session=session, transport=transport):
        # The sandbox has its own address and key: FINALPOS_BASE_URL/FINALPOS_API_KEY are unused.
        if callable(api_key):
            if sandbox:
                raise ValueError(
                    "api_key as a function and sandbox=True exclude each other: the embedded "
                    "sandbox accepts one fixed key; pass api_key as a str, or leave it out"
                )
            # FINALPOS_SANDBOX=1 turns the app's client to the sandbox, with the sandbox's key.
            logger.debug("%s is set: the api_key function is not used", SANDBOX_ENV)
            return embedded_sandbox(None)
        if api_key is not None:
            check_api_key(api_key)
        return embedded_sandbox(api_key)
    if callable(api_key):
        source = KeySource(api_key)  # asked for the key on the first call, not here
        return RotatingEndpoint(_base_url(base_url, allow_insecure_http), source)
    key: object
    key, key_name = (
        (api_key, "api_key")
        if api_key is not None
        else (conceal(os.environ.get(API_KEY_ENV)), _API_KEY_FROM_ENV)
    )
    if key is None or (isinstance(key, str) and not key.strip()):
        raise FinalPOSError(
            f"No API key: pass AsyncFinalPOS(api_key=...) or set the {API_KEY_ENV} "
            "environment variable (or use sandbox=True for the local sandbox)"
        )
    resolved_key = check_api_key(key, name=key_name)
    return FixedEndpoint(_base_url(base_url, allow_insecure_http), resolved_key)


def _base_url(base_url: str | None, allow_insecure_http: bool) -> str:
    """The API root from the argument, else `FINALPOS_BASE_URL`, else the default."""
    if base_url is not None:
        return normalize_base_url(base_url, allow_insecure_http=allow_insecure_http)
    if env_url := os.environ.get(BASE_URL_ENV):  # an empty variable counts as unset
        return normalize_base_url(
            env_url, allow_insecure_http=allow_insecure_http, name=_BASE_URL_FROM_ENV
        )
    return normalize_base_url(DEFAULT_BASE_URL)


def resolve_settings(
    *,
    timeout: float | None,
    deadline: float | None,
    retry: Mapping[str, float | int | None],
    default_headers: Mapping[str, str] | None,
    allow_insecure_http: bool,
) -> ClientSettings:
    """The root client's settings from its arguments (its URL and key are its endpoint's)."""
    return ClientSettings(
        api_key=None,
        base_url=None,
        timeout=check_seconds("timeout", timeout),
        deadline=check_seconds("deadline", deadline),
        policy=make_policy(RetryPolicy(), retry),
        default_headers=check_headers("default_headers", default_headers),
        allow_insecure_http=allow_insecure_http,
    )


def make_budget(retry_budget: int | None) -> RetryBudget | None:
    """The client-wide retry budget (`None`: no budget)."""
    if retry_budget is None:
        return None
    return RetryBudget(check_int("retry_budget", retry_budget, minimum=0))


def make_limiter(rate_limit: object) -> Limiter | None:
    """The client's limiter from its `rate_limit` argument (requests per second or a limiter)."""
    if rate_limit is None or isinstance(rate_limit, Limiter):
        return rate_limit
    if isinstance(rate_limit, bool) or not isinstance(rate_limit, (int, float)):
        raise TypeError(
            f"rate_limit must be requests per second (a number), a limiter "
            f"(RateLimiter, RedisRateLimiter) or None, "
            f"got {rate_limit!r}"
        )
    if not (rate_limit > 0 and rate_limit != float("inf")):
        raise ValueError(
            f"rate_limit must be a finite number of requests per second > 0 (or None), "
            f"got {rate_limit!r}"
        )
    return RateLimiter(rate_limit)


def make_policy(base: RetryPolicy, retry: Mapping[str, float | int | None]) -> RetryPolicy:
    """`base` with the retry settings that were given (`None` keeps the base's value)."""
    changes: dict[str, Any] = {key: value for key, value in retry.items() if value is not None}
    return attrs.evolve(base, **changes) if changes else base
