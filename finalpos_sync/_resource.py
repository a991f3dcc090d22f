"""Base of the generated sync resources: how a sync method reaches its async twin.

A generated sync method has the async method's full signature and docstring (editors show them)
and a one-line body, `return self._run(self._async().create(**arguments(locals())))`: Python has
already bound and checked the arguments against the sync signature (so a wrong call names
`Customers.create()`), and `locals()` at that point is exactly those arguments.

`raw_twin(method)` gives one method's raw twin (as `finalpos_async.raw_twin` does for the async
client's methods).
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeGuard, TypeVar, cast, overload

from finalpos_async._pagination import AsyncPaginator, Page
from finalpos_async._response import RawResponse

from ._pagination import SyncPaginator
from ._runner import Runner

if TYPE_CHECKING:
    from finalpos_async._client import AsyncFinalPOS

    from ._base_client import BaseSyncClient

__all__ = [
    "Runner",
    "SyncResource",
    "arguments",
    "is_resource_method",
    "on_loop",
    "raw_twin",
    "to_raw_page",
    "to_raw_response",
]

_A = TypeVar("_A")
_T = TypeVar("_T")
_P = ParamSpec("_P")
_R = TypeVar("_R", bound="SyncResource[Any]")


def arguments(local_names: Mapping[str, Any]) -> dict[str, Any]:
    """A generated method's arguments from its `locals()`: every name but `self`."""
    return {name: value for name, value in local_names.items() if name != "self"}


class SyncResource(Generic[_A]):
    """A sync resource: `run` runs coroutines, `get` finds the async twin on the async client.

    The twin is looked up on every call rather than kept, because after `os.fork()` the client
    rebuilds its async client and a kept reference would point at the parent's.

    The raw-response twin (`with_raw_response`) is the same class in raw mode: its async twin is
    the async resource's `with_raw_response`, so every method answers the `RawResponse` (a list
    method the first page's), and `to_raw_response` / `to_raw_page` give it that type.

    Its loop twin (`_loop_twin`, for the sync bulk runner) hands back what the async twin
    answers instead of running it: the coroutine, or a list method's `AsyncPaginator`.
    """

    __slots__ = ("__dict__", "_client", "_get", "_on_loop", "_raw", "_run")

    def __init__(
        self,
        client: BaseSyncClient,
        run: Runner,
        get: Callable[[AsyncFinalPOS], _A],
        *,
        raw: bool = False,
        on_loop: bool = False,
    ) -> None:
        self._client = client
        self._run = run
        self._get = get
        self._raw = raw
        self._on_loop = on_loop

    def async_resource(self) -> _A:
        """The async twin of this resource, on the client's current async client."""
        return self._get(self._client.async_client)

    def _async(self) -> _A:
        # The name the generated methods (and the sync bulk runner) use.
        return self._get(self._client.async_client)

    def _raw_twin(self: _R) -> _R:
        """This resource answering `RawResponse`s (itself on a raw twin; see the class
        docstring): what `with_raw_response` types, and `raw_twin` binds one method to."""
        if self._raw:
            return self
        get = self._get

        def raw_twin(client: AsyncFinalPOS) -> Any:
            # The async resource's raw twin: the same method names and parameters, answering
            # `RawResponse`s (`to_raw_response` / `to_raw_page` type them).
            return getattr(get(client), "with_raw_response")  # noqa: B009 - `_A` is unbounded

        return type(self)(self._client, self._run, raw_twin, raw=True, on_loop=self._on_loop)

    def _loop_twin(self: _R) -> _R:
        """This resource as code on the client's loop calls it (see the class docstring)."""
        return type(self)(self._client, _handed_back, self._get, raw=self._raw, on_loop=True)

    def _paginate(self, paginator: AsyncPaginator[_T]) -> SyncPaginator[_T]:
        """A sync walk over `paginator`; in raw mode, the first page's `RawResponse`."""
        if self._on_loop:
            # Handed back as it is to code on the loop (in raw mode: the first page's awaitable).
            return cast("SyncPaginator[_T]", paginator)
        if self._raw:
            # The async raw twin's list methods return the first page's awaitable RawResponse;
            # `to_raw_page` types the result for callers.
            return cast("SyncPaginator[_T]", self._run(cast("Awaitable[object]", paginator)))
        return SyncPaginator(self._run, paginator)


def _handed_back(awaitable: Awaitable[Any], /) -> Any:
    """The runner of a loop twin: it hands the async twin's awaitable back unrun."""
    return awaitable


