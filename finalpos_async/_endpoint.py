"""`Endpoint`: where a client's requests go and the key they carry, behind one small protocol.

A client holds one endpoint, shared by its `with_options` copies and closed by its `close()`:

- `FixedEndpoint`: a base URL and an API key (the arguments or the environment).
- `finalpos_async._key_source.RotatingEndpoint`: a base URL and a key function (`api_key=` given
  as a function), asked for the key when the client opens and after a 401.
- `finalpos_async.sandbox.SandboxEndpoint`: the embedded sandbox, started on the first call.

The client never names the sandbox (the sandbox is built on the client, not the other way
round). `sandbox=True` gets its endpoint from the factory that the package's composition root,
`finalpos_async/__init__.py`, provides here (`provide_embedded_sandbox`) when the package is
imported, which happens before any of its modules runs. A factory rather than an `endpoint=`
argument: `sandbox=True` and `FINALPOS_SANDBOX=1` stay the whole interface, and the factory
imports the sandbox only when a client asks for it (the server side only on its first call).

This module imports nothing beyond the standard library: the package's `__init__` loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, final

__all__ = [
    "EmbeddedSandboxFactory",
    "Endpoint",
    "FixedEndpoint",
    "embedded_sandbox",
    "provide_embedded_sandbox",
]


class Endpoint(Protocol):
    """Where requests go (`base_url`) and the key they carry (`api_key`).

    `resolve()` makes the endpoint usable (starts what it runs, once, even when many first calls
    ask together) and returns its base URL; afterwards `base_url` is a plain attribute read.
    """

    @property
    def base_url(self) -> str | None:
        """The API root (no trailing slash); `None` until `resolve()` and after `aclose()`."""
        ...

    @property
    def api_key(self) -> str:
        """The key requests carry (a `Secret`), known once `resolve()` has returned (before it
        too, unless it comes from a key function)."""
        ...

    @property
    def credentials(self) -> str:
        """What `credentials_fingerprint` hashes: the key, or a fixed text for a rotating key."""
        ...

    @property
    def embedded(self) -> bool:
        """True for a server the endpoint runs itself: its data dies with it."""
        ...

    async def resolve(self, within: float | None = None) -> str | None:
        """The base URL, once usable; `None` when `aclose()` ran before or meanwhile.

        `within`: the seconds the caller may wait on the user's code (a key function), after
        which it raises `TimeoutError`; starting what the endpoint runs itself is not bounded.
        """
        ...

    async def refresh_key(self, sent: str, sent_at: float) -> str | None:
        """After a 401 to an attempt that carried the key `sent` and started at `sent_at` (loop
        time): the key to repeat it with, or `None` when the key has not changed."""
        ...

    async def aclose(self) -> None:
        """Release what the endpoint runs (idempotent)."""
        ...


@final
class FixedEndpoint:
    """A base URL and an API key, both checked already (`_config.resolve_endpoint`)."""

    __slots__ = ("_api_key", "_base_url")

    def __init__(self, base_url: str, api_key: str) -> None:
        self._base_url = base_url
        self._api_key = api_key

    def __repr__(self) -> str:  # never the key
        return f"<FixedEndpoint {self._base_url!r}>"

    @property
    def base_url(self) -> str:
        """The API root."""
        return self._base_url

    @property
    def api_key(self) -> str:
        """The key requests carry."""
        return self._api_key

    @property
    def credentials(self) -> str:
        """The key."""
        return self._api_key

    @property
    def embedded(self) -> bool:
        """Never: the server is someone else's."""
        return False

    async def resolve(self, within: float | None = None) -> str:
        """The base URL (nothing to start, nothing to wait for)."""
        return self._base_url

    async def refresh_key(self, sent: str, sent_at: float) -> str | None:
        """Never a new key: a fixed key does not change."""
        return None

    async def aclose(self) -> None:
        """Nothing to release."""


EmbeddedSandboxFactory = Callable[[str | None], Endpoint]
"""Makes the embedded sandbox's endpoint from the `api_key` argument (`None`: its default key).

It must be cheap: it runs in the client's constructor, so it starts nothing.
"""

_factories: dict[str, EmbeddedSandboxFactory] = {}


def provide_embedded_sandbox(factory: EmbeddedSandboxFactory) -> None:
    """Set what `sandbox=True` runs (called once, by `finalpos_async/__init__.py`)."""
    _factories["sandbox"] = factory


def embedded_sandbox(api_key: str | None) -> Endpoint:
    """The embedded sandbox's endpoint, not started (it starts on the first call)."""
    factory = _factories.get("sandbox")
    if factory is None:  # pragma: no cover - the package's __init__ always provides one
        raise RuntimeError("no embedded sandbox is available (finalpos_async was not imported)")
    return factory(api_key)
