"""Base class of the generated sync resources: how a sync method reaches its async twin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from finalpos_async._client import AsyncFinalPOS

    from ._base_client import BaseSyncClient

__all__ = ["Runner", "SyncResource"]

_A = TypeVar("_A")
_T = TypeVar("_T")


class Runner(Protocol):
    """Runs one coroutine of the async client on the private loop (`BaseSyncClient._run`).

    The client hands its bound method to every twin it builds (resources, paginators, bulk
    jobs), and each twin passes it on to the twins it builds.
    """

    def __call__(self, coro: Awaitable[_T], /) -> _T: ...


class SyncResource(Generic[_A]):
    """A sync resource: `run` runs coroutines, `get` finds the async twin on the async client.

    The twin is looked up on every call rather than kept, because after `os.fork()` the client
    rebuilds its async client and a kept reference would point at the parent's.
    """

    __slots__ = ("__dict__", "_client", "_get", "_run")

    def __init__(
        self, client: BaseSyncClient, run: Runner, get: Callable[[AsyncFinalPOS], _A]
    ) -> None:
        self._client = client
        self._run = run
        self._get = get

    def _async(self) -> _A:
        """The async twin of this resource, on the client's current async client."""
        return self._get(self._client.async_client)
