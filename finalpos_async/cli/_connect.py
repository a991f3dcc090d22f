"""Where the CLI's requests go: the real API when a key is given, else an embedded sandbox."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import sqlite3
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
import click

from .._client import AsyncFinalPOS
from .._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    IMPORT_BURST_SECONDS,
    IMPORT_REDIS_TIMEOUT,
    PROXY_ENV,
    READ_TIMEOUT,
    REDIS_URL_ENV,
)
from .._limiter import Limiter
from .._middleware import Middleware
from .._rate_limit import RateLimiter
from .._redis_limit import DEFAULT_REDIS_KEY, INSTALL_HINT, RedisRateLimiter, redact_url, tenant_key
from .._secret import SecretURL, fingerprint

__all__ = ["Connection", "Settings", "connect", "proxy_options", "proxy_words", "shared_rate_url"]

_F = TypeVar("_F", bound=Callable[..., Any])


@attrs.frozen(kw_only=True)
class Settings:
    """The global options of the `finalpos` command."""

    api_key: str | None
    base_url: str | None
    sandbox_db: Path | None
    max_retries: int | None
    timeout: float | None
    # Requests per second over every HTTP attempt, retries included (the import's --rate).
    rate_limit: float | None = None
    rate_burst: float | None = None  # --burst (default: IMPORT_BURST_SECONDS of the rate)
    # With a rate: the Redis that shares it between processes (--redis-url) and its key.
    redis_url: str | None = attrs.field(default=None, repr=False)  # may hold a password
    redis_key: str = DEFAULT_REDIS_KEY
    # --proxy (a `SecretURL`: it may hold a password) and --trust-env/--no-trust-env.
    proxy: str | None = attrs.field(default=None, repr=False)
    trust_env: bool = True
    # Around every HTTP attempt (`import_file(middleware=...)`; the command line has none).
    middleware: tuple[Middleware, ...] = ()

    def limiter(self) -> float | Limiter | None:
        """What the client's `rate_limit=` gets: a shared Redis bucket, a local rate, or None."""
        rate = self.rate_limit
        if rate is None:
            return None
        burst = self.rate_burst or max(1.0, rate * IMPORT_BURST_SECONDS)
        if self.redis_url is None:
            return RateLimiter(rate, burst=burst)
        key = self.redis_key
        if key == DEFAULT_REDIS_KEY and self.api_key:
            key = tenant_key(fingerprint(self.api_key))  # each API key its own cap
        return RedisRateLimiter(
            self.redis_url,
            rate=rate,
            burst=burst,
            key=key,
            redis_timeout=IMPORT_REDIS_TIMEOUT,
        )


@attrs.frozen(kw_only=True)
class Connection:
    """An open client and what the user should know about where it points."""

    client: AsyncFinalPOS
    embedded: bool
    persistent: bool  # data outlives this command (real API or --sandbox-db)
    target: str  # where requests go, for people
    # What a journal is bound to: the base URL, or the sandbox's database file (its URL changes
    # with the port at every start; its file does not).
    target_id: str


def _secret_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A URL that may hold a password, as a `SecretURL` (it renders with `***`) from here on."""
    return SecretURL(value) if value else None


def proxy_options(command: _F) -> _F:
    """The root command's `--proxy` (`FINALPOS_PROXY`) and `--trust-env/--no-trust-env`."""
    command = click.option(
        "--trust-env/--no-trust-env",
        default=True,
        show_default=True,
        help="Honour HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY and SSL_CERT_FILE.",
    )(command)
    return click.option(
        "--proxy",
        envvar=PROXY_ENV,
        show_envvar=True,
        callback=_secret_url,
        help="http://[user:password@]host[:port] proxy for every request to the API "
        "(default: HTTP_PROXY/HTTPS_PROXY, NO_PROXY).",
    )(command)


def proxy_words(root: click.Context) -> list[str]:
    """The proxy options given on the command line, to repeat them (never the password)."""
    words: list[str] = []
    proxy = root.params.get("proxy")
    if isinstance(proxy, SecretURL) and (
        root.get_parameter_source("proxy") is click.core.ParameterSource.COMMANDLINE
    ):
        has_password = urlsplit(proxy.reveal()).password is not None
        words += ["--proxy", f'"${PROXY_ENV}"' if has_password else shlex.quote(proxy.reveal())]
    if root.params.get("trust_env") is False:
        words.append("--no-trust-env")
    return words


