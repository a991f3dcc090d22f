"""`SyncPaginator`: an `AsyncPaginator` walked from sync code, one page per round trip to the loop.

Only the current page is held, as in async. The walk itself (next skip, end of list, a repeated
or over-long page raising `ResponseValidationError`) is the async paginator's `next_page`: this
module only carries each step to the loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from finalpos_async._pagination import AsyncPaginator, Page

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = ["Page", "SyncPaginator"]

_T = TypeVar("_T")


class SyncPaginator(Generic[_T]):
    """A lazy walk over a list endpoint; creating one makes no request.

    - `paginator.first_page()` gives the first `Page` (what `await paginator` gives in async);
    - `for item in paginator` yields every record, fetching one page at a time;
    - `for page in paginator.pages()` yields page by page.

    Each page is one call on the client's private loop, so a walk may be spread over time (or
    abandoned half-way) without holding anything on the loop between pages.
    """

    __slots__ = ("_paginator", "_run")

    def __init__(self, run: Runner, paginator: AsyncPaginator[_T]) -> None:
        self._run = run
        self._paginator = paginator

    def __repr__(self) -> str:
        return f"Sync{self._paginator!r}"

    @property
    def async_paginator(self) -> AsyncPaginator[_T]:
        """The `AsyncPaginator` this walks (its `skip`, `limit`, `max_items`, `item`)."""
        return self._paginator

    @property
    def max_items(self) -> int | None:
        """The cap on the total number of records, if any."""
        return self._paginator.max_items

    def first_page(self) -> Page[_T]:
        """The first page (one request), like `await paginator` on the async side."""
        return self._run(self._paginator.first_page())

    def pages(self) -> Iterator[Page[_T]]:
        """Yield each page in turn, fetching the next only when asked for it."""
        walk = self._paginator.walk()
        while (page := self._run(self._paginator.next_page(walk))) is not None:
            yield page
            del page  # not held while the next page is fetched (see `__iter__`)

    def __iter__(self) -> Iterator[_T]:
        # The page loop again rather than `for page in self.pages()`: that loop variable would
        # keep the previous page alive while the next one is fetched.
        walk = self._paginator.walk()
        while (page := self._run(self._paginator.next_page(walk))) is not None:
            items = page.items
            del page
            yield from items
            # Let go of the page before fetching the next: its models then die young instead of
            # being promoted by the collections that run during the fetch (as in async).
            del items