def is_resource_method(operation: object) -> TypeGuard[types.MethodType]:
    """True for a method of a sync client resource (`client.customers.create`, or a raw twin's)."""
    return isinstance(operation, types.MethodType) and isinstance(operation.__self__, SyncResource)


@overload
def raw_twin(method: Callable[_P, SyncPaginator[_T]]) -> Callable[_P, RawResponse[Page[_T]]]: ...
@overload
def raw_twin(method: Callable[_P, _T]) -> Callable[_P, RawResponse[_T]]: ...
def raw_twin(method: Callable[..., Any]) -> Callable[..., Any]:
    """The raw twin of a resource method: the same call, answering its `RawResponse`.

    `raw_twin(client.customers.create)` is `client.customers.with_raw_response.create`: the same
    arguments and one logical call, whose `RawResponse` tells the status, headers and attempts
    (retries included); `.parse()` gives the model. A list method's twin fetches the first page
    (`RawResponse[Page[Model]]`); a raw twin's method is its own twin. Anything else raises
    `TypeError` (for an `AsyncFinalPOS`'s methods, use `finalpos_async.raw_twin`).
    """
    if not is_resource_method(method):
        raise TypeError(
            f"raw_twin() takes a method of a finalpos_sync client's resource, such as "
            f"client.customers.create (for AsyncFinalPOS: finalpos_async.raw_twin); "
            f"got {method!r}"
        )
    resource = cast("SyncResource[Any]", method.__self__)
    # The same function on the resource's raw twin, whose async twin answers `RawResponse`s.
    raw_resource = resource._raw_twin()  # pyright: ignore[reportPrivateUsage]  # same module; a public method would sit among the API operations
    return types.MethodType(method.__func__, raw_resource)


def on_loop(method: Callable[..., Any]) -> Callable[..., Any] | None:
    """A sync resource method as code on the client's loop calls it: the same function on the
    resource's loop twin, answering what the async method answers (the coroutine, or a list
    method's `AsyncPaginator`) instead of running it; None for anything but such a method."""
    if not is_resource_method(method):
        return None
    resource = cast("SyncResource[Any]", method.__self__)
    loop_resource = resource._loop_twin()  # pyright: ignore[reportPrivateUsage]  # same module; a public method would sit among the API operations
    return types.MethodType(method.__func__, loop_resource)


def _raw_twin_method(method: Callable[..., Any], result: Callable[[str], str], doc: str) -> Any:
    """`method` (bound to a raw-mode resource) with the signature and docstring of a raw twin.

    Still a method of that resource (`__self__`, `__name__`), so that `raw_twin` and the sync
    bulk runner can bind it to another mode of that resource as they do any method.
    """
    function: Callable[..., Any] = getattr(method, "__func__")  # noqa: B009 - a bound method
    resource: object = getattr(method, "__self__")  # noqa: B009 - a bound method

    @functools.wraps(function)
    def raw(self: object, /, *args: Any, **kwargs: Any) -> Any:
        return function(self, *args, **kwargs)

    signature = inspect.signature(function)
    # What `inspect.signature` (and so `help()`) shows: the RawResponse result type.
    raw.__dict__["__signature__"] = signature.replace(
        return_annotation=result(str(signature.return_annotation))
    )
    raw.__doc__ = doc.format(function.__qualname__)
    return types.MethodType(raw, resource)


def to_raw_response(method: Callable[_P, _T]) -> Callable[_P, RawResponse[_T]]:
    """A raw twin's method: the same arguments, the `RawResponse` (`.parse()` gives the model)."""
    doc = "Like `{}`, but returns the `RawResponse`; `.parse()` gives the model (one request)."
    wrapped = _raw_twin_method(method, lambda model: f"RawResponse[{model}]", doc)
    return cast("Callable[_P, RawResponse[_T]]", wrapped)


def to_raw_page(method: Callable[_P, SyncPaginator[_T]]) -> Callable[_P, RawResponse[Page[_T]]]:
    """A raw twin's list method: fetches the first page now and returns its `RawResponse`."""

    def result(paginator: str) -> str:
        return f"RawResponse[Page[{paginator.removeprefix('SyncPaginator[').removesuffix(']')}]]"

    doc = "Like `{}`, but fetches the first page now (one request) and returns its `RawResponse`."
    return cast("Callable[_P, RawResponse[Page[_T]]]", _raw_twin_method(method, result, doc))
