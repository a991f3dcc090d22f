"""The per-call shortcuts taken for speed give exactly what the slow paths give, and
`import finalpos_async` stays cheap by loading models, converter and extras on first use.

The read-timeout tests keep a raw server on 127.0.0.1 that trickles bytes: the aiohttp
transport's socket timer on a reused connection is what they check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import uuid
import warnings
from urllib.parse import quote

import pytest
import yarl
from hypothesis import given
from hypothesis import strategies as st

from finalpos_async import APITimeoutError, AsyncFinalPOS
from finalpos_async._request import new_idempotency_key
from finalpos_async._transport import URL_SAFE, wire_url
from finalpos_async._urls import encode_path_param

# Heavy or optional parts that a bare `import finalpos_async` must not load.
_LAZY_MODULES = (
    "cattrs",
    "finalpos_async._converter",
    "finalpos_async._pagination",
    "finalpos_async.types.customers",
    "finalpos_async.resources.customers",
    "finalpos_async.sandbox",
    "finalpos_async.bulk",
    "finalpos_async.cli",
)


def _run(code: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_import_loads_no_models_converter_or_extras() -> None:
    loaded = _run(
        "import json, sys\n"
        "import finalpos_async\n"
        f"names = {list(_LAZY_MODULES)!r}\n"
        "print(json.dumps({'loaded': [m for m in names if m in sys.modules]}))\n"
    )
    assert loaded == {"loaded": []}


def test_lazy_names_resolve_to_the_defining_modules_on_first_use() -> None:
    result = _run(
        "import json, sys\n"
        "import finalpos_async\n"
        "from finalpos_async import Customer, Page, AsyncPaginator, DeleteResponse\n"
        "from finalpos_async.types import Address\n"
        "import finalpos_async.types.customers as tc\n"
        "print(json.dumps({\n"
        "  'customer': Customer is tc.Customer, 'address': Address is tc.Address,\n"
        "  'page': Page.__module__, 'paginator': AsyncPaginator.__module__,\n"
        "  'delete': DeleteResponse.__module__,\n"
        "  'in_dir': 'Customer' in dir(finalpos_async),\n"
        "}))\n"
    )
    assert result == {
        "customer": True,
        "address": True,
        "page": "finalpos_async._pagination",
        "paginator": "finalpos_async._pagination",
        "delete": "finalpos_async.types.shared",
        "in_dir": True,
    }


def test_unknown_package_attribute_is_an_attribute_error() -> None:
    import finalpos_async

    with pytest.raises(AttributeError, match="NoSuchModel"):
        finalpos_async.NoSuchModel  # noqa: B018 - the lookup is the test
    with pytest.raises(ImportError):
        exec("from finalpos_async.types import NoSuchModel", {})


def test_every_public_name_resolves() -> None:
    import finalpos_async

    missing = [name for name in finalpos_async.__all__ if not hasattr(finalpos_async, name)]
    assert missing == []


@given(st.text(max_size=40))
def test_path_params_encode_exactly_like_quote(value: str) -> None:
    bad = (
        not value
        or value in {".", ".."}
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
        # lone surrogates cannot be UTF-8 encoded: quote() itself refuses them
        or any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
    )
    if bad:
        with pytest.raises((ValueError, UnicodeEncodeError)):
            encode_path_param(value, "id")
    else:
        assert encode_path_param(value, "id") == quote(value, safe="")


@given(st.text(alphabet=st.characters(max_codepoint=0x7E, min_codepoint=0x20), max_size=40))
def testwire_url_fast_path_matches_quoting(path: str) -> None:
    # The shortcut skips `quote` when nothing needs escaping: the URL must come out the same.
    url = "http://127.0.0.1:8080/v1/" + path
    assert str(wire_url(url)) == str(yarl.URL(quote(url, safe=URL_SAFE), encoded=True))


def test_idempotency_keys_are_distinct_version_4_uuids() -> None:
    keys = [new_idempotency_key() for _ in range(2000)]
    assert len(set(keys)) == len(keys)
    for key in keys:
        parsed = uuid.UUID(key)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == key


# --- the read timeout keeps aiohttp's `sock_read` meaning on reused connections ---------


class _TrickleServer:
    """Answers GET with a body sent one byte per `gap` seconds for `count` bytes, then stalls
    (or, with `count=None`, completes at once). Each request is served on a kept-alive
    connection, so later requests reuse the protocol (and its timer) of earlier ones."""

    def __init__(self) -> None:
        self.plan: list[tuple[float, int | None]] = []
        self.release = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self.release.set()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                gap, count = self.plan.pop(0)
                if count is None:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    await writer.drain()
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                for _ in range(count):
                    await writer.drain()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.release.wait(), gap)
                    writer.write(b" ")
                await writer.drain()
                await self.release.wait()  # stall until the test ends
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_read_timeout_counts_from_the_last_byte_with_the_lazy_timer() -> None:
    server = _TrickleServer()
    await server.start()
    # A byte every 0.1 s for 0.6 s, each inside the 0.3 s read timeout; then silence.
    server.plan = [(0.1, 6)]
    client = AsyncFinalPOS(api_key="k", base_url=server.url, timeout=0.3, max_retries=0)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(APITimeoutError) as info:
            await client.request("GET", "/trickle")
        elapsed = loop.time() - started
        assert info.value.kind == "read"
        # Not before the trickle ended (0.6 s) plus the timeout (0.3 s); not much after it.
        assert 0.85 <= elapsed < 3.0, elapsed
    finally:
        await client.close()
        await server.close()


async def test_a_shorter_per_call_read_timeout_fires_on_a_reused_connection() -> None:
    server = _TrickleServer()
    await server.start()
    # First a quick answer with a long read timeout (the connection goes back to the pool
    # with its timer armed far ahead), then a stalled answer with a short one.
    server.plan = [(0.0, None), (10.0, 0)]
    client = AsyncFinalPOS(api_key="k", base_url=server.url, timeout=30.0, max_retries=0)
    try:
        assert await client.request("GET", "/quick") == {}
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(APITimeoutError) as info:
            await client.request("GET", "/stall", timeout=0.2)
        assert info.value.kind == "read"
        assert loop.time() - started < 3.0
    finally:
        await client.close()
        await server.close()


def test_idempotency_keys_ignore_the_global_random_seed() -> None:
    # A script that seeds `random` for reproducibility must not replay its keys on a rerun.
    random.seed(1234)
    first = new_idempotency_key()
    random.seed(1234)
    assert new_idempotency_key() != first


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_repeats_the_parents_idempotency_keys() -> None:
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads (pytest-xdist's) may deadlock
        # the child on a lock another thread held; this child takes none: it writes one key to
        # a pipe and leaves with os._exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report its first key and leave at once
        try:
            os.write(write_end, new_idempotency_key().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    parent_key = new_idempotency_key()
    with os.fdopen(read_end, "rb") as pipe:
        child_key = pipe.read().decode()
    os.waitpid(pid, 0)
    assert uuid.UUID(child_key).version == 4
    assert child_key != parent_key
