"""Proxies (issue 24, "Proxies"): `proxy=`, `trust_env` and the environment, counted at a proxy.

A forwarding proxy on 127.0.0.1 (`tests/forward_proxy.py`) counts the requests it carries to a
sandbox and checks their `Proxy-Authorization`. Requests that name `api.finalpos.test` reach the
sandbox through the proxy (which forwards whatever host is named); where a test needs one to go
direct, `fake_dns` resolves that name to 127.0.0.1 (so nothing ever leaves the machine). The
proxy's password is never rendered: not in a client's `repr`, the DEBUG log, nor any rendering of
the error a refusing (407) or unreachable proxy causes.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import socket
import ssl
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from forward_proxy import ForwardProxy, clear_proxy_environment, forward_proxy
from rich.console import Console
from rich.traceback import Traceback
from self_signed import self_signed_tls

from finalpos_async import (
    AiohttpTransport,
    APIConnectionError,
    AsyncFinalPOS,
    MockTransport,
    TransportResponse,
)
from finalpos_async.sandbox import Sandbox

USER, PASSWORD = "proxyuser", "hunter2-s3cret"
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()  # what goes on the wire
FAKE_HOST = "api.finalpos.test"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_environment(monkeypatch)


@pytest.fixture
def proxy(finalpos_sandbox_thread: Sandbox) -> Iterator[ForwardProxy]:
    """A proxy that wants `USER`/`PASSWORD`, forwarding to the sandbox."""
    assert finalpos_sandbox_thread.url is not None
    with forward_proxy(finalpos_sandbox_thread.url, credentials=(USER, PASSWORD)) as running:
        yield running


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch, finalpos_sandbox_thread: Sandbox) -> None:
    """`api.finalpos.test` resolves to 127.0.0.1 (any other name as usual)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == FAKE_HOST else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def fake_url(sandbox: Sandbox) -> str:
    """The sandbox's URL with `api.finalpos.test` for its host (the port is the sandbox's)."""
    assert sandbox.url is not None
    return sandbox.url.replace("127.0.0.1", FAKE_HOST)


async def three_calls(client: AsyncFinalPOS) -> str:
    """A create, a retrieve and a list (three requests); returns the customer's id."""
    created = await client.customers.create(
        email="ann@example.com", first_name="Ann", last_name="Test"
    )
    assert (await client.customers.retrieve(created.id)).email == "ann@example.com"
    assert created.id in [c.id async for c in client.customers.list()]
    return created.id


def rendered(value: object) -> str:
    """`value` as a traceback with locals (both kinds), `repr` and `str` show it."""
    out = [repr(value), str(value)]
    if isinstance(value, BaseException):
        # From the SDK's frames on: this test's own locals hold the password it passed.
        tb = value.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        value = value.with_traceback(tb)
        exception = traceback.TracebackException.from_exception(value, capture_locals=True)
        out.append("".join(exception.format()))
        buffer = io.StringIO()
        Console(file=buffer, width=400, color_system=None).print(
            Traceback.from_exception(type(value), value, tb, show_locals=True)
        )
        out.append(buffer.getvalue())
    return "\n".join(out)


def assert_no_credentials(text: str) -> None:
    assert PASSWORD not in text
    assert TOKEN not in text


# ------------------------------------------------------------------------------ proxy=


async def test_proxy_argument_carries_every_request_with_its_credentials(
    proxy: ForwardProxy, finalpos_sandbox_thread: Sandbox
) -> None:
    async with AsyncFinalPOS(
        finalpos_sandbox_thread.api_key,
        base_url=finalpos_sandbox_thread.url,
        proxy=proxy.url_with_credentials,
    ) as client:
        await three_calls(client)
    assert proxy.forwarded == 3
    assert proxy.refused == 0
    # Absolute-form request targets, to the sandbox's own (loopback) address: `proxy=` is
    # used for every host, loopback included.
    assert all(s.target.startswith(f"{finalpos_sandbox_thread.url}/v1/") for s in proxy.seen)
    assert {s.authorization for s in proxy.seen} == {f"Basic {TOKEN}"}


async def test_proxy_argument_wins_over_the_environment_and_no_proxy(
    proxy: ForwardProxy, finalpos_sandbox_thread: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "*")
    async with AsyncFinalPOS(
        finalpos_sandbox_thread.api_key,
        base_url=finalpos_sandbox_thread.url,
        proxy=proxy.url_with_credentials,
    ) as client:
        await three_calls(client)
    assert proxy.forwarded == 3


