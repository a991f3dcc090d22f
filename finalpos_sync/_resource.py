"""Base class of the generated sync resources: how a sync method reaches its async twin."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from finalpos_async._client import AsyncFinalPOS

    from ._base_client import BaseSyncClient

__all__ = ["SyncResource"]

_A = TypeVar("_A")


class SyncResource(Generic[_A]):
    """A sync resource: `client` runs coroutines, `get` finds the async twin on the async client.

    The twin is looked up on every call rather than kept, because after `os.fork()` the client
    rebuilds its async client and a kept reference would point at the parent's.
    """

    __slots__ = ("__dict__", "_client", "_get")

    def __init__(self, client: BaseSyncClient, get: Callable[[AsyncFinalPOS], _A]) -> None:
        self._client = client
        self._get = get

    def _async(self) -> _A:
        """The async twin of this resource, on the client's current async client."""
        return self._get(self._client.async_client)
