"""Explicit constructor arguments win over the environment, `FINALPOS_SANDBOX` included.

An environment setting that an argument contradicts is ignored: `base_url`, `session` or
`transport` given means no embedded sandbox whatever `FINALPOS_SANDBOX` says; `api_key` and
`base_url` given mean `FINALPOS_API_KEY` / `FINALPOS_BASE_URL` are not even read. An error that
remains names where each setting came from (the argument, or the environment variable).

The `base_url` test gives no `transport` (one would exclude the sandbox by itself), so its
calls go through the default aiohttp transport to a real server on 127.0.0.1.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from conftest import ScriptedServer

from finalpos_async import AsyncFinalPOS, MockTransport, Request, TransportResponse
from finalpos_async.sandbox import Sandbox
from finalpos_sync import FinalPOS

KEY = "sk_live_explicit_1234"
ENV_KEY = "sk_live_from_the_environment_5678"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every FINALPOS_* variable set, as in a shell where someone turned the sandbox on."""
    monkeypatch.setenv("FINALPOS_SANDBOX", "1")
    monkeypatch.setenv("FINALPOS_API_KEY", ENV_KEY)
    monkeypatch.setenv("FINALPOS_BASE_URL", "https://env.finalpos.test")
    return monkeypatch


@pytest.fixture
def sandbox_thread() -> Iterator[Sandbox]:
    with Sandbox().run_in_thread() as sb:
        yield sb


def echo(request: Request) -> TransportResponse:
    return TransportResponse(200, json={"url": request.url, "key": request.headers["x-api-key"]})


async def test_base_url_argument_wins_over_finalpos_sandbox(
    env: pytest.MonkeyPatch, scripted_server: ScriptedServer
) -> None:
    async with AsyncFinalPOS(api_key=KEY, base_url=scripted_server.url) as client:
        assert not client.is_embedded_sandbox
        assert client.base_url == scripted_server.url
        assert await client.request("GET", "/v1/api/customers") == {"ok": True}
    assert scripted_server.seen[0].headers["x-api-key"] == KEY


async def test_transport_argument_wins_over_finalpos_sandbox(env: pytest.MonkeyPatch) -> None:
    # The README's MockTransport program: no base_url, so FINALPOS_BASE_URL gives the address.
    transport = MockTransport(echo)
    async with AsyncFinalPOS("sk_test", transport=transport) as client:
        assert not client.is_embedded_sandbox
        answer = await client.request("GET", "/v1/api/customers")
    assert answer == {"url": "https://env.finalpos.test/v1/api/customers", "key": "sk_test"}


async def test_session_argument_wins_over_finalpos_sandbox(env: pytest.MonkeyPatch) -> None:
    async with aiohttp.ClientSession() as session:
        client = AsyncFinalPOS(session=session)  # key and address from the environment
        assert not client.is_embedded_sandbox
        assert client.base_url == "https://env.finalpos.test"
        await client.close()


def test_the_sync_client_lets_its_arguments_win_too(
    env: pytest.MonkeyPatch, sandbox_thread: Sandbox
) -> None:
    with FinalPOS(api_key=sandbox_thread.api_key, base_url=sandbox_thread.url) as client:
        assert not client.is_embedded_sandbox
        created = client.customers.create(email="a@b.c", first_name="Ada", last_name="Lovelace")
        assert [c.id for c in client.customers.list()] == [created.id]
    with FinalPOS("sk_test", transport=MockTransport(echo)) as client:
        assert not client.is_embedded_sandbox
        assert client.request("GET", "/x") == {
            "url": "https://env.finalpos.test/x",
            "key": "sk_test",
        }


def test_finalpos_sandbox_is_ignored_with_a_debug_line_naming_the_argument(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="finalpos")
    AsyncFinalPOS(KEY, base_url="https://api.finalpos.com")
    assert "FINALPOS_SANDBOX is ignored: the base_url argument" in caplog.text


