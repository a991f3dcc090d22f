"""Hand-written half of the sync client: lifecycle, the async client behind it, fork handling.

`finalpos_sync._client.FinalPOS` adds the constructor, `with_options`, `request` and the
properties, each a direct translation of `AsyncFinalPOS`, and the generated
`SyncResourcesMixin` the resource attributes; everything that is not a translation lives here.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._loop import ABANDONED, LoopThread

if TYPE_CHECKING:
    from finalpos_async._client import AsyncFinalPOS

__all__ = ["BaseSyncClient"]

_T = TypeVar("_T")
_Client = TypeVar("_Client", bound="BaseSyncClient")


class _AsyncSlot:
    """A root client's async client, rebuilt after a fork; what its loop thread's hooks reach.

    The loop thread's `on_close` / `on_fork` are this object's methods, not the sync client's:
    a loop thread holding the sync client would keep a dropped client alive forever.
    """

    __slots__ = ("client", "factory", "generation")

    def __init__(self, factory: Callable[[], AsyncFinalPOS]) -> None:
        self.factory = factory
        self.client: AsyncFinalPOS | None = factory()
        self.generation = 0  # bumped by each fork; views compare theirs to it

    def current(self) -> AsyncFinalPOS:
        """The async client, rebuilt from the same arguments if a fork dropped it."""
        client = self.client
        if client is None:
            client = self.client = self.factory()
        return client

    def forked(self) -> None:
        """In a fork child, with no loop work allowed: forget the parent's async client.

        It is kept alive by the loop module so its finalizers never run, and rebuilt lazily.
        """
        ABANDONED.append(self.client)
        self.client = None
        self.generation += 1

    async def close(self) -> None:
        """Close the async client (on the loop thread, from `LoopThread`'s `on_close`)."""
        client = self.client
        if client is not None:
            await client.close()


class BaseSyncClient:
    """Owns (or, for a `with_options` view, borrows) the private loop and the async client on it.

    The async client is built in the caller's thread at construction, so bad configuration
    raises at once; its aiohttp session is created lazily on the private loop by the first call.
    After `os.fork()` the child rebuilds the async client from the same arguments (the parent's
    one is bound to a loop whose thread does not exist in the child).

    A client that is dropped without `close()` is released once it is garbage collected: a
    finalizer asks its loop to close the pool and stop, and the loop thread ends (nothing in the
    loop thread refers to the client, so it can be collected). One still alive at interpreter
    exit is closed by `atexit`. Still, create one per process and reuse it.
    """

    _loop_thread: LoopThread
    _parent: BaseSyncClient | None
    _slot: _AsyncSlot
    _derive: Callable[[AsyncFinalPOS], AsyncFinalPOS] | None
    _async: AsyncFinalPOS | None
    _async_generation: int

    def _init_root(self, cls: type[AsyncFinalPOS], kwargs: dict[str, Any]) -> None:
        """Set up a client owning its loop; `cls(**kwargs)` is its async client (again after fork).

        The async client is made here, in the caller's thread, so bad arguments raise at once.
        """
        slot = _AsyncSlot(functools.partial(cls, **kwargs))
        self._parent = None
        self._slot = slot
        self._derive = None
        self._async = None  # a root reads its slot
        self._async_generation = 0
        self._loop_thread = loop_thread = LoopThread(on_close=slot.close, on_fork=slot.forked)
        # Not at exit (`atexit=False`): the loop module's exit hook closes running loops and
        # waits for them, which a finalizer must not do.
        weakref.finalize(self, loop_thread.release).atexit = False

    def _view(self: _Client, derive: Callable[[AsyncFinalPOS], AsyncFinalPOS]) -> _Client:
        """A light view on this client's loop and pool whose async client is `derive(ours)`."""
        view = type(self).__new__(type(self))
        view._init_view(self, derive)
        return view

    def _init_view(
        self, parent: BaseSyncClient, derive: Callable[[AsyncFinalPOS], AsyncFinalPOS]
    ) -> None:
        self._parent = parent
        self._slot = parent._slot
        self._derive = derive
        self._loop_thread = parent._loop_thread
        self._async = derive(parent.async_client)
        self._async_generation = self._slot.generation

    @property
    def async_client(self) -> AsyncFinalPOS:
        """The `AsyncFinalPOS` this facade runs on its private loop.

        Use it from code that already runs *on* that loop (event hooks): `await` its methods.
        """
        if self._parent is None:
            return self._slot.current()
        client = self._async
        if client is None or self._async_generation != self._slot.generation:
            assert self._derive is not None
            client = self._async = self._derive(self._parent.async_client)
            self._async_generation = self._slot.generation
        return client

    def _run(self, coro: Awaitable[_T]) -> _T:
        """Run one coroutine of the async client on the private loop; blocks until it is done."""
        # Typed Awaitable because the raw-response wrappers are; at run time it is a coroutine.
        return self._loop_thread.run(cast("Coroutine[Any, Any, _T]", coro))

    def close(self) -> None:
        """Close the connection pool and stop the private loop. Idempotent.

        Calls in flight on other threads end with `ClientClosedError` (see
        `AsyncFinalPOS.close`). On a `with_options` view this does nothing: the view borrows its
        parent's pool and loop. A closed client cannot be reopened; calls on it raise
        `RuntimeError`.
        """
        if self._parent is None:
            self._loop_thread.close()

    @property
    def is_closed(self) -> bool:
        """True once the client (or, for a view, its parent) has been closed."""
        return self._loop_thread.closed

    def __repr__(self) -> str:
        # The async client's repr (never the API key), under this class's name. A constructor
        # that raised leaves `self` in a traceback's locals, without an async client.
        if not hasattr(self, "_async"):
            return f"<{type(self).__name__} (not constructed)>"
        return repr(self.async_client).replace("AsyncFinalPOS", type(self).__name__, 1)

    def __enter__(self: _Client) -> _Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