async def test_the_embedded_sandbox_is_reached_directly_even_with_a_proxy(
    proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url_with_credentials)
    async with AsyncFinalPOS(sandbox=True, proxy=proxy.url_with_credentials) as client:
        await three_calls(client)
    assert proxy.seen == []


# ------------------------------------------------------------------------- trust_env


async def test_http_proxy_from_the_environment_is_used_by_default(
    proxy: ForwardProxy, finalpos_sandbox_thread: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url_with_credentials)
    url = fake_url(finalpos_sandbox_thread)
    async with AsyncFinalPOS(
        finalpos_sandbox_thread.api_key, base_url=url, allow_insecure_http=True
    ) as client:
        await three_calls(client)
    assert proxy.forwarded == 3
    assert all(s.target.startswith(f"{url}/v1/") for s in proxy.seen)


async def test_lowercase_and_all_proxy_variables_are_read_too(
    proxy: ForwardProxy, finalpos_sandbox_thread: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")  # lower precedence: unused
    # Without a scheme, as curl and httpx read it.
    monkeypatch.setenv("http_proxy", proxy.url_with_credentials.removeprefix("http://"))
    async with AsyncFinalPOS(
        finalpos_sandbox_thread.api_key,
        base_url=fake_url(finalpos_sandbox_thread),
        allow_insecure_http=True,
    ) as client:
        await three_calls(client)
    assert proxy.forwarded == 3


@pytest.mark.usefixtures("fake_dns")
@pytest.mark.parametrize(
    "no_proxy",
    [FAKE_HOST, f".{FAKE_HOST.split('.', 1)[1]}", "finalpos.test", "*", "x.org, " + FAKE_HOST],
)
async def test_no_proxy_sends_its_hosts_direct(
    proxy: ForwardProxy,
    finalpos_sandbox_thread: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url_with_credentials)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    async with AsyncFinalPOS(
        finalpos_sandbox_thread.api_key,
        base_url=fake_url(finalpos_sandbox_thread),
        allow_insecure_http=True,
    ) as client:
        await three_calls(client)
    assert proxy.seen == []


@pytest.mark.usefixtures("fake_dns")
async def test_no_proxy_for_another_host_still_proxies(
    proxy: ForwardProxy, finalpos_sandbox_thread: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url_with_credentials)
    monkeypatch.setenv("no_proxy", "other.finalpos.test,finalpos.test:1")  # another port
    async with AsyncFinalPOS(
        finalpos_sandbox_thread.api_key,
        base_url=fake_url(finalpos_sandbox_thread),
        allow_insecure_http=True,
    ) as client:
        await three_calls(client)
    assert proxy.forwarded == 3


@pytest.mark.usefixtures("fake_dns")
async def test_trust_env_false_ignores_the_environment(
    proxy: ForwardProxy, finalpos_sandbox_thread: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url_with_credentials)
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/bundle.pem")  # not read either
    async with AsyncFinalPOS(
        finalpos_sandbox_thread.api_key,
        base_url=fake_url(finalpos_sandbox_thread),
        allow_insecure_http=True,
        trust_env=False,
    ) as client:
        await three_calls(client)
    assert proxy.seen == []


async def test_loopback_hosts_never_go_through_the_environments_proxy(
    proxy: ForwardProxy, finalpos_sandbox_thread: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url_with_credentials)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url_with_credentials)
    assert finalpos_sandbox_thread.url is not None
    for url in (
        finalpos_sandbox_thread.url,
        finalpos_sandbox_thread.url.replace("127.0.0.1", "localhost"),
    ):
        async with AsyncFinalPOS(finalpos_sandbox_thread.api_key, base_url=url) as client:
            await client.request("GET", "/v1/api/customers")
    async with AsyncFinalPOS(sandbox=True) as client:
        await three_calls(client)
    assert proxy.seen == []


# ----------------------------------------------------------- credentials never shown


