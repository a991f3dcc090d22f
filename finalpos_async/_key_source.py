"""A key that rotates: `api_key=` given as a function (sync or async) that returns the key.

`KeySource` asks the function for the key when the client opens and again after a 401, once for
all the calls that got their 401 together (single flight); `RotatingEndpoint` is the client's
`Endpoint` for such a key. The retry loop repeats a call that got a 401 once, with the new key,
when the key changed (`_retry_loop.py`).

Every key the function returns is held as a `Secret` (masked in any rendering), and a function
that raises or returns something other than a usable key stops the call with an error that names
`api_key` (never the key).
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable
from typing import final

from ._checks import check_api_key
from ._exceptions import FinalPOSError
from ._secret import Secret

__all__ = ["ROTATING_CREDENTIALS", "KeyFunction", "KeySource", "RotatingEndpoint"]

KeyFunction = Callable[[], "str | Awaitable[str]"]
"""What `api_key=` may be instead of a str: a function, sync or async, returning the key."""

ROTATING_CREDENTIALS = "finalpos:a key that rotates"
"""What `credentials_fingerprint` hashes for a rotating key, instead of the key: the key changes
while the account stays, so a bulk journal resumes across rotations (in this run or a later one)."""

# Keys issued before the current one that a late 401 may still name (a call sent before a
# rotation): recognised as ours, so it repeats with the current key without asking again.
_ISSUED_KEPT = 16


def describe(function: object) -> str:
    """How errors name the key function: `get_key()` (never its repr, which may hold state)."""
    name = getattr(function, "__qualname__", None)
    return f"{name if isinstance(name, str) else type(function).__name__}()"


class KeySource:
    """The key a function returns: asked for on first use and after a 401, one ask at a time.

    `key` is the latest key (a `Secret`; empty before the first ask). A sync function runs on
    the event loop (keep it quick: it reads a file or a cache); a slow one should be async.
    """

    __slots__ = ("_asked_at", "_asking", "_fetch", "_issued", "_key", "name")

    def __init__(self, fetch: KeyFunction) -> None:
        self._fetch = fetch
        self.name = describe(fetch)
        self._key: Secret | None = None
        self._issued: dict[str, None] = {}  # keys returned so far, oldest first (bounded)
        self._asking: asyncio.Task[Secret] | None = None
        self._asked_at = -math.inf  # loop time at which the latest ask started

    def __repr__(self) -> str:  # never the key
        return f"<KeySource {self.name}>"

    @property
    def key(self) -> str:
        """The latest key the function returned ("" before it was first asked)."""
        return self._key or ""

    async def current(self) -> str:
        """The key, asking the function for it the first time (calls arriving together share
        that ask)."""
        key = self._key
        return key if key is not None else await self._ask()

    async def after_401(self, sent: str, sent_at: float) -> str | None:
        """The key to repeat a call with after a 401, or `None` to let the 401 stand.

        `sent` is the key the refused attempt carried, `sent_at` the loop time it started. The
        function is asked only when no ask began since that attempt started: the calls refused
        together (with the same key) share one ask, and a later one reuses its answer. `None`
        when the function returned the key that was refused, or when `sent` is not a key it
        returned (a `with_options(api_key=...)` copy, an `x-api-key` in `extra_headers`).
        """
        if sent not in self._issued:
            return None
        key = self._key
        if key is not None and key != sent:
            return key  # another call's 401 got a new key already
        if self._asking is None and self._asked_at > sent_at:
            return None  # asked since this attempt started, and the answer was this very key
        fresh = await self._ask()
        return None if fresh == sent else fresh

    def _ask(self) -> Awaitable[Secret]:
        task = self._asking
        if task is None:
            loop = asyncio.get_running_loop()
            self._asked_at = loop.time()
            task = self._asking = loop.create_task(self._call())
            task.add_done_callback(self._asked)
        # Shielded: a caller cancelled while it waits leaves the ask running for the others.
        return asyncio.shield(task)

    def _asked(self, task: asyncio.Task[Secret]) -> None:
        if self._asking is task:
            self._asking = None
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have been cancelled meanwhile

    async def _call(self) -> Secret:
        try:
            value = self._fetch()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            raise FinalPOSError(
                f"api_key: the key function {self.name} raised {type(exc).__name__} (chained "
                "below), so the call was not sent; fix what it reads the key from, so that it "
                "can return the API key as a str (the next call asks it again)"
            ) from exc
        key = self._checked(value)
        self._key = key
        self._issued.pop(key, None)
        self._issued[key] = None
        if len(self._issued) > _ISSUED_KEPT:
            del self._issued[next(iter(self._issued))]
        return key

    def _checked(self, value: object) -> Secret:
        value = Secret(value) if isinstance(value, str) else value  # masked from here on
        try:
            check_api_key(value, name=f"api_key (the key {self.name} returned)")
        except (TypeError, ValueError) as exc:
            # `from None`: nothing below this message holds more than it says.
            raise type(exc)(f"{exc}; make {self.name} return the API key as a str") from None
        assert isinstance(value, Secret)
        return value

    def cancel(self) -> None:
        """Stop an ask in flight (the client is closing)."""
        task = self._asking
        if task is not None:
            task.cancel()


@final
class RotatingEndpoint:
    """A base URL (checked already) and a `KeySource`: the endpoint of `api_key=<function>`."""

    __slots__ = ("_base_url", "_source")

    def __init__(self, base_url: str, source: KeySource) -> None:
        self._base_url = base_url
        self._source = source

    def __repr__(self) -> str:  # never the key
        return f"<RotatingEndpoint {self._base_url!r} key from {self._source.name}>"

    @property
    def base_url(self) -> str:
        """The API root."""
        return self._base_url

    @property
    def api_key(self) -> str:
        """The latest key the function returned ("" until the client opens)."""
        return self._source.key

    @property
    def credentials(self) -> str:
        """Not the key, which changes: `ROTATING_CREDENTIALS` (see there)."""
        return ROTATING_CREDENTIALS

    @property
    def embedded(self) -> bool:
        """Never: the server is someone else's."""
        return False

    async def resolve(self, within: float | None = None) -> str:
        """The base URL, once the function has given the first key; `TimeoutError` after
        `within` seconds without it (the ask goes on for the calls that come next)."""
        await asyncio.wait_for(self._source.current(), within)
        return self._base_url

    async def refresh_key(self, sent: str, sent_at: float) -> str | None:
        """After a 401 to an attempt that carried `sent`: see `KeySource.after_401`."""
        return await self._source.after_401(sent, sent_at)

    async def aclose(self) -> None:
        """Stop an ask in flight."""
        self._source.cancel()
