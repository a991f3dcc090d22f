"""Small shared types: the NOT_GIVEN sentinel and the per-call request options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias, TypeVar

import attrs

__all__ = ["NOT_GIVEN", "NotGiven", "NotGivenOr", "RequestOptions"]

_T = TypeVar("_T")


class NotGiven:
    """The type of `NOT_GIVEN`: an argument the caller left out, as opposed to an explicit `None`.

    `update(..., note=None)` sends `"note": null`; `update()` without `note` leaves it alone.
    """

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()

NotGivenOr: TypeAlias = _T | NotGiven
"""A parameter type that also accepts `NOT_GIVEN` (meaning: omit it)."""


@attrs.frozen(kw_only=True)
class RequestOptions:
    """Per-call options; a `NOT_GIVEN` field falls back to the client's setting.

    - `timeout`: seconds each attempt may take to answer (the read timeout).
    - `deadline`: seconds the whole call may take, across every attempt and backoff sleep.
    - `max_retries`: retries after the first attempt.
    - `extra_headers`: added to (and overriding) the SDK's headers.
    - `extra_query`: added to the query string.
    - `idempotency_key`: sent as `Idempotency-Key`; passing one also allows retrying a POST.
    - `retry_unsafe`: whether a POST is retried where it may already have been processed (a
      lost answer, a read timeout, a 5xx). `None` (default): only when `idempotency_key` is
      given; `True`: always; `False`: never, even with a key (which is still sent), for servers
      that may not honour it (a bulk run passes `False` for each item). A POST that provably did
      not take effect (never sent, 429) is retried in every mode.
    """

    timeout: NotGivenOr[float | None] = NOT_GIVEN
    deadline: NotGivenOr[float | None] = NOT_GIVEN
    max_retries: NotGivenOr[int] = NOT_GIVEN
    extra_headers: Mapping[str, str] | None = None
    extra_query: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    retry_unsafe: bool | None = None


DEFAULT_OPTIONS: Final = RequestOptions()