async def test_the_proxy_password_is_never_in_a_repr_or_the_debug_log(
    proxy: ForwardProxy,
    finalpos_sandbox_thread: Sandbox,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    for kwargs in ({"proxy": proxy.url_with_credentials}, {}):
        if not kwargs:  # the same through the environment
            monkeypatch.setenv("HTTP_PROXY", proxy.url_with_credentials)
        client = AsyncFinalPOS(
            finalpos_sandbox_thread.api_key,
            base_url=fake_url(finalpos_sandbox_thread),
            allow_insecure_http=True,
            **kwargs,
        )
        async with client:
            await three_calls(client)
            shown = rendered(client) + rendered(client.transport)
        assert_no_credentials(shown)
        assert f"{USER}:***@127.0.0.1:{proxy.port}" in repr(client.transport)
    assert proxy.forwarded == 6
    log = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert f"{USER}:***@127.0.0.1:{proxy.port}" in log  # it says which proxy it uses
    assert_no_credentials(log)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_proxy_refusing_the_credentials_is_a_clear_error_without_them(
    finalpos_sandbox_thread: Sandbox,
    caplog: pytest.LogCaptureFixture,
    scheme: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert finalpos_sandbox_thread.url is not None
    with forward_proxy(finalpos_sandbox_thread.url, credentials=(USER, "other")) as refusing:
        # https: aiohttp's own error for a refused CONNECT quotes the proxy URL, password
        # and all; the client's message is its own.
        async with AsyncFinalPOS(
            finalpos_sandbox_thread.api_key,
            base_url=f"{scheme}://{FAKE_HOST}",
            allow_insecure_http=True,
            proxy=f"http://{USER}:{PASSWORD}@127.0.0.1:{refusing.port}",
        ) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.request("GET", "/v1/api/customers")
        assert refusing.refused == 1  # the same credentials would fail again: no retry
    message = str(caught.value)
    assert "407 Proxy Authentication Required" in message
    assert f"http://{USER}:***@127.0.0.1:{refusing.port} (from proxy=)" in message
    assert "percent-encoded" in message
    shown = rendered(caught.value) + "\n".join(r.getMessage() for r in caplog.records)
    assert_no_credentials(shown)


async def test_an_unreachable_proxy_is_named_without_its_password(
    finalpos_sandbox_thread: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert finalpos_sandbox_thread.url is not None
    with forward_proxy(finalpos_sandbox_thread.url) as gone:
        port = gone.port
    async with AsyncFinalPOS(
        finalpos_sandbox_thread.api_key,
        base_url=finalpos_sandbox_thread.url,
        proxy=f"http://{USER}:{PASSWORD}@127.0.0.1:{port}",
        max_retries=1,
        backoff_base=0.001,
    ) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.request("GET", "/v1/api/customers")
    message = str(caught.value)
    assert f"cannot connect to the proxy http://{USER}:***@127.0.0.1:{port} (from proxy=)" in (
        message
    )
    assert caught.value.attempts == 2  # never reached: retried like any refused connect
    shown = rendered(caught.value) + "\n".join(r.getMessage() for r in caplog.records)
    assert_no_credentials(shown)


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (f"socks5://{USER}:{PASSWORD}@127.0.0.1:1080", "aiohttp-socks"),
        (f"https://{USER}:{PASSWORD}@proxy.example.com", "must be an http:// proxy URL"),
        ("proxy.example.com:3128", "scheme 'missing'"),
        (f"http://{USER}:{PASSWORD}@", "has no host"),
        (f"http://{USER}:{PASSWORD}@proxy.example.com:99999", "check the port"),
        (f"http://{USER}:{PASSWORD}@proxy.example.com:3128/path?q=1", "no path or query"),
    ],
)
def test_a_bad_proxy_argument_names_it_and_the_fix(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=r"^proxy ") as caught:
        AsyncFinalPOS("sk_test_key", proxy=value)
    message = str(caught.value)
    assert message.startswith("proxy ")
    assert says in message
    assert "http://[user:password@]host[:port]" in message
    assert_no_credentials(rendered(caught.value))


def test_a_proxy_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="proxy must be a proxy URL"):
        AsyncFinalPOS("sk_test_key", proxy=3128)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "HTTP_PROXY"])
