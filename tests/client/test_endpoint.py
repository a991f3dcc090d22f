"""The client's one `Endpoint`: a fixed URL and key, or the embedded sandbox the sandbox builds.

The sandbox is outside the client: `sandbox=True` gets `finalpos_async.sandbox.SandboxEndpoint`
from the package's composition root, and behaves as it always did (lazy start, one sandbox for
calls that arrive together, shared by `with_options` copies, stopped by `close()`, sync too).
And the CLI and the sandbox read the spec through one resolver (`finalpos_async.spec`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from finalpos_async import AsyncFinalPOS
from finalpos_async._endpoint import Endpoint, FixedEndpoint
from finalpos_async._secret import conceal
from finalpos_async.sandbox import SandboxEndpoint
from finalpos_async.sandbox import _sandbox as sandbox_server
from finalpos_async.spec import component, inline_schema, load_spec
from finalpos_sync import FinalPOS

KEY = "sk_live_endpoint_secret_98765"
DEADLINE = 30.0


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("FINALPOS_API_KEY", "FINALPOS_BASE_URL", "FINALPOS_SANDBOX"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_both_endpoints_fit_the_protocol_and_never_render_the_key() -> None:
    fixed: Endpoint = FixedEndpoint("https://api.example.com", conceal(KEY))
    embedded: Endpoint = SandboxEndpoint(conceal(KEY))
    assert (fixed.base_url, fixed.api_key, fixed.embedded) == (
        "https://api.example.com",
        KEY,
        False,
    )
    assert (embedded.base_url, embedded.api_key, embedded.embedded) == (None, KEY, True)
    for endpoint in (fixed, embedded):
        assert KEY not in repr(endpoint)
    assert SandboxEndpoint().api_key == "sk_sandbox_finalpos"  # the sandbox's default key


def test_the_client_holds_a_fixed_endpoint_for_a_url_and_key(clean_env: pytest.MonkeyPatch) -> None:
    client = AsyncFinalPOS(KEY, base_url="https://api.example.com/")
    assert client.base_url == "https://api.example.com"
    assert not client.is_embedded_sandbox
    view = client.with_options(base_url="https://other.example.com", api_key="sk_other_key_1")
    assert view.base_url == "https://other.example.com"
    assert view.credentials_fingerprint != client.credentials_fingerprint
    assert client.base_url == "https://api.example.com"  # the view's override is its own


class CountingSandbox:
    """Stands in for the server: counts starts and stops, holds its start until released."""

    instances: list[CountingSandbox] = []
    release: asyncio.Event

    def __init__(self, *, api_key: str = "sk_sandbox_finalpos") -> None:
        self.api_key = api_key
        self.url = "http://127.0.0.1:9/"
        self.started = 0
        self.closed = 0
        CountingSandbox.instances.append(self)

    async def start(self) -> None:
        await CountingSandbox.release.wait()
        self.started += 1

    async def close(self) -> None:
        self.closed += 1


@pytest.fixture
def counting_sandbox(monkeypatch: pytest.MonkeyPatch) -> type[CountingSandbox]:
    CountingSandbox.instances = []
    CountingSandbox.release = asyncio.Event()
    monkeypatch.setattr(sandbox_server, "Sandbox", CountingSandbox)
    return CountingSandbox


async def test_concurrent_first_resolves_start_one_sandbox(
    counting_sandbox: type[CountingSandbox],
) -> None:
    endpoint = SandboxEndpoint()
    resolving = [asyncio.create_task(endpoint.resolve()) for _ in range(10)]
    await asyncio.sleep(0)  # one step each: the first is starting, the others wait for it
    assert len(counting_sandbox.instances) == 1
    counting_sandbox.release.set()
    urls = await asyncio.wait_for(asyncio.gather(*resolving), DEADLINE)
    assert urls == ["http://127.0.0.1:9"] * 10  # without the trailing slash
    (sandbox,) = counting_sandbox.instances
    assert sandbox.started == 1
    assert endpoint.base_url == "http://127.0.0.1:9"
    await endpoint.aclose()
    await endpoint.aclose()  # idempotent
    assert sandbox.closed == 1
    assert endpoint.base_url is None
    assert await endpoint.resolve() is None  # closed for good: nothing starts again
    assert len(counting_sandbox.instances) == 1


async def test_aclose_during_the_start_stops_that_sandbox(
    counting_sandbox: type[CountingSandbox],
) -> None:
    endpoint = SandboxEndpoint(api_key="sk_given_key_12345")
    resolving = asyncio.create_task(endpoint.resolve())
    await asyncio.sleep(0)  # one step: the task is inside the held start
    assert len(counting_sandbox.instances) == 1
    await endpoint.aclose()  # while the start is held
    counting_sandbox.release.set()
    assert await asyncio.wait_for(resolving, DEADLINE) is None
    (sandbox,) = counting_sandbox.instances
    assert sandbox.api_key == "sk_given_key_12345"
    assert (sandbox.started, sandbox.closed) == (1, 1)


async def test_the_fingerprint_of_a_sandbox_client_is_its_key_before_and_after_start(
    clean_env: pytest.MonkeyPatch,
) -> None:
    async with AsyncFinalPOS(sandbox=True) as client:
        before = client.credentials_fingerprint
        assert client.base_url is None
        await client.request("GET", "/v1/api/customers")
        assert client.base_url is not None
        assert client.credentials_fingerprint == before
    assert client.base_url is None  # stopped with the client


def test_the_sync_client_runs_its_sandbox_and_stops_it(clean_env: pytest.MonkeyPatch) -> None:
    with FinalPOS(sandbox=True) as client:
        assert client.is_embedded_sandbox
        view = client.with_options(max_retries=0)
        created = client.customers.create(email="a@example.com", first_name="A", last_name="B")
        assert view.customers.retrieve(created.id).id == created.id  # one sandbox, shared
        url = client.base_url
        assert url is not None
        assert url.startswith("http://127.0.0.1:")
    assert client.base_url is None


def _has_reference(schema: Any) -> bool:
    text = json.dumps(schema)
    return '"$ref"' in text or '"allOf"' in text


def test_component_is_the_one_resolver_inlined_all_the_way_down() -> None:
    spec = load_spec()
    for name in spec["components"]["schemas"]:
        assert not _has_reference(component(name)), name
    assert component("CreateCustomerDto") == inline_schema(
        spec["components"]["schemas"]["CreateCustomerDto"], spec
    )
    assert component("CreateCustomerDto") is component("CreateCustomerDto")  # built once
