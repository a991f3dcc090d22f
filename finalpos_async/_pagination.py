"""Skip/limit pagination over the API's bare JSON arrays: `AsyncPaginator` and `Page`.

The list endpoints answer a plain array with no total and no cursor, so the walk is:
next skip = skip + len(items); stop on an empty page or one shorter than the limit asked for;
a page longer than the limit, or one that starts with the same record as the page before, means the
server is ignoring skip/limit and raises `ResponseValidationError` instead of looping forever.

Offset paging over a list that changes while it is walked can skip or repeat records (the API
offers nothing better); walk a quiet list, or de-duplicate by id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

import attrs

from ._constants import DEFAULT_PAGE_LIMIT
from ._converter import FieldError, structure_list
from ._exceptions import ResponseValidationError
from ._response import RawResponse
from ._types import DEFAULT_OPTIONS, RequestOptions

if TYPE_CHECKING:
    from ._sender import RequestSender

__all__ = ["AsyncPaginator", "Page", "PageWalk"]

_T = TypeVar("_T")


class Page(Sequence[_T]):
    """One page of a list endpoint: a read-only sequence of items plus the `skip`/`limit` asked."""

    __slots__ = ("items", "limit", "skip")

    def __init__(self, items: list[_T], *, skip: int, limit: int) -> None:
        self.items = items
        self.skip = skip
        self.limit = limit

    @overload
    def __getitem__(self, index: int) -> _T: ...
    @overload
    def __getitem__(self, index: slice) -> list[_T]: ...
    def __getitem__(self, index: int | slice) -> _T | list[_T]:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[_T]:
        return iter(self.items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Page):
            page = cast("Page[object]", other)
            return (self.items, self.skip, self.limit) == (page.items, page.skip, page.limit)
        if isinstance(other, list):
            return self.items == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable items, like a list

    def __repr__(self) -> str:
        return f"Page(skip={self.skip}, limit={self.limit}, items={self.items!r})"


def _first_id(items: Sequence[Any]) -> object:
    if not items:
        return None
    first = items[0]
    if isinstance(first, dict):
        record = cast("dict[str, object]", first)
        return record.get("id", record.get("_id"))
    return getattr(first, "id", None)


@attrs.define
class PageWalk:
    """Where a walk stands: the next skip to ask for (None when done), the last page's first id.

    `start` is the paginator's first skip; `advance(page)` takes in each page fetched.
    """

    start: int
    max_items: int | None
    next_skip: int | None
    last_first_id: object = None

    def advance(self, page: Page[Any]) -> None:
        """Take in the page just fetched and work out the next skip (or the end)."""
        first_id = _first_id(page.items)
        if first_id is not None and first_id == self.last_first_id:
            raise ResponseValidationError(
                f"the server returned the same page twice (first id {first_id!r} at skip="
                f"{page.skip}); it seems to ignore `skip`, so the walk stops here"
            )
        self.last_first_id = first_id
        count = len(page.items)
        if count == 0 or count < page.limit:
            self.next_skip = None
            return
        self.next_skip = page.skip + count
        if self.max_items is not None and self.next_skip - self.start >= self.max_items:
            self.next_skip = None


class AsyncPaginator(Generic[_T]):
    """A lazy walk over a list endpoint; creating one makes no request.

    - `await paginator` gives the first `Page` (a list-like object with `items`, `skip`, `limit`);
    - `async for item in paginator` yields every record, fetching one page at a time;
    - `async for page in paginator.pages()` yields page by page.

    Only the current page is held. `max_items` caps the total (the last request asks only for
    what is left).

    To drive it step by step (the sync facade does this through its loop bridge; a walk can
    also be resumed later from a saved `walk.next_skip`)::

        walk = paginator.walk()
        while (page := await paginator.next_page(walk)) is not None:
            ...  # use page

    `next_page(walk)` is the one place the walk's rules run: every way of walking (`pages()`,
    `async for`, the sync paginator) goes through it.

    `fetch_page(skip)` makes one request and checks the page is not longer than its limit;
    `fetch_raw_page(skip)` gives that request's `RawResponse` (its `.parse()` does the check).
    """

    def __init__(
        self,
        send: RequestSender,
        path: str,
        item: type[_T],
        *,
        params: Mapping[str, Any] | None = None,
        skip: int = 0,
        limit: int = DEFAULT_PAGE_LIMIT,
        max_items: int | None = None,
        options: RequestOptions = DEFAULT_OPTIONS,
    ) -> None:
        for name, value, least in (("skip", skip, 0), ("limit", limit, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        if max_items is not None and (
            not isinstance(max_items, int) or isinstance(max_items, bool) or max_items < 0
        ):
            raise ValueError(f"max_items must be None or an int >= 0, got {max_items!r}")
        self._send = send
        self._path = path
        self._item = item
        self._params = dict(params or {})
        self._start = skip
        self._limit = limit
        self._max_items = max_items
        self._options = options

    def __repr__(self) -> str:
        return (
            f"AsyncPaginator({self._path!r}, {self._item.__name__}, skip={self._start}, "
            f"limit={self._limit}, max_items={self._max_items})"
        )

    @property
    def skip(self) -> int:
        """The skip of the first page."""
        return self._start

    @property
    def limit(self) -> int:
        """Records asked for per page (the last page may ask for fewer, see `max_items`)."""
        return self._limit

    @property
    def max_items(self) -> int | None:
        """The cap on the total number of records, if any."""
        return self._max_items

    @property
    def item(self) -> type[_T]:
        """The type each record is parsed into (`dict` for an undocumented item)."""
        return self._item

    def walk(self) -> PageWalk:
        """A fresh walk state starting at this paginator's skip (see the class docstring)."""
        done = self._max_items == 0
        return PageWalk(self._start, self._max_items, None if done else self._start)

    def _limit_at(self, skip: int) -> int:
        if self._max_items is None:
            return self._limit
        return max(1, min(self._limit, self._max_items - (skip - self._start)))

    def _parse_items(self, data: Any, consume: bool) -> list[_T]:
        if self._item is dict:
            if data.__class__ is not list:
                raise FieldError("array", data)
            for index, element in enumerate(data):
                if element.__class__ is not dict:
                    raise FieldError("object", element, (index,))
            return data
        return structure_list(data, self._item, consume=consume)

    def _page_or_problem(
        self, data: Any, skip: int, limit: int, consume: bool
    ) -> Page[_T] | tuple[str, str | None]:
        """The checked page, or what is wrong with it (and where) for the caller to raise."""
        try:
            items = self._parse_items(data, consume)
        except FieldError as error:
            return f"answered a page that does not fit list[{self._item.__name__}]: {error}", (
                error.path_str
            )
        if len(items) > limit:
            return (
                f"returned {len(items)} items for limit={limit}; the server seems to ignore "
                "`limit`, so pages cannot be walked safely"
            ), None
        return Page(items, skip=skip, limit=limit)

    def _checked_page(
        self, response: RawResponse[Any], data: Any, skip: int, limit: int, *, consume: bool
    ) -> Page[_T]:
        outcome = self._page_or_problem(data, skip, limit, consume)
        if isinstance(outcome, Page):
            return outcome
        # Raised with no local (nor chained context) holding the page: a traceback with
        # locals would render what the server sent, an echoed key included.
        del data
        problem, field_path = outcome
        raise ResponseValidationError(
            f"GET {response.url} {problem}", field_path=field_path, response=response
        )

    async def _get(self, skip: int) -> tuple[RawResponse[Any], int]:
        limit = self._limit_at(skip)
        params = {**self._params, "skip": skip, "limit": limit}
        return await self._send("GET", self._path, params=params, options=self._options), limit

    async def fetch_raw_page(self, skip: int) -> RawResponse[Page[_T]]:
        """One request for the page at `skip`; its `.parse()` builds and checks the `Page`."""
        raw, limit = await self._get(skip)

        def parse(data: Any) -> Page[_T]:
            # The decoded body may be the response's cached `json()`: left as it is.
            return self._checked_page(raw, data, skip, limit, consume=False)

        return raw.with_parser(parse)

    async def fetch_page(self, skip: int) -> Page[_T]:
        """One request: the checked `Page` at `skip` (see the class docstring)."""
        raw, limit = await self._get(skip)
        # A decode of its own that nothing else sees, so that structuring may let go of each
        # record as soon as its model is built (`structure_list(consume=True)`).
        return self._checked_page(raw, raw.decode(), skip, limit, consume=True)

    def __await__(self) -> Generator[Any, None, Page[_T]]:
        return self.first_page().__await__()

    async def first_page(self) -> Page[_T]:
        """The first page (one request; none when `max_items=0`): what `await paginator` gives."""
        if self._max_items == 0:
            return Page([], skip=self._start, limit=0)
        return await self.fetch_page(self._start)

    async def next_page(self, walk: PageWalk) -> Page[_T] | None:
        """The next page of `walk` (one request), or None when the walk is done.

        Raises `ResponseValidationError` when the server repeats a page or ignores `limit`.
        """
        if walk.next_skip is None:
            return None
        page = await self.fetch_page(walk.next_skip)
        walk.advance(page)
        return page

    async def pages(self) -> AsyncIterator[Page[_T]]:
        """Yield each page in turn, fetching the next only when asked for it."""
        walk = self.walk()
        while (page := await self.next_page(walk)) is not None:
            yield page
            del page  # not held while the next page is fetched (see `__aiter__`)

    async def __aiter__(self) -> AsyncIterator[_T]:
        # The page loop again rather than `async for page in self.pages()`: one async generator
        # level less per item.
        walk = self.walk()
        while (page := await self.next_page(walk)) is not None:
            items = page.items
            del page
            for item in items:
                yield item
            # Let go of the page before waiting for the next one: its models then die young
            # instead of being promoted by the collections that run meanwhile. With many
            # concurrent walks that promotion is what makes full GC passes frequent (measured:
            # about a third of the CPU per page of 100 customers at concurrency 64).
            del items