def test_a_bad_proxy_variable_names_it_and_the_way_out(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, f"socks5h://{USER}:{PASSWORD}@127.0.0.1:1080")
    with pytest.raises(ValueError, match=name) as caught:
        AsyncFinalPOS("sk_test_key")
    message = str(caught.value)
    assert message.startswith(f"{name} must be an http:// proxy URL")
    assert f"fix the {name} environment variable" in message
    assert "trust_env=False" in message
    assert f"{USER}:***@127.0.0.1:1080" in message
    assert_no_credentials(rendered(caught.value))
    AsyncFinalPOS("sk_test_key", trust_env=False)  # the way out


def test_a_missing_ssl_cert_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match=r"SSL_CERT_FILE=.*missing\.pem.* is not a file"):
        AsyncFinalPOS("sk_test_key")
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "empty.pem"))
    with pytest.raises(ValueError, match="holds no usable CA certificate"):
        AsyncFinalPOS("sk_test_key")
    AsyncFinalPOS("sk_test_key", trust_env=False)


async def test_proxy_with_a_session_or_transport_of_ones_own_is_refused() -> None:
    import aiohttp

    transport = MockTransport(lambda request: TransportResponse(200, json=[]))
    with pytest.raises(ValueError, match="proxy and transport, both passed as arguments"):
        AsyncFinalPOS("sk_test_key", transport=transport, proxy="http://127.0.0.1:3128")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match=r"aiohttp\.ClientSession\(proxy=\.\.\.\)"):
            AsyncFinalPOS("sk_test_key", session=session, proxy="http://127.0.0.1:3128")


def test_trust_env_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="trust_env must be a bool"):
        AsyncFinalPOS("sk_test_key", trust_env="no")  # type: ignore[arg-type]


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1, and its file."""
    return self_signed_tls(tmp_path)


async def test_ssl_cert_file_is_what_tls_is_verified_against(
    self_signed: tuple[ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    context, cert = self_signed

    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        async with AsyncFinalPOS("sk_test_key", base_url=url) as client:
            assert await client.request("GET", "/v1/api/customers") == {"ok": True}
        async with AsyncFinalPOS("sk_test_key", base_url=url, trust_env=False) as client:
            with pytest.raises(APIConnectionError, match=r"(?i)certificate"):
                await client.request("GET", "/v1/api/customers")
    finally:
        await runner.cleanup()


def test_one_tls_context_per_ca_bundle_is_shared_by_every_client(
    self_signed: tuple[ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Loading a bundle costs tens of milliseconds: a client per request must not pay it.
    _, cert = self_signed
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    first, second = (AsyncFinalPOS("sk_test_key").transport for _ in range(2))
    assert isinstance(first, AiohttpTransport)
    assert isinstance(second, AiohttpTransport)
    assert first.tls_context is not None
    assert second.tls_context is first.tls_context
    cert.write_bytes(cert.read_bytes())  # a renewed bundle is read again
    os.utime(cert, ns=(0, 10**9))
    third = AsyncFinalPOS("sk_test_key").transport
    assert isinstance(third, AiohttpTransport)
    assert third.tls_context is not first.tls_context


async def test_a_percent_encoded_password_reaches_the_proxy_decoded_and_shows_in_no_form(
    finalpos_sandbox_thread: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "p@ss:w/rd#1"
    encoded = quote(password, safe="")
    assert finalpos_sandbox_thread.url is not None
    with forward_proxy(finalpos_sandbox_thread.url, credentials=(USER, password)) as accepting:
        url = f"http://{USER}:{encoded}@127.0.0.1:{accepting.port}"
        async with AsyncFinalPOS(
            finalpos_sandbox_thread.api_key, base_url=finalpos_sandbox_thread.url, proxy=url
        ) as client:
            await client.request("GET", "/v1/api/customers")
            shown = rendered(client) + rendered(client.transport)
        assert accepting.forwarded == 1
        assert accepting.refused == 0
    with forward_proxy(finalpos_sandbox_thread.url, credentials=(USER, "x")) as refusing:
        url = f"http://{USER}:{encoded}@127.0.0.1:{refusing.port}"
        async with AsyncFinalPOS(
            finalpos_sandbox_thread.api_key, base_url=finalpos_sandbox_thread.url, proxy=url
        ) as client:
            with pytest.raises(APIConnectionError, match="407") as caught:
                await client.request("GET", "/v1/api/customers")
    shown += rendered(caught.value) + "\n".join(r.getMessage() for r in caplog.records)
    assert password not in shown
    assert encoded not in shown
    assert f"{USER}:***@127.0.0.1" in shown
