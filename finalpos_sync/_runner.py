"""`Runner`: how the sync twins run one coroutine of the async client on the private loop."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol, TypeVar

__all__ = ["Runner"]

_T = TypeVar("_T")


class Runner(Protocol):
    """Runs one coroutine of the async client on the private loop (`BaseSyncClient._run`).

    The client hands its bound method to every twin it builds (resources, paginators, bulk
    jobs), and each twin passes it on to the twins it builds.
    """

    def __call__(self, coro: Awaitable[_T], /) -> _T: ...
