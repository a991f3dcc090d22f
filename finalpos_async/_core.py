"""`ClientCore`: what an `AsyncFinalPOS` and all its `with_options` views share.

Its own module so that the client's module stays a client: configuration, lifecycle and the
request seams.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from ._endpoint import Endpoint
from ._inflight import InFlight
from ._limiter import Limiter
from ._middleware import MiddlewareChain
from ._retry import RetryBudget
from ._transport import PoolSettings, Transport

__all__ = ["ClientCore", "ClientState"]

ClientState = Literal["new", "open", "closed"]
"""`new`: no connection yet; `open`: the pool exists, bound to one loop; `closed`: for good."""


class ClientCore:
    """What a client and all its `with_options` views share: transport, budget, endpoint, state.

    Only the client that created it closes it.
    """

    __slots__ = (
        "budget",
        "calls",
        "endpoint",
        "key",
        "key_epoch",
        "limiter",
        "loop",
        "middleware",
        "pool_limit",
        "pool_limit_per_host",
        "state",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        budget: RetryBudget | None,
        limiter: Limiter | None,
        pool: PoolSettings,
        endpoint: Endpoint,
    ) -> None:
        self.transport = transport
        self.endpoint = endpoint
        self.budget = budget
        # One token per HTTP attempt, shared by every with_options view (and bulk run).
        self.limiter = limiter
        self.pool_limit = pool.pool_limit
        self.pool_limit_per_host = pool.pool_limit_per_host
        self.state: ClientState = "new"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.calls = InFlight()  # the calls in flight, which close() ends
        self.middleware: MiddlewareChain | None = None  # a client's own are in its `_parts`
        # The latest key a refresh gave, and how many times it changed: a view whose headers
        # were built under another epoch rebuilds them before its next call.
        self.key: str | None = None
        self.key_epoch = 0

    async def refresh_key(self, sent: str, sent_at: float) -> str | None:
        """After a 401 to an attempt that carried `sent`: the key to repeat it with, or `None`
        (see `Endpoint.refresh_key`)."""
        fresh = await self.endpoint.refresh_key(sent, sent_at)
        if fresh is not None and fresh != self.key:
            self.key = fresh
            self.key_epoch += 1
        return fresh
