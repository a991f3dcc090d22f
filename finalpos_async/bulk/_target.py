"""What a run works against: the client it reads settings from, and what its journal binds to.

The engine reads only public properties of the client (`BulkClient`); the binding names the
target, the credentials (a fingerprint), the operation and the identity rule, so a journal is
never resumed against anything else.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from ._journal import JournalBinding
from ._limiter import Limiter

__all__ = ["Binding", "BulkClient", "operation_name"]

log = logging.getLogger("finalpos.bulk")


class BulkClient(Protocol):
    """What a bulk run reads from its client (`AsyncFinalPOS` has all of it)."""

    @property
    def base_url(self) -> str | None:
        """Where the records go: the journal's target."""
        ...

    @property
    def credentials_fingerprint(self) -> str:
        """Whose key sends them (a one-way fingerprint)."""
        ...

    @property
    def is_embedded_sandbox(self) -> bool:
        """True when the target dies with the client (nothing to resume later)."""
        ...

    @property
    def rate_limiter(self) -> Limiter | None:
        """The limiter the client applies to every attempt."""
        ...

    @property
    def pool_limit_per_host(self) -> int:
        """The most connections the client opens to one host."""
        ...


@attrs.frozen
class Binding:
    """What the journal will be bound to; the client's URL is read when the run starts."""

    client: BulkClient | None
    target: str | None
    operation: str
    identity: str

    def resolve(self) -> JournalBinding:
        """The binding now (a sandbox's URL is known only once it has started)."""
        client = self.client
        target = self.target
        if target is None:
            if client is not None and client.is_embedded_sandbox:
                # Its data dies with the client: a unique target, so no later run resumes it.
                log.warning(
                    "bulk journal used with an in-memory sandbox: its records die with this "
                    "client, so the journal cannot be resumed against anything later"
                )
                target = f"embedded in-memory sandbox {uuid.uuid4().hex[:12]}"
            else:
                target = (client.base_url if client is not None else None) or "(no client)"
        return JournalBinding(
            target=target,
            credentials=client.credentials_fingerprint if client is not None else "-",
            operation=self.operation,
            identity=self.identity,
        )


def operation_name(operation: Callable[..., Any]) -> str:
    """`customers.create` for a resource method (async, sync or raw twin), else its qualname."""
    if inspect.ismethod(operation):
        cls = type(operation.__self__).__name__
        cls = re.sub(r"^(Async|Sync)", "", cls)
        cls = re.sub(r"WithRawResponse$", "", cls)
        return f"{re.sub(r'(?<!^)(?=[A-Z])', '_', cls).lower()}.{operation.__name__}"
    if isinstance(operation, functools.partial):
        return operation_name(operation.func)
    qualname = getattr(operation, "__qualname__", None)  # a function (not a callable object)
    if isinstance(qualname, str):
        return qualname
    # A callable object: its class, never its repr (which holds a memory address, so the same
    # operation would be named differently on every run and its journal refused).
    return type(operation).__qualname__
