"""Shared fixtures. `scripted_server`: a real aiohttp server on 127.0.0.1 that plays a script."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aioresponses import aioresponses

from finalpos_async import AsyncFinalPOS


@attrs.frozen
class Step:
    """One scripted answer.

    - `status`/`body`/`headers`: the response to send (`body` dict/list is sent as JSON, str as
      text with `content_type`);
    - `reset=True`: drop the connection before any response byte;
    - `hang=True`: never answer (until the test ends), to trip the read timeout.
    """

    status: int = 200
    body: Any = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict)
    content_type: str = "application/json"
    reset: bool = False
    hang: bool = False


def ok(body: Any = None) -> Step:
    """A 200 with a JSON body."""
    return Step(200, {"ok": True} if body is None else body)


def status(code: int, body: Any = None, **headers: str) -> Step:
    """An error status with the API's `{statusCode, message, error}` body (or `body`)."""
    if body is None:
        body = {"statusCode": code, "message": f"scripted {code}", "error": "Scripted"}
    return Step(code, body, {k.replace("_", "-"): v for k, v in headers.items()})


RESET = Step(reset=True)
HANG = Step(hang=True)


@attrs.define
class Seen:
    """What the server received for one attempt."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@attrs.define
class ScriptedServer:
    """Plays `script` one step per request (the last step repeats once the script runs out)."""

    url: str = ""
    script: list[Step] = attrs.field(factory=list)
    seen: list[Seen] = attrs.field(factory=list)
    release: asyncio.Event = attrs.field(factory=asyncio.Event)

    def play(self, *steps: Step) -> None:
        """Replace the script and forget what was seen."""
        self.script = list(steps)
        self.seen.clear()

    @property
    def attempts(self) -> int:
        """Requests the server received."""
        return len(self.seen)

    def client(self, **kwargs: Any) -> AsyncFinalPOS:
        """A client for this server with fast backoff (override any setting with kwargs)."""
        settings: dict[str, Any] = {
            "api_key": "sk_test_scripted",
            "base_url": self.url,
            "backoff_base": 0.001,
            "backoff_cap": 0.005,
        }
        settings.update(kwargs)
        return AsyncFinalPOS(**settings)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path_qs, dict(request.headers), body))
        index = min(len(self.seen), len(self.script)) - 1
        step = self.script[index] if self.script else ok()
        if step.reset:
            assert request.transport is not None
            request.transport.abort()
            # The connection is gone; this response is never written.
            return web.Response(status=599)
        if step.hang:
            await self.release.wait()
            return web.Response(status=599)
        if isinstance(step.body, (dict, list)):
            return web.json_response(step.body, status=step.status, headers=step.headers)
        return web.Response(
            status=step.status,
            text=str(step.body),
            content_type=step.content_type,
            headers=step.headers,
        )


@pytest.fixture
async def scripted_server() -> AsyncIterator[ScriptedServer]:
    """A real HTTP server on 127.0.0.1 (free port) playing a script; stops by itself."""
    server = ScriptedServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


class _NoUpload:
    """Stands in for the request writer aiohttp >= 3.13 hands to every response."""

    output_size = 0


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.x builds responses without `stream_writer`, which aiohttp 3.13+ needs."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NoUpload())
        super().__init__(method, url, **kwargs)


class CompatAioresponses(aioresponses):
    """`aioresponses` whose mocked responses work with the installed aiohttp."""

    def add(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("response_class", _CompatResponse)
        super().add(*args, **kwargs)


@pytest.fixture
def mock_api() -> Iterator[aioresponses]:
    """aiohttp mocked (aioresponses); nothing leaves the process."""
    with CompatAioresponses() as mocked:
        yield mocked
