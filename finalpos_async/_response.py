"""`RawResponse`: what one logical call brought back, before it is turned into a model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar, cast

import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from . import _codec
from ._exceptions import ResponseValidationError
from ._secret import Secret, mask_bytes, mask_text, secrets_in

__all__ = ["RawResponse"]

T = TypeVar("T")
U = TypeVar("U")

_UNSET: Any = object()
_NOTHING_SENT: Mapping[str, str] = MappingProxyType({})


def _header_count(headers: Mapping[str, str]) -> str:
    # A count only: a hostile server may echo the key back in any header (even in a name).
    return f"<{len(headers)} headers>"


@attrs.define(eq=False)
class RawResponse(Generic[T]):
    """The final HTTP response of one logical call (after any retries).

    - `status_code`, `headers` (case-insensitive), `content` (the body bytes, fully read);
    - `elapsed`: seconds the whole call took, across every attempt and backoff sleep;
    - `attempts`: how many HTTP attempts were made (1 when there was no retry);
    - `request_id`: the server's request id header when it sent one;
    - `method`, `url`, `idempotency_key`, `request_headers`: what was sent (the API key in
      `request_headers` is a `HeaderSecret`, which renders masked).

    `json()` decodes the body once; `parse()` applies the parser (models are built lazily), and
    `with_parser(fn)` returns the same response with another parser. Its `repr` shows no header
    (nor the request id, read from one): a server may echo the key back in any of them.
    """

    status_code: int
    headers: Mapping[str, str] = attrs.field(repr=_header_count)
    content: bytes = attrs.field(repr=False)
    elapsed: float
    attempts: int
    request_id: str | None = attrs.field(repr=False)  # from a header: see `_header_count`
    method: str
    url: str
    idempotency_key: str | None = None
    request_headers: Mapping[str, str] = attrs.field(default=_NOTHING_SENT, repr=False)
    _parser: Callable[[Any], T] | None = attrs.field(default=None, repr=False, alias="parser")
    _json: Any = attrs.field(default=_UNSET, init=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        # aiohttp's read-only header proxy cannot be pickled; a CIMultiDict copy can (errors
        # carrying a response may cross process boundaries).
        state = {field.name: getattr(self, field.name) for field in attrs.fields(type(self))}
        if not isinstance(state["headers"], (dict, CIMultiDict)):
            state["headers"] = CIMultiDict(state["headers"])
        if state["_json"] is _UNSET:  # the sentinel's identity would not survive
            del state["_json"]
        # A pickle must not hold the key in clear (a `Secret` refuses to be pickled): the copy
        # keeps what was sent with every secret as its mask.
        state["request_headers"] = {
            name: value.mask if isinstance(value, Secret) else value
            for name, value in self.request_headers.items()
        }
        # Parsers are closures (per model class, per page) that cannot be pickled; the copy
        # keeps the body, and its `parse()` returns the decoded JSON.
        state["_parser"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_json", _UNSET)
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def redacted(self) -> RawResponse[T]:
        """This response with every secret sent with its request (the API key) replaced by
        its mask wherever the server echoed it: in the body and in the header values.

        It is the response itself when no secret shows (errors keep what this returns).
        """
        secrets = secrets_in(self.request_headers)
        if not secrets:
            return self
        content = mask_bytes(self.content, secrets)
        masked = [(name, mask_text(value, secrets)) for name, value in self.headers.items()]
        # Both maskers return their argument itself when there was nothing to mask.
        if content is self.content and all(
            new is old for (_, new), old in zip(masked, self.headers.values(), strict=True)
        ):
            return self
        redacted: RawResponse[T] = RawResponse(
            status_code=self.status_code,
            headers=CIMultiDictProxy(CIMultiDict(masked)),
            content=content,
            elapsed=self.elapsed,
            attempts=self.attempts,
            request_id=None if self.request_id is None else mask_text(self.request_id, secrets),
            method=self.method,
            url=self.url,
            idempotency_key=self.idempotency_key,
            request_headers=self.request_headers,
            parser=self._parser,
        )
        return redacted

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body decoded as JSON (decoded once and cached); `None` for an empty body.

        A body that is not JSON (an HTML page, truncated or random bytes) raises
        `ResponseValidationError`, never a bare `ValueError`.
        """
        if self._json is _UNSET:
            self._json = self.decode()
        return self._json

    def decode(self) -> Any:
        """The body decoded as JSON into a new object that only the caller holds (not cached,
        unlike `json()`); the same result and errors as `json()`."""
        # Not `.strip()`: that copies the whole body (a 100-record page) just to test it.
        # (No local holds the body: a traceback's locals would show it.)
        if not self.content or self.content.isspace():
            return None
        try:
            return _codec.loads(self.content)
        except ValueError as exc:
            problem = str(exc)
        # Raised after the `except`: the decoder's frames, holding the body, are not chained
        # to it (an echoed key would show there).
        raise ResponseValidationError(
            f"the {self.status_code} response body is not valid JSON "
            f"({len(self.content)} bytes, content type "
            f"{self.headers.get('Content-Type')!r}): {problem}",
            response=self,
        )

    def parse(self) -> T:
        """The body turned into the caller's type by the parser (the decoded JSON without one)."""
        # No local holds the decoded body: a parser's error traceback would show it.
        parser = self._parser
        return cast(T, self.json()) if parser is None else parser(self.json())

    def with_parser(self, fn: Callable[[Any], U]) -> RawResponse[U]:
        """The same response with `fn` as its parser (the decoded JSON is shared, not re-read)."""
        new: RawResponse[U] = RawResponse(
            status_code=self.status_code,
            headers=self.headers,
            content=self.content,
            elapsed=self.elapsed,
            attempts=self.attempts,
            request_id=self.request_id,
            method=self.method,
            url=self.url,
            idempotency_key=self.idempotency_key,
            request_headers=self.request_headers,
            parser=fn,
        )
        new._json = self._json
        return new
