"""`finalpos_sync.FinalPOS` through a proxy: `proxy=`, `HTTP_PROXY` and `NO_PROXY`, counted at a
forwarding proxy on 127.0.0.1 (`tests/forward_proxy.py`), and the password never shown."""

from __future__ import annotations

import base64
import logging
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from forward_proxy import ForwardProxy, clear_proxy_environment, forward_proxy

from finalpos_async.sandbox import Sandbox
from finalpos_sync import APIConnectionError, FinalPOS

USER, PASSWORD = "proxyuser", "sync-s3cret-pw"
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
FAKE_HOST = "api.finalpos.test"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_environment(monkeypatch)


@pytest.fixture
def proxy(finalpos_sandbox_thread: Sandbox) -> Iterator[ForwardProxy]:
    assert finalpos_sandbox_thread.url is not None
    with forward_proxy(finalpos_sandbox_thread.url, credentials=(USER, PASSWORD)) as running:
        yield running


def calls(client: FinalPOS) -> None:
    """A create, a retrieve and a list: three requests."""
    created = client.customers.create(email="bo@example.com", first_name="Bo", last_name="T")
    assert client.customers.retrieve(created.id).id == created.id
    assert created.id in [c.id for c in client.customers.list()]


def test_the_sync_client_sends_every_request_through_its_proxy(
    proxy: ForwardProxy, finalpos_sandbox_thread: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with FinalPOS(
        finalpos_sandbox_thread.api_key,
        base_url=finalpos_sandbox_thread.url,
        proxy=proxy.url_with_credentials,
    ) as client:
        calls(client)
        shown = repr(client) + repr(client.async_client.transport)
    assert proxy.forwarded == 3
    assert {s.authorization for s in proxy.seen} == {f"Basic {TOKEN}"}
    assert f"{USER}:***@" in shown
    log = "\n".join(r.getMessage() for r in caplog.records)
    for text in (shown, log):
        assert PASSWORD not in text
        assert TOKEN not in text


def test_the_sync_client_honours_http_proxy_and_no_proxy(
    proxy: ForwardProxy,
    finalpos_sandbox_thread: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert finalpos_sandbox_thread.url is not None
    url = finalpos_sandbox_thread.url.replace("127.0.0.1", FAKE_HOST)
    monkeypatch.setenv("HTTP_PROXY", proxy.url_with_credentials)
    with FinalPOS(finalpos_sandbox_thread.api_key, base_url=url, allow_insecure_http=True) as c:
        calls(c)
    assert proxy.forwarded == 3

    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == FAKE_HOST else host, *args, **kwargs)

    # For the direct connections: the name resolves to 127.0.0.1 (never a DNS query). On the
    # asyncio loop, which asks `socket.getaddrinfo`; uvloop, when installed, would not.
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setitem(sys.modules, "uvloop", None)
    monkeypatch.setenv("NO_PROXY", FAKE_HOST)
    with FinalPOS(finalpos_sandbox_thread.api_key, base_url=url, allow_insecure_http=True) as c:
        calls(c)
    assert proxy.forwarded == 3  # none more


def test_a_refusing_proxy_fails_the_sync_call_without_showing_the_password(
    finalpos_sandbox_thread: Sandbox,
) -> None:
    assert finalpos_sandbox_thread.url is not None
    with (
        forward_proxy(finalpos_sandbox_thread.url, credentials=(USER, "other")) as refusing,
        FinalPOS(
            finalpos_sandbox_thread.api_key,
            base_url=finalpos_sandbox_thread.url,
            proxy=f"http://{USER}:{PASSWORD}@127.0.0.1:{refusing.port}",
        ) as client,
    ):
        with pytest.raises(APIConnectionError, match="407 Proxy Authentication Required") as info:
            client.customers.list().first_page()
        assert refusing.refused == 1
    assert PASSWORD not in f"{info.value} {info.value!r}"
    assert f"{USER}:***@127.0.0.1:{refusing.port}" in str(info.value)
