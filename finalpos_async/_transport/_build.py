"""Building the client's transport: the one given, checked, or the default `AiohttpTransport`.

The default one gets its proxy routes and TLS certificates here (`_proxy.py`: `proxy=`, and with
`trust_env` the environment, read once, now).
"""

from __future__ import annotations

import aiohttp
import attrs

from .._checks import check_bool, check_int, check_seconds
from .._logging import logger
from ._aiohttp import AiohttpTransport
from ._protocol import Transport
from ._proxy import resolve_proxies, tls_from_env

__all__ = ["PoolSettings", "make_transport"]


@attrs.frozen(kw_only=True)
class PoolSettings:
    """What the default transport is built from (ignored when a `transport=` is given)."""

    connect_timeout: float | None
    pool_timeout: float | None
    pool_limit: int
    pool_limit_per_host: int
    session: aiohttp.ClientSession | None
    max_response_bytes: int
    insecure_skip_tls_verify: bool
    # The `proxy=` argument (a `Secret` when a str: it may hold a password).
    proxy: str | None = attrs.field(default=None, repr=False)
    trust_env: bool = True


def make_transport(
    pool: PoolSettings,
    transport: Transport | None,
    *,
    direct: bool = False,
    plain_http: bool = False,
) -> Transport:
    """The client's transport: the one given, or an `AiohttpTransport` built from `pool`.

    `direct`: the endpoint runs in this process (the embedded sandbox), so no proxy applies.
    `plain_http`: the API is reached over http://, so `SSL_CERT_FILE`'s bundle is not loaded
    (tens of milliseconds of CPU that every `finalpos` command against a local server paid).
    """
    session = pool.session
    if session is not None and not isinstance(session, aiohttp.ClientSession):
        raise TypeError(f"session must be an aiohttp.ClientSession, got {type(session).__name__}")
    check_int("pool_limit", pool.pool_limit, minimum=1)
    check_int("pool_limit_per_host", pool.pool_limit_per_host, minimum=0)
    check_int("max_response_bytes", pool.max_response_bytes, minimum=1)
    insecure = check_bool("insecure_skip_tls_verify", pool.insecure_skip_tls_verify)
    connect_timeout = check_seconds("connect_timeout", pool.connect_timeout)
    pool_timeout = check_seconds("pool_timeout", pool.pool_timeout)
    trust_env = check_bool("trust_env", pool.trust_env)
    if pool.proxy is not None and (transport is not None or session is not None):
        given = "transport" if transport is not None else "session"
        raise ValueError(
            f"proxy and {given}, both passed as arguments, exclude each other: a {given} of "
            "your own carries the requests itself; pass only proxy=, or set the proxy on it "
            + (
                "(aiohttp.ClientSession(proxy=...))"
                if given == "session"
                else "(a transport of your own decides its routes)"
            )
        )
    if transport is not None:
        if session is not None:
            raise ValueError("transport and session exclude each other; pass only one")
        if not callable(getattr(transport, "send", None)):
            raise TypeError(
                f"transport must have async send() and aclose() methods (an Transport), "
                f"got {type(transport).__name__}"
            )
        return transport
    if insecure:
        logger.warning(
            "TLS certificate verification is OFF (insecure_skip_tls_verify=True); "
            "anyone on the network path can read the API key"
        )
    # Checked even when unused (the embedded sandbox), so that a typo fails the same everywhere.
    proxies = resolve_proxies(pool.proxy, trust_env=trust_env and session is None)
    wants_tls = trust_env and session is None and not insecure and not (direct or plain_http)
    tls = tls_from_env() if wants_tls else None
    if proxies is not None and not direct:
        for route in proxies.routes:
            logger.debug("requests may go through %s", route.describe())
    return AiohttpTransport(
        connect_timeout=connect_timeout,
        pool_timeout=pool_timeout,
        limit=pool.pool_limit,
        limit_per_host=pool.pool_limit_per_host,
        external_session=session,
        max_response_bytes=pool.max_response_bytes,
        verify_tls=not insecure,
        proxies=None if direct else proxies,
        tls_context=tls,
    )
