"""The hand-written base of the generated resource classes, and the raw-response wrappers.

A generated method validates its arguments, builds the path and body, and awaits
`self._send(...)` (the client's request function, one logical call) then `_parse` (the model),
or calls `_paginate` (a lazy paginator).
`with_raw_response` gives a twin resource whose methods return the `RawResponse` instead; the
`to_raw_response` / `to_raw_page` wrappers give those methods their `RawResponse[Model]` types,
and `raw_twin(method)` gives one method's twin.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeGuard, TypeVar, cast

from ._converter import FieldError, structure
from ._exceptions import ResponseValidationError
from ._pagination import AsyncPaginator, Page
from ._request import query_value
from ._response import RawResponse
from ._sender import RequestSender
from ._types import DEFAULT_OPTIONS, NotGiven, NotGivenOr, RequestOptions

__all__ = [
    "AsyncAPIResource",
    "RequestSender",
    "check_query_param",
    "is_resource_method",
    "parse_model",
    "raw_twin",
    "request_options",
    "to_raw_page",
    "to_raw_response",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")
_R = TypeVar("_R", bound="AsyncAPIResource")


def check_query_param(value: _T, name: str) -> _T:
    """Check a typed method's query argument when the method is called, naming the argument.

    The transport checks again when it sends, but by then the error could only name the wire
    parameter (`tableId`) and, for a paginator, would come at the first `await`.
    """
    given: object = value  # narrowed below; `value` itself is returned as it came
    if given is not None:
        items = (
            cast("list[object] | tuple[object, ...]", given)
            if isinstance(given, (list, tuple))
            else (given,)
        )
        for item in items:
            if item is not None:
                query_value(name, item)
    return value


def request_options(
    timeout: NotGivenOr[float | None],
    deadline: NotGivenOr[float | None],
    max_retries: NotGivenOr[int],
    extra_headers: Mapping[str, str] | None,
    idempotency_key: str | None,
    retry_unsafe: bool | None,
) -> RequestOptions:
    """The `RequestOptions` of one call; the shared default object when nothing was given."""
    if (
        timeout.__class__ is NotGiven
        and deadline.__class__ is NotGiven
        and max_retries.__class__ is NotGiven
        and extra_headers is None
        and idempotency_key is None
        and retry_unsafe is None
    ):
        return DEFAULT_OPTIONS
    return RequestOptions(
        timeout=timeout,
        deadline=deadline,
        max_retries=max_retries,
        extra_headers=extra_headers,
        idempotency_key=idempotency_key,
        retry_unsafe=retry_unsafe,
    )


def parse_model(raw: RawResponse[Any], cls: type[_T]) -> _T:
    """The body of `raw` as a `cls`; a body that does not fit raises `ResponseValidationError`."""
    try:
        if cls is dict:
            return cast(_T, _object(raw.json()))
        return structure(raw.json(), cls)
    except FieldError as error:
        problem, field_path = str(error), error.path_str
    # Raised after the `except`, from a frame holding no part of the body: the FieldError's
    # frames hold what the server sent (an echoed key, say), and a traceback with locals, the
    # chained context included, would render it.
    raise ResponseValidationError(
        f"{raw.method} {raw.url} answered {raw.status_code} with a body that does not fit "
        f"{cls.__name__}: {problem}",
        field_path=field_path,
        response=raw,
    )


def _object(data: Any) -> dict[str, Any]:
    if data.__class__ is not dict:
        raise FieldError("object", data)
    return cast("dict[str, Any]", data)


def _model_parser(cls: type[_T]) -> Callable[[Any], _T]:
    """A `RawResponse` parser for `cls` (used by `.parse()` of raw responses)."""

    def parse(data: Any) -> _T:
        try:
            if cls is dict:
                return cast(_T, _object(data))
            return structure(data, cls)
        except FieldError as error:
            problem, field_path = str(error), error.path_str
        del data  # as in `parse_model`: no local, nor chained context, holds the body
        raise ResponseValidationError(
            f"the response body does not fit {cls.__name__}: {problem}", field_path=field_path
        )

    return parse


class AsyncAPIResource:
    """Base of the generated `Async<Resource>` classes: holds the client's request function."""

    def __init__(self, send: RequestSender, *, raw: bool = False) -> None:
        self._send = send
        self._raw = raw

    def _raw_twin(self: _R) -> _R:
        """This resource answering `RawResponse`s (itself on a raw twin): what
        `with_raw_response` types, and `raw_twin` binds one method to."""
        return self if self._raw else type(self)(self._send, raw=True)

    def _parse(self, raw: RawResponse[Any], cast_to: type[_T]) -> _T:
        """The result of a call: the model, or (on the raw twin) the `RawResponse` itself.

        Generated methods await `self._send(...)` and pass the response here.
        """
        if self._raw:
            # The raw twin's callers see RawResponse[_T] through `to_raw_response`'s typing.
            return cast(_T, raw.with_parser(_model_parser(cast_to)))
        return parse_model(raw, cast_to)

    def _paginate(
        self,
        path: str,
        item: type[_T],
        *,
        params: Mapping[str, Any],
        skip: int,
        limit: int,
        max_items: int | None,
        options: RequestOptions,
    ) -> AsyncPaginator[_T]:
        return AsyncPaginator(
            self._send,
            path,
            item,
            params={k: v for k, v in params.items() if v is not None},
            skip=skip,
            limit=limit,
            max_items=max_items,
            options=options,
        )


