"""`forward_proxy()`: a small forwarding HTTP proxy on 127.0.0.1, in a thread of its own.

It handles absolute-form requests (`GET http://host:port/path HTTP/1.1`, what a client sends a
proxy for an `http://` target) by forwarding them to `upstream`, whatever host they name (so a
test may name a host that does not exist, such as `api.finalpos.test`), and answers a `CONNECT`
(an `https://` target) with 407 or 502: no tunnel is needed by the tests. With `credentials`
every request must carry the matching `Proxy-Authorization: Basic ...`, else it gets 407.
It records each request (`seen`), and runs in its own thread and loop so that async clients,
sync clients and the CLI run in-process can all be pointed at it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import Iterator

import aiohttp
import attrs
import pytest
from aiohttp import web

DEADLINE = 30.0  # the longest a start or stop may take
# Not forwarded: hop-by-hop headers, and what the forwarding session sets itself.
_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)


@attrs.frozen
class ProxySeen:
    """One request the proxy received: its method, request target and Proxy-Authorization."""

    method: str
    target: str
    authorization: str | None


class ForwardProxy:
    """The running proxy: `url` (no credentials), `url_with_credentials`, `seen`, `refused`."""

    def __init__(self, upstream: str, credentials: tuple[str, str] | None) -> None:
        self.upstream = upstream.rstrip("/")
        self.credentials = credentials
        self.port = 0
        self._seen: list[ProxySeen] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The proxy's URL, without credentials."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_with_credentials(self) -> str:
        """The proxy's URL with its user and password (percent-encoded as given)."""
        assert self.credentials is not None
        user, password = self.credentials
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    @property
    def seen(self) -> list[ProxySeen]:
        """Every request received so far."""
        with self._lock:
            return list(self._seen)

    @property
    def forwarded(self) -> int:
        """Requests forwarded upstream (accepted credentials, absolute form)."""
        return sum(1 for s in self.seen if s.target.startswith("http://") and self._allowed(s))

    @property
    def refused(self) -> int:
        """Requests answered 407."""
        return sum(1 for s in self.seen if not self._allowed(s))

    def _allowed(self, seen: ProxySeen) -> bool:
        if self.credentials is None:
            return True
        user, password = self.credentials
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return seen.authorization == f"Basic {token}"

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        seen = ProxySeen(
            request.method, request.raw_path, request.headers.get("Proxy-Authorization")
        )
        with self._lock:
            self._seen.append(seen)
        if not self._allowed(seen):
            return web.Response(
                status=407, headers={"Proxy-Authenticate": 'Basic realm="test"'}, text="no"
            )
        if request.method == "CONNECT" or not seen.target.startswith("http://"):
            return web.Response(status=502, text="this test proxy forwards http:// only")
        path = "/" + seen.target.split("://", 1)[1].partition("/")[2]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                self.upstream + path,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as answer,
        ):
            content = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _DROP}
            return web.Response(status=answer.status, body=content, headers=out)

    async def serve(self, ready: threading.Event, stop: asyncio.Event) -> None:
        server = web.Server(self._handle)
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        ready.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


@contextlib.contextmanager
def forward_proxy(
    upstream: str, *, credentials: tuple[str, str] | None = None
) -> Iterator[ForwardProxy]:
    """A running `ForwardProxy` to `upstream`, stopped (and its thread joined) on exit."""
    proxy = ForwardProxy(upstream, credentials)
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(proxy.serve(ready, stop))
        except BaseException as exc:  # reported by the test's thread
            failed.append(exc)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="forward-proxy", daemon=True)
    thread.start()
    if not ready.wait(DEADLINE) or failed:
        raise RuntimeError(f"the test proxy did not start: {failed}")
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(DEADLINE)
        assert not thread.is_alive(), "the test proxy did not stop"


# What sends requests through a proxy (or changes TLS) when the machine running the tests sets it.
PROXY_ENV_NAMES = (
    *("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"),
    *("http_proxy", "https_proxy", "all_proxy", "no_proxy"),
    *("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUEST_METHOD", "FINALPOS_PROXY"),
)


def clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable of the machine running the tests leaks into one."""
    for name in PROXY_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