def shared_rate_url(
    url: str | None, rate: float | None, *, from_command_line: bool, say: Callable[[str], None]
) -> str | None:
    """The --redis-url to share --rate through, checked (None: the rate is this process's).

    A URL from the environment with no --rate is ignored with a note: the variable may be set
    for the web workers while this command runs unpaced on purpose.
    """
    if url is None or (url == "" and not from_command_line):
        return None
    where = "--redis-url" if from_command_line else REDIS_URL_ENV
    if url == "":
        raise click.UsageError("--redis-url is empty: give a URL such as redis://host:6379/0")
    if rate is None:
        if from_command_line:
            raise click.UsageError(
                "--redis-url shares the --rate cap between processes: give --rate too "
                "(e.g. --rate 50, in requests per second over every process)"
            )
        say(f"note: {REDIS_URL_ENV} is ignored: no --rate was given, so there is no cap to share.")
        return None
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise click.UsageError(
            f"{where} {redact_url(url)!r}: give a redis://, rediss:// or unix:// URL "
            "(e.g. redis://:PASSWORD@host:6379/0)"
        )
    if importlib.util.find_spec("redis") is None:
        raise click.UsageError(f"{where} needs redis-py: {INSTALL_HINT}")
    return url


@contextlib.asynccontextmanager
async def connect(
    settings: Settings, say: Callable[[str], None], *, reads: bool = False
) -> AsyncGenerator[Connection, None]:
    """Open the client (starting an embedded sandbox when there is no key), close it after.

    `reads`: the command reads existing data (export, get, delete), which a new in-memory
    sandbox cannot have: the notice says how to keep data between commands.
    """
    limiter = settings.limiter()
    if not isinstance(limiter, RedisRateLimiter):
        async with _connect(settings, say, reads, limiter) as conn:
            yield conn
        return
    try:
        # Fail before reading the file when the shared limiter's Redis cannot be used: one
        # round trip (a token taken only if one is free now) proves the URL, password and script.
        await limiter.acquire(timeout=0)
        async with _connect(settings, say, reads, limiter) as conn:
            yield conn
    finally:
        await limiter.aclose()


@contextlib.asynccontextmanager
async def _connect(
    settings: Settings, say: Callable[[str], None], reads: bool, limiter: float | Limiter | None
) -> AsyncGenerator[Connection, None]:
    timeout = settings.timeout if settings.timeout is not None else READ_TIMEOUT
    if settings.api_key:
        if settings.sandbox_db is not None:
            say("note: --sandbox-db is ignored: an API key was given, so no sandbox is started.")
        client = AsyncFinalPOS(
            settings.api_key,
            base_url=settings.base_url,
            max_retries=settings.max_retries,
            timeout=timeout,
            rate_limit=limiter,
            proxy=settings.proxy,
            trust_env=settings.trust_env,
            middleware=settings.middleware,
        )
        async with client:
            url = client.base_url or ""
            yield Connection(
                client=client, embedded=False, persistent=True, target=url, target_id=url
            )
        return

    if settings.base_url is not None and settings.sandbox_db is None:
        # The user plainly meant a real target: importing into a throw-away sandbox instead
        # would report success for data that went nowhere.
        raise click.UsageError(
            f"a base URL was given ({settings.base_url}, from --base-url or {BASE_URL_ENV}) but "
            f"no API key: pass --api-key or set {API_KEY_ENV}. Without either, commands run "
            "against an embedded sandbox"
        )
    if settings.base_url is not None:
        say(f"note: {BASE_URL_ENV}/--base-url is ignored: --sandbox-db asks for the sandbox.")
    if settings.proxy is not None:
        say(f"note: {PROXY_ENV}/--proxy is ignored: the embedded sandbox runs in this process.")

    # Imported here: the sandbox (and its spec tables) is only needed without a key.
    from ..sandbox import Sandbox

    db = os.fspath(settings.sandbox_db) if settings.sandbox_db is not None else None
    db_id = f"sandbox:{settings.sandbox_db.absolute()}" if settings.sandbox_db is not None else ""
    sandbox = Sandbox(db=db)
    try:
        await sandbox.start()
    except sqlite3.DatabaseError as exc:
        raise click.UsageError(
            f"--sandbox-db {db}: {exc}: it is not a sandbox database. Give the file an earlier "
            "--sandbox-db made, or a new file name (it is created)"
        ) from None
    try:
        if db:
            where = f"data kept in {db}"
        elif reads:
            where = (
                "new and empty: data is kept between commands only with --sandbox-db FILE, "
                "given to each of them"
            )
        else:
            where = "data discarded on exit; --sandbox-db FILE keeps it"
        say(f"No API key given: using an embedded sandbox at {sandbox.url} ({where}).")
        async with AsyncFinalPOS(
            sandbox.api_key,
            base_url=sandbox.url,
            max_retries=settings.max_retries,
            timeout=timeout,
            rate_limit=limiter,
        ) as client:
            yield Connection(
                client=client,
                embedded=True,
                persistent=db is not None,
                target=sandbox.url,
                target_id=db_id or sandbox.url,
            )
    finally:
        await sandbox.close()