def test_finalpos_sandbox_still_applies_when_nothing_contradicts_it(
    env: pytest.MonkeyPatch,
) -> None:
    # No argument points elsewhere: the sandbox, which does not read FINALPOS_API_KEY/BASE_URL.
    client = AsyncFinalPOS()
    assert client.is_embedded_sandbox
    assert client.base_url is None
    # An api_key alone does not contradict it: the sandbox accepts that key.
    assert AsyncFinalPOS(api_key=KEY).is_embedded_sandbox
    assert FinalPOS(api_key=KEY).is_embedded_sandbox
    # sandbox=False (an argument) beats FINALPOS_SANDBOX=1.
    off = AsyncFinalPOS(sandbox=False)
    assert not off.is_embedded_sandbox
    assert off.base_url == "https://env.finalpos.test"


def test_sandbox_argument_wins_over_finalpos_base_url_and_api_key(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("FINALPOS_SANDBOX", "0")
    env.setenv("FINALPOS_BASE_URL", "http://remote.example.com")  # would be refused if read
    client = AsyncFinalPOS(sandbox=True)
    assert client.is_embedded_sandbox
    assert client.base_url is None


def test_arguments_mean_the_variables_are_not_even_read(env: pytest.MonkeyPatch) -> None:
    # Both variables hold values that are refused when used; the arguments make them moot.
    env.setenv("FINALPOS_API_KEY", " sk_with_spaces ")
    env.setenv("FINALPOS_BASE_URL", "http://remote.example.com")
    client = AsyncFinalPOS(api_key=KEY, base_url="https://api.finalpos.com")
    assert client.base_url == "https://api.finalpos.com"
    assert client.credentials_fingerprint != AsyncFinalPOS(ENV_KEY).credentials_fingerprint


def test_contradicting_arguments_say_both_are_arguments(env: pytest.MonkeyPatch) -> None:
    for name, value in (
        ("base_url", "https://api.finalpos.com"),
        ("transport", MockTransport(echo)),
    ):
        with pytest.raises(
            ValueError,
            match=rf"{name} and sandbox=True, both passed as arguments, exclude each other",
        ):
            AsyncFinalPOS(sandbox=True, **{name: value})  # type: ignore[arg-type]  # either
        with pytest.raises(ValueError, match=rf"{name} and sandbox=True, both passed as arg"):
            FinalPOS(sandbox=True, **{name: value})  # type: ignore[arg-type]  # either


def test_a_bad_value_from_the_environment_names_its_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("FINALPOS_SANDBOX", "")
    env.setenv("FINALPOS_BASE_URL", "http://remote.example.com")
    with pytest.raises(ValueError, match=r"^base_url \(from the FINALPOS_BASE_URL environment"):
        AsyncFinalPOS(KEY)
    with pytest.raises(ValueError, match=r"^base_url 'http://remote"):  # the argument's own
        AsyncFinalPOS(KEY, base_url="http://remote.example.com")
    env.setenv("FINALPOS_BASE_URL", "https://api.finalpos.com")
    env.setenv("FINALPOS_API_KEY", ENV_KEY + "\n")
    with pytest.raises(
        ValueError, match=r"^api_key \(from the FINALPOS_API_KEY environment"
    ) as info:
        FinalPOS()
    assert ENV_KEY not in str(info.value)
    with pytest.raises(ValueError, match=r"^api_key has spaces"):
        AsyncFinalPOS(KEY + "\n")


def test_the_readme_configuration_section_says_arguments_win() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Configuration\n(.*?)(?=^## )", readme, re.M | re.S)
    assert match is not None, "README has no Configuration section"
    section = " ".join(match.group(1).split())
    assert "Explicit arguments win, `FINALPOS_SANDBOX` included" in section
    # The error texts it quotes are the ones the tests above check.
    assert "`base_url and sandbox=True, both passed as arguments, exclude each other`" in section
    assert "`base_url (from the FINALPOS_BASE_URL environment variable) ...`" in section
