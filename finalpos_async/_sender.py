"""`RequestSender`: what the resources and paginators need from the client (one logical call).

Its own module so that `_resource` (the resources' base) and `_pagination` (which `_resource`
builds) both depend on it instead of on each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from ._response import RawResponse
from ._types import DEFAULT_OPTIONS, RequestOptions

__all__ = ["RequestSender"]


class RequestSender(Protocol):
    """One logical call of the client: `AsyncFinalPOS.send`.

    The client hands its bound method to each resource it builds (`AsyncResourcesMixin`), so a
    resource and its paginators call it without reaching into the client object.
    """

    def __call__(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        options: RequestOptions = DEFAULT_OPTIONS,
    ) -> Awaitable[RawResponse[Any]]: ...