def to_raw_response(
    method: Callable[_P, Awaitable[_T]],
) -> Callable[_P, Awaitable[RawResponse[_T]]]:
    """Type a raw twin's method: the same arguments, a `RawResponse[_T]` result.

    At run time the twin (a resource built with `raw=True`) already returns the `RawResponse`;
    this only gives it the right type.
    """
    return cast("Callable[_P, Awaitable[RawResponse[_T]]]", method)


def to_raw_page(
    method: Callable[_P, AsyncPaginator[_T]],
) -> Callable[_P, Awaitable[RawResponse[Page[_T]]]]:
    """A list method that fetches its first page and returns that page's `RawResponse`."""

    @functools.wraps(method)
    async def first_page(*args: _P.args, **kwargs: _P.kwargs) -> RawResponse[Page[_T]]:
        paginator = method(*args, **kwargs)
        return await paginator.fetch_raw_page(paginator.walk().start)

    return first_page


def is_resource_method(operation: object) -> TypeGuard[types.MethodType]:
    """True for a method of a client resource (`client.customers.create`, or a raw twin's)."""
    return isinstance(operation, types.MethodType) and isinstance(
        operation.__self__, AsyncAPIResource
    )


def raw_twin(method: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[RawResponse[_T]]]:
    """The raw twin of a resource method: the same call, answering its `RawResponse`.

    `raw_twin(client.customers.create)` is `client.customers.with_raw_response.create`: the same
    arguments and one logical call, whose `RawResponse` tells the status, headers and attempts
    (retries included); `.parse()` gives the model. A list method's twin fetches the first page
    (`RawResponse[Page[Model]]`); a raw twin's method is its own twin. Anything else raises
    `TypeError` (for a `finalpos_sync` client's methods, use `finalpos_sync.raw_twin`).
    """
    if not is_resource_method(method):
        raise TypeError(
            f"raw_twin() takes a method of an AsyncFinalPOS resource, such as "
            f"client.customers.create (for a finalpos_sync client: finalpos_sync.raw_twin); "
            f"got {method!r}"
        )
    resource = cast(AsyncAPIResource, method.__self__)
    # The same function on the resource's raw twin, whose `_parse` hands back the response.
    raw_resource = resource._raw_twin()  # pyright: ignore[reportPrivateUsage]  # same module; a public method would sit among the API operations
    twin = types.MethodType(method.__func__, raw_resource)
    if inspect.iscoroutinefunction(twin):
        return cast("Callable[_P, Awaitable[RawResponse[_T]]]", twin)
    # Only list methods are plain functions (they return their paginator without a request).
    return cast("Callable[_P, Awaitable[RawResponse[_T]]]", to_raw_page(twin))
