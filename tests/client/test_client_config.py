"""Client settings (args > env > defaults), lifecycle, loops, light copies, sandbox, logging.

Calls go through `MockTransport` (the `scripted` fixture) except where the aiohttp transport's
own resources are what is checked, which keep a real server on 127.0.0.1 (`scripted_server`):
its session's life (created on first use, closed with the client, a caller's left open), the
sockets 10,000 copies hold, and the sandbox endpoints the default transport connects to.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import tracemalloc
import warnings
from typing import Any

import aiohttp
import pytest
from conftest import (
    ScriptedServer,
    ScriptedTransport,
    aiohttp_transport,
    backoff_waits,
    checked_out,
    live_connections,
    ok,
    status,
)

import finalpos_async
from finalpos_async import (
    AsyncFinalPOS,
    ClientClosedError,
    FinalPOSError,
    InternalServerError,
    RequestOptions,
)
from finalpos_async._constants import DEADLINE, MAX_RETRIES, READ_TIMEOUT
from finalpos_async.sandbox import _sandbox as sandbox_server

KEY = "sk_live_SECRET_do_not_leak_1234"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("FINALPOS_API_KEY", "FINALPOS_BASE_URL", "FINALPOS_SANDBOX"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ----------------------------------------------------------------------------- configuration


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    client = AsyncFinalPOS(KEY)
    assert client.base_url == "https://api.finalpos.com"
    assert client.timeout == READ_TIMEOUT
    assert client.deadline == DEADLINE
    assert client.max_retries == MAX_RETRIES
    assert client.state == "new"


def test_api_key_and_base_url_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("FINALPOS_API_KEY", KEY)
    clean_env.setenv("FINALPOS_BASE_URL", "https://staging.finalpos.test/")
    client = AsyncFinalPOS()
    assert client.base_url == "https://staging.finalpos.test"
    assert client.credentials_fingerprint == AsyncFinalPOS(KEY).credentials_fingerprint


def test_arguments_win_over_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("FINALPOS_API_KEY", "from-env")
    clean_env.setenv("FINALPOS_BASE_URL", "https://env.example")
    client = AsyncFinalPOS("from-arg", base_url="https://arg.example")
    assert client.credentials_fingerprint == AsyncFinalPOS("from-arg").credentials_fingerprint
    assert client.credentials_fingerprint != AsyncFinalPOS("from-env").credentials_fingerprint
    assert client.base_url == "https://arg.example"


def test_missing_key_names_the_environment_variable(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(FinalPOSError, match="FINALPOS_API_KEY"):
        AsyncFinalPOS()


@pytest.mark.parametrize("key", ["", "   "])
def test_blank_key_is_missing(clean_env: pytest.MonkeyPatch, key: str) -> None:
    with pytest.raises(FinalPOSError, match="FINALPOS_API_KEY"):
        AsyncFinalPOS(key)


def test_key_with_a_newline_is_refused_without_echoing_it(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="api_key") as info:
        AsyncFinalPOS(KEY + "\n")
    assert KEY not in str(info.value)


@pytest.mark.parametrize(
    "url", ["http://api.finalpos.com", "http://10.0.0.5:8080", "http://example.localhostx"]
)
def test_plain_http_to_a_remote_host_is_refused(clean_env: pytest.MonkeyPatch, url: str) -> None:
    with pytest.raises(ValueError, match="allow_insecure_http"):
        AsyncFinalPOS(KEY, base_url=url)


def test_plain_http_to_a_remote_host_with_opt_in(clean_env: pytest.MonkeyPatch) -> None:
    client = AsyncFinalPOS(KEY, base_url="http://10.0.0.5:8080", allow_insecure_http=True)
    assert client.base_url == "http://10.0.0.5:8080"


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8000", "http://127.0.0.1:9", "http://[::1]:80", "http://app.localhost"],
)
def test_plain_http_to_local_hosts_is_fine(clean_env: pytest.MonkeyPatch, url: str) -> None:
    assert AsyncFinalPOS(KEY, base_url=url).base_url == url


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://api.finalpos.com", "http"),
        ("api.finalpos.com", "http"),
        ("https://u:p@api.finalpos.com", "credentials"),
        ("https://api.finalpos.com/?x=1", "query"),
        ("", "base_url"),
    ],
)
def test_bad_base_urls(clean_env: pytest.MonkeyPatch, url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AsyncFinalPOS(KEY, base_url=url)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -1.0}, ValueError, "timeout"),
        ({"timeout": "5"}, TypeError, "timeout"),
        ({"deadline": float("inf")}, ValueError, "deadline"),
        ({"connect_timeout": 0}, ValueError, "connect_timeout"),
        ({"pool_timeout": -2}, ValueError, "pool_timeout"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": 2.0}, TypeError, "max_retries"),
        ({"backoff_base": -1.0}, ValueError, "backoff_base"),
        ({"pool_limit": 0}, ValueError, "pool_limit"),
        ({"pool_limit_per_host": -1}, ValueError, "pool_limit_per_host"),
        ({"retry_budget": -5}, ValueError, "retry_budget"),
        ({"default_headers": {"X": 1}}, TypeError, "default_headers"),
        ({"session": object()}, TypeError, "session"),
    ],
)
def test_bad_settings_name_the_field(
    clean_env: pytest.MonkeyPatch, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        AsyncFinalPOS(KEY, **kwargs)


def test_none_timeouts_mean_no_limit(clean_env: pytest.MonkeyPatch) -> None:
    client = AsyncFinalPOS(KEY, timeout=None, deadline=None)
    assert client.timeout is None
    assert client.deadline is None


def test_repr_never_shows_the_key(clean_env: pytest.MonkeyPatch) -> None:
    client = AsyncFinalPOS(KEY)
    # vars(): every attribute's repr, the settings object's included.
    text = repr(client) + str(vars(client))
    assert KEY not in text
    assert "state='new'" in repr(client)


# ---------------------------------------------------------------------------------- lifecycle


async def test_states_new_open_closed(scripted_server: ScriptedServer) -> None:
    client = scripted_server.client()
    states = [client.state]
    assert aiohttp_transport(client).session is None  # nothing made before the first request
    await client.request("GET", "/x")
    states.append(client.state)
    session = aiohttp_transport(client).session
    assert session is not None
    await client.close()
    states.append(client.state)
    assert states == ["new", "open", "closed"]
    assert client.is_closed
    assert session.closed
    await client.close()  # idempotent
    assert client.state == "closed"


async def test_close_before_any_request(clean_env: pytest.MonkeyPatch) -> None:
    client = AsyncFinalPOS(KEY)
    await client.close()
    assert client.state == "closed"


async def test_using_a_closed_client_says_what_to_do(scripted: ScriptedTransport) -> None:
    async with scripted.client() as client:
        await client.request("GET", "/x")
    with pytest.raises(RuntimeError, match=r"closed.*create a new client"):
        await client.request("GET", "/x")
    with pytest.raises(RuntimeError, match="cannot be reopened"):
        async with client:
            pass


async def test_a_client_is_bound_to_its_first_loop(scripted: ScriptedTransport) -> None:
    client = scripted.client()
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            asyncio.run(client.request("GET", "/x"))
        except BaseException as exc:
            errors.append(exc)

    await client.request("GET", "/x")  # opened here, on the test's loop
    thread = threading.Thread(target=other_thread)
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join)
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "another loop" in str(errors[0])
    assert "one client per event loop" in str(errors[0])
    await client.close()


async def test_del_of_an_unclosed_client_only_warns(scripted_server: ScriptedServer) -> None:
    client = scripted_server.client()
    await client.request("GET", "/x")
    session = aiohttp_transport(client).session
    assert session is not None
    loop = asyncio.get_running_loop()
    tasks_before = len(asyncio.all_tasks(loop))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
    ours = [w for w in caught if "AsyncFinalPOS was not closed" in str(w.message)]
    assert len(ours) == 1
    assert ours[0].category is ResourceWarning
    assert len(asyncio.all_tasks(loop)) == tasks_before  # no work scheduled on the loop
    await session.close()


async def test_a_caller_supplied_session_is_never_closed(scripted_server: ScriptedServer) -> None:
    async with aiohttp.ClientSession() as session:
        client = scripted_server.client(session=session)
        assert await client.request("GET", "/x") == {"ok": True}
        assert aiohttp_transport(client).session is session
        await client.close()
        assert not session.closed
        async with session.get(scripted_server.url + "/still-usable") as resp:
            assert resp.status == 200
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            del client
            gc.collect()


# ------------------------------------------------------------------------------ with_options


async def test_with_options_shares_the_pool_and_never_closes_it(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(status(503), ok())
    async with scripted.client() as client:
        await client.request("GET", "/x")
        view = client.with_options(max_retries=0, timeout=5.0, deadline=9.0)
        assert view is not client
        assert type(view) is type(client)
        assert view.transport is client.transport
        assert view.retry_budget is client.retry_budget
        assert view.max_retries == 0
        assert view.timeout == 5.0
        assert view.deadline == 9.0
        assert client.max_retries == MAX_RETRIES
        assert client.timeout == READ_TIMEOUT
        scripted.play(status(503), ok())
        with pytest.raises(InternalServerError):
            await view.request("GET", "/x")
        assert scripted.attempts == 1
        await view.close()
        async with view:
            pass
        assert client.state == "open"
        assert await client.request("GET", "/x") == {"ok": True}
        assert "with_options copy" in repr(view)


async def test_with_options_can_change_key_and_base_url(scripted: ScriptedTransport) -> None:
    async with scripted.client() as client:
        view = client.with_options(api_key="sk_other", base_url=scripted.url + "/")
        await view.request("GET", "/x")
        assert scripted.seen[-1].headers["x-api-key"] == "sk_other"
        await client.request("GET", "/x")
        assert scripted.seen[-1].headers["x-api-key"] == "sk_test_scripted"
        with pytest.raises(ValueError, match="allow_insecure_http"):
            client.with_options(base_url="http://api.finalpos.com")


async def test_ten_thousand_copies_grow_neither_memory_nor_sockets(
    scripted_server: ScriptedServer,
) -> None:
    async with scripted_server.client() as client:
        await client.request("GET", "/warm-up")
        session = aiohttp_transport(client).session
        assert session is not None

        def sockets() -> int:
            # Seen from the server: every connection the client holds open, idle or in use.
            return live_connections(scripted_server.connections)

        sockets_before = sockets()
        gc.collect()
        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            for i in range(10_000):
                view = client.with_options(max_retries=i % 4, timeout=1.0 + i % 3)
                if i % 1000 == 0:
                    await view.request("GET", "/x")
            del view
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert after - baseline < 200_000  # bytes; one copy alone is ~1 KB
        assert sockets() <= max(sockets_before, 1)
        assert aiohttp_transport(client).session is session
        assert not session.closed


# ------------------------------------------------------------------------------------ sandbox


class FakeSandbox:
    """Plays the Sandbox contract against the scripted server (the real one is tested apart)."""

    instances: list[FakeSandbox] = []
    server_url = ""

    def __init__(self, *, api_key: str | None = None) -> None:
        self.url = self.server_url
        self.api_key = api_key or "sk_sandbox"
        self.started = 0
        self.closed = 0
        FakeSandbox.instances.append(self)

    async def start(self) -> None:
        self.started += 1

    async def close(self) -> None:
        self.closed += 1


@pytest.fixture
def fake_sandbox(
    scripted_server: ScriptedServer, clean_env: pytest.MonkeyPatch
) -> type[FakeSandbox]:
    FakeSandbox.instances = []
    FakeSandbox.server_url = scripted_server.url
    # The real SandboxEndpoint (lazy start, one start, close) over the stand-in server.
    clean_env.setattr(sandbox_server, "Sandbox", FakeSandbox)
    return FakeSandbox


async def test_sandbox_starts_lazily_and_closes_with_the_client(
    fake_sandbox: type[FakeSandbox], scripted_server: ScriptedServer
) -> None:
    client = AsyncFinalPOS(sandbox=True)
    assert fake_sandbox.instances == []
    assert client.base_url is None
    results = await asyncio.gather(*(client.request("GET", "/x") for _ in range(5)))
    assert results == [{"ok": True}] * 5
    (sandbox,) = fake_sandbox.instances
    assert sandbox.started == 1
    assert client.base_url == scripted_server.url
    assert {seen.headers["x-api-key"] for seen in scripted_server.seen} == {"sk_sandbox"}
    view = client.with_options(max_retries=0)
    await view.request("GET", "/y")
    await client.close()
    assert sandbox.closed == 1


async def test_sandbox_from_the_environment(
    fake_sandbox: type[FakeSandbox], clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("FINALPOS_SANDBOX", "1")
    async with AsyncFinalPOS() as client:
        assert await client.request("GET", "/x") == {"ok": True}
    assert fake_sandbox.instances[0].closed == 1


def test_sandbox_and_base_url_exclude_each_other(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="base_url and sandbox"):
        AsyncFinalPOS(sandbox=True, base_url="https://api.finalpos.com")


def test_sandbox_option_does_not_import_the_sandbox_server(clean_env: pytest.MonkeyPatch) -> None:
    # The client makes the sandbox's (light) endpoint; the server loads on the first call.
    clean_env.delitem(sys.modules, "finalpos_async.sandbox._sandbox", raising=False)
    client = AsyncFinalPOS(sandbox=True)
    assert "finalpos_async.sandbox._sandbox" not in sys.modules
    assert client.is_embedded_sandbox
    assert client.base_url is None


# ------------------------------------------------------------------------------------ logging


async def test_one_log_line_per_attempt_without_the_key(
    scripted: ScriptedTransport, caplog: pytest.LogCaptureFixture
) -> None:
    scripted.play(status(503), ok())
    caplog.set_level(logging.DEBUG, logger="finalpos")
    client = scripted.client(api_key=KEY)
    async with client:
        await client.request("GET", "/v1/api/customers", params={"email": "a@b.c"})
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == 2
    assert lines[0].startswith("GET /v1/api/customers -> 503 attempt=1 elapsed_ms=")
    assert lines[1].startswith("GET /v1/api/customers -> 200 attempt=2 elapsed_ms=")
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert "retrying GET" in everything
    assert KEY not in everything
    assert "a@b.c" not in everything  # query strings stay out of the log


def test_finalpos_log_env_switches_logging_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from finalpos_async import _logging

    logger = logging.getLogger("finalpos")
    monkeypatch.setattr(_logging, "_configured", False)
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    monkeypatch.setenv("FINALPOS_LOG", "debug")
    _logging.setup_logging()
    assert logger.level == logging.DEBUG
    assert len(logger.handlers) == 1


def test_public_names_are_exported() -> None:
    for name in ("AsyncFinalPOS", "RawResponse", "encode_path_param", "APIStatusError"):
        assert name in finalpos_async.__all__
        assert hasattr(finalpos_async, name)


async def test_close_during_backoff_stops_the_retries(scripted: ScriptedTransport) -> None:
    # A 0.3 s wait asked for: the client is closed while it sleeps before the second attempt.
    scripted.play(status(503, retry_after_ms="300"))
    client = scripted.client()
    sleeping = asyncio.Event()
    with backoff_waits(lambda _delay: sleeping.set()) as waits:
        task = asyncio.create_task(client.request("GET", "/x"))
        await sleeping.wait()
        await client.close()
        # Ended at once (close() does not wait out the backoff), typed, and since the 503
        # may have been processed, saying so.
        assert task.done()
        with pytest.raises(ClientClosedError, match="closed while this call was in flight") as info:
            await task
        assert info.value.maybe_processed is True
        assert info.value.attempts == 1
    assert waits == [0.3]
    assert scripted.attempts == 1
    assert scripted.transports[0].closed


async def test_sandbox_true_runs_the_real_sandbox(clean_env: pytest.MonkeyPatch) -> None:
    async with AsyncFinalPOS(sandbox=True, backoff_base=0.001, backoff_cap=0.002) as client:
        assert await client.request("GET", "/v1/api/customers") == []
        raw = await client.send(
            "GET",
            "/v1/api/customers",
            options=RequestOptions(extra_headers={"x-sandbox-fault": "503,503,ok"}),
        )
        assert raw.status_code == 200
        assert raw.attempts == 3
        assert client.base_url is not None
        assert client.base_url.startswith("http://127.0.0.1:")
        assert checked_out(client) == 0
    assert client.state == "closed"
