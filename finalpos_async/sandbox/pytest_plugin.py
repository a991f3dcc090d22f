"""pytest plugin (entry point ``pytest11``, loaded automatically): a running sandbox per test.

Fixtures:

- ``finalpos_sandbox`` (async): a started `Sandbox` with empty state, stopped after the test.
- ``finalpos_client`` (async): an `AsyncFinalPOS` bound to ``finalpos_sandbox``, closed after.
- ``finalpos_sandbox_thread``: a `Sandbox` served from a background thread (for sync code).
- ``finalpos_sync_client``: a `finalpos_sync.FinalPOS` bound to ``finalpos_sandbox_thread``.

Configure a test's sandbox with the ``finalpos_sandbox`` marker, whose keyword arguments go to
`Sandbox` (``faults=``, ``seed=``, ``api_key=``, ``db=``), and its client with the
``finalpos_client`` marker, whose keyword arguments go to the client (``max_retries=``,
``backoff_base=``, ...)::

    @pytest.mark.asyncio
    @pytest.mark.finalpos_sandbox(faults="rate-limit=5,retry-after=0")
    async def test_my_code_survives_rate_limits(finalpos_client):
        customer = await finalpos_client.customers.create(
            email="a@example.com", first_name="Ada", last_name="Lovelace"
        )
        assert (await finalpos_client.customers.retrieve(customer.id)).email == "a@example.com"

The async fixtures need pytest-asyncio. In its default (strict) mode only tests marked
``@pytest.mark.asyncio`` run on an event loop; with ``asyncio_mode = "auto"`` every async test
does. (Marking the tests from this plugin is not possible: pytest-asyncio decides which items are
async tests while collecting them, before ``pytest_collection_modifyitems`` could add a marker.)

pytest imports this module at the start of every run in any environment where the package is
installed, so it imports nothing heavy: the sandbox, aiohttp and the client are imported by the
fixtures, when a test first uses one (``tests/sandbox/test_sandbox_plugin.py`` holds that to a
test).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import pytest

if TYPE_CHECKING:
    from finalpos_async import AsyncFinalPOS
    from finalpos_sync import FinalPOS

    from ._sandbox import Sandbox

_F = TypeVar("_F", bound=Callable[..., Any])


class _FixtureDecorator(Protocol):
    def __call__(self, function: _F, /) -> _F: ...


# pytest-asyncio is imported here, not on first use, because its decorator has to be applied
# when the fixtures are defined; it costs nothing extra where it is installed, since pytest
# loads it as a plugin in the same run anyway.
try:  # async fixtures need pytest-asyncio; without it only the thread-based ones exist
    import pytest_asyncio

    # Typed as what the fixtures use it for (a decorator keeping the function's type), so the
    # fixtures stay typed; pytest-asyncio's own overloads also take arguments.
    _async_fixture: _FixtureDecorator | None = cast("_FixtureDecorator", pytest_asyncio.fixture)
except ImportError:  # pragma: no cover - depends on the environment
    _async_fixture = None

MARKER = "finalpos_sandbox"
CLIENT_MARKER = "finalpos_client"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker so `--strict-markers` accepts it."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**kwargs): keyword arguments for the test's finalpos Sandbox "
        "(faults=, seed=, api_key=, db=)",
    )
    config.addinivalue_line(
        "markers",
        f"{CLIENT_MARKER}(**kwargs): keyword arguments for the test's finalpos client "
        "(max_retries=, backoff_base=, timeout=, ...)",
    )


def _sandbox_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(MARKER)
    return dict(marker.kwargs) if marker is not None else {}


def _client_kwargs(request: pytest.FixtureRequest, sandbox: Sandbox) -> dict[str, Any]:
    marker = request.node.get_closest_marker(CLIENT_MARKER)
    kwargs = dict(marker.kwargs) if marker is not None else {}
    return {"api_key": sandbox.api_key, "base_url": sandbox.url, **kwargs}


if _async_fixture is not None:

    @_async_fixture
    async def finalpos_sandbox(request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
        """A running sandbox with empty state, on a free port of 127.0.0.1."""
        from ._sandbox import Sandbox

        async with Sandbox(**_sandbox_kwargs(request)) as sandbox:
            yield sandbox

    @_async_fixture
    async def finalpos_client(
        request: pytest.FixtureRequest, finalpos_sandbox: Sandbox
    ) -> AsyncIterator[AsyncFinalPOS]:
        """An `AsyncFinalPOS` client bound to `finalpos_sandbox`, closed after the test."""
        from finalpos_async import AsyncFinalPOS  # imported normally: a broken import fails

        client = AsyncFinalPOS(**_client_kwargs(request, finalpos_sandbox))
        try:
            yield client
        finally:
            await client.close()


@pytest.fixture
def finalpos_sandbox_thread(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A sandbox served from a background thread: for sync code and subprocesses."""
    from ._sandbox import Sandbox

    with Sandbox(**_sandbox_kwargs(request)).run_in_thread() as sandbox:
        yield sandbox


@pytest.fixture
def finalpos_sync_client(
    request: pytest.FixtureRequest, finalpos_sandbox_thread: Sandbox
) -> Iterator[FinalPOS]:
    """A sync `finalpos_sync.FinalPOS` client bound to `finalpos_sandbox_thread`, closed after."""
    from finalpos_sync import FinalPOS

    client = FinalPOS(**_client_kwargs(request, finalpos_sandbox_thread))
    try:
        yield client
    finally:
        client.close()
