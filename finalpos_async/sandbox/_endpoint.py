"""`SandboxEndpoint`: the embedded sandbox as a client's endpoint (`sandbox=True`).

Light to import and to build: the client's constructor makes one, and the server side (aiohttp's
web, the spec) loads on the first call, which starts the sandbox.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .._constants import SANDBOX_API_KEY

if TYPE_CHECKING:
    from ._sandbox import Sandbox

__all__ = ["SandboxEndpoint"]


class SandboxEndpoint:
    """A `Sandbox` on 127.0.0.1, started by the first `resolve()`, stopped by `aclose()`.

    Calls that arrive together before it runs start one sandbox; every `with_options` copy of
    the client shares it. `api_key`: the key it accepts (default `sk_sandbox_finalpos`).
    """

    __slots__ = ("_closed", "_given_key", "_lock", "_sandbox")

    def __init__(self, api_key: str | None = None) -> None:
        self._given_key = api_key
        self._sandbox: Sandbox | None = None
        self._closed = False
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # never the key
        return f"<SandboxEndpoint {self.base_url or 'not started'}>"

    @property
    def base_url(self) -> str | None:
        """The running sandbox's URL; `None` before its start and after `aclose()`."""
        sandbox = self._sandbox
        return None if sandbox is None else sandbox.url.rstrip("/")

    @property
    def api_key(self) -> str:
        """The key the sandbox accepts (and the client sends)."""
        sandbox = self._sandbox
        if sandbox is not None:
            return sandbox.api_key
        return self._given_key or SANDBOX_API_KEY

    @property
    def credentials(self) -> str:
        """The key."""
        return self.api_key

    @property
    def embedded(self) -> bool:
        """Always: its data lives in this process and dies with it."""
        return True

    async def refresh_key(self, sent: str, sent_at: float) -> str | None:
        """Never a new key: the sandbox accepts one fixed key."""
        return None

    async def resolve(self, within: float | None = None) -> str | None:
        """Start the sandbox unless it runs; its URL, or `None` once `aclose()` has run.

        `within` is not applied: starting a local server is bounded by its own code, and
        cancelling it halfway would leave a port open.
        """
        if self._sandbox is not None:
            return self.base_url
        async with self._lock:
            if self._sandbox is None and not self._closed:
                from ._sandbox import Sandbox  # the server side, loaded when first needed

                given = self._given_key
                sandbox = Sandbox() if given is None else Sandbox(api_key=given)
                await sandbox.start()
                if self._closed:  # aclose() ran meanwhile: it did not see this sandbox
                    await sandbox.close()
                    return None
                self._sandbox = sandbox
        return self.base_url

    async def aclose(self) -> None:
        """Stop the sandbox (if it started); later `resolve()` calls return `None`."""
        self._closed = True
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await sandbox.close()
