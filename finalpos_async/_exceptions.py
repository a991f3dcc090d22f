"""The errors the SDK raises. Every one of them derives from `FinalPOSError`:

```
FinalPOSError                      anything the SDK raises on purpose
 ├── APIConnectionError            no usable HTTP response (refused, reset, DNS, TLS, disconnect)
 │    ├── APITimeoutError          connect / pool-acquire / read timeout, or the call's deadline
 │    └── ClientClosedError        the client was closed while the call was in flight
 ├── APIStatusError                the API answered with a non-2xx status
 │    ├── BadRequestError          400
 │    ├── AuthenticationError      401
 │    ├── PermissionDeniedError    403
 │    ├── NotFoundError            404
 │    ├── ConflictError            409
 │    ├── UnprocessableEntityError 422
 │    ├── RateLimitError           429 (and a Retry-After longer than the cap)
 │    └── InternalServerError      >= 500
 └── ResponseValidationError       a 2xx body that cannot be read into the expected type
```

Every error carries the request context: `method`, `url`, `attempts` (HTTP attempts made),
`idempotency_key` and `maybe_processed` (whether the server may have acted on the call although
it failed: an answer lost after sending, a timeout while waiting for it, a 5xx).
`APIStatusError` adds `status_code`, `body` (parsed JSON or `None`), `message` (the API's
`{statusCode, message, error}` message, or a readable summary of an HTML/text page), `text`
(raw body, truncated), `headers`, `request_id` and `response`. The API key is never part of
an error: an error built from a response masks every secret that was sent with the request
(`RawResponse.redacted()`), in its message, text, body, headers and pickled form.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Literal, Protocol, cast

from . import _codec
from ._constants import ERROR_TEXT_LIMIT
from ._secret import mask_text, secrets_in

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConflictError",
    "FinalPOSError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimiterUnavailable",
    "ResponseLike",
    "ResponseValidationError",
    "TimeoutKind",
    "UnprocessableEntityError",
    "make_status_error",
]

TimeoutKind = Literal["connect", "pool", "read", "deadline"]


class ResponseLike(Protocol):
    """What an error keeps of the response it came with: a `RawResponse`, in practice.

    A protocol rather than an import of `_response`, which itself raises these errors (no
    import cycle between the two modules).
    """

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def attempts(self) -> int: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def method(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def idempotency_key(self) -> str | None: ...
    @property
    def text(self) -> str: ...
    @property
    def request_headers(self) -> Mapping[str, str]: ...
    def json(self) -> Any: ...
    def parse(self) -> Any: ...
    def redacted(self) -> ResponseLike: ...


"""Which limit ran out: socket connect, waiting for a pool slot, reading the answer, or the
whole call's deadline."""


class FinalPOSError(Exception):
    """Base of every error the SDK raises; `message` is the human-readable cause.

    `maybe_processed` is True when some attempt of the failed call reached the server and its
    outcome is unknown (answer lost, read timeout, 5xx): a repeat of a POST could then create a
    second record unless the server honours `Idempotency-Key`. False means the server provably did
    not act on it (never sent, or refused with a 4xx).
    """

    message: str
    method: str | None
    url: str | None
    attempts: int
    idempotency_key: str | None
    maybe_processed: bool = False

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        attempts: int = 0,
        idempotency_key: str | None = None,
    ) -> None:
        self.message = message
        self.method = method
        self.url = url
        self.attempts = attempts
        self.idempotency_key = idempotency_key
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only constructors defeat Exception's default reduce (args only), which
        # copy.copy() and pickle use; rebuild from the instance state instead.
        return (_rebuild_error, (type(self), self.args, self.__dict__.copy()))

    def __str__(self) -> str:
        parts = [self._headline()]
        if self.method and self.url:
            parts.append(f"[{self.method} {self.url}")
            if self.attempts:
                noun = "attempt" if self.attempts == 1 else "attempts"
                parts[-1] += f", {self.attempts} {noun}"
            if self.idempotency_key:
                parts[-1] += f", idempotency key {self.idempotency_key}"
            parts[-1] += "]"
        return " ".join(parts)

    @property
    def headline(self) -> str:
        """The error in one line, without the request context `str(error)` adds after it."""
        return self._headline()

    def _headline(self) -> str:
        return self.message


class APIConnectionError(FinalPOSError):
    """No usable HTTP response: the connection failed, was reset or dropped, or TLS failed."""

    def __init__(
        self,
        message: str = "Connection error.",
        *,
        method: str | None = None,
        url: str | None = None,
        attempts: int = 0,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(
            message, method=method, url=url, attempts=attempts, idempotency_key=idempotency_key
        )


class APITimeoutError(APIConnectionError):
    """A time limit ran out; `kind` says which one (`connect`, `pool`, `read`, `deadline`).

    `last_error` is the error of the last attempt when the deadline stopped a retry sequence.
    """

    kind: TimeoutKind
    last_error: FinalPOSError | None

    def __init__(
        self,
        message: str = "Request timed out.",
        *,
        kind: TimeoutKind = "read",
        method: str | None = None,
        url: str | None = None,
        attempts: int = 0,
        idempotency_key: str | None = None,
        last_error: FinalPOSError | None = None,
    ) -> None:
        self.kind = kind
        self.last_error = last_error
        super().__init__(
            message, method=method, url=url, attempts=attempts, idempotency_key=idempotency_key
        )


class ClientClosedError(APIConnectionError):
    """The client was closed (`close()`, leaving `async with`) while this call was in flight.

    `close()` does not wait for calls in flight: it ends each of them with this error.
    `maybe_processed` is True when an attempt had started (the request may have been sent, and
    the answer is lost), False when the call was waiting for a pool slot, a rate-limit token or
    a retry's backoff and nothing it sent may have been processed.
    """


class APIStatusError(FinalPOSError):
    """The API answered with a non-2xx status.

    `message` is the API's own message (`{statusCode, message, error}`), or a readable summary
    when the body is not that shape (an HTML page from a proxy, plain text, nothing).
    """

    status_code: int
    body: Any
    error: str | None
    text: str
    request_id: str | None
    response: ResponseLike

    def __init__(self, message: str, *, response: ResponseLike, body: Any = None) -> None:
        # An echoed key never reaches the error (make_status_error has done this already).
        response = response.redacted()
        message = mask_text(message, secrets_in(response.request_headers))
        self.response = response
        self.status_code = response.status_code
        self.body = body
        self.error = _body_error(body)
        self.text = _truncate(response.text)
        self.request_id = response.request_id
        super().__init__(
            message,
            method=response.method,
            url=response.url,
            attempts=response.attempts,
            idempotency_key=response.idempotency_key,
        )

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers (case-insensitive)."""
        return self.response.headers

    def _headline(self) -> str:
        head = f"HTTP {self.status_code}"
        reason = _reason(self.status_code)
        if reason:
            head += f" {reason}"
        head += f": {self.message}"
        if self.request_id:
            head += f" (request id {self.request_id})"
        return head


class BadRequestError(APIStatusError):
    """400: the request was malformed or failed validation."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the API key may not do this."""


class NotFoundError(APIStatusError):
    """404: no such route or object."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the current state (for example a duplicate)."""


class UnprocessableEntityError(APIStatusError):
    """422: the body was well-formed but semantically invalid."""


class RateLimitError(APIStatusError):
    """429: too many requests. `retry_after` is the server's requested wait in seconds, if any.

    Also raised at once (without waiting) when `Retry-After` asks for longer than the client's
    cap, so a long stall is the caller's decision.
    """

    retry_after: float | None

    def __init__(
        self,
        message: str,
        *,
        response: ResponseLike,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, response=response, body=body)

    def _headline(self) -> str:
        head = super()._headline()
        if self.retry_after is not None:
            head += f" (retry after {self.retry_after:g} s)"
        return head


class InternalServerError(APIStatusError):
    """A 5xx status: the server (or a proxy in front of it) failed."""


class RateLimiterUnavailable(FinalPOSError):
    """The shared rate limiter's store (Redis) could not be reached or refused us.

    Raised instead of sending without a token: the cap is never silently exceeded. The message
    names Redis and its host:port, never the password. Raised on a retry, it carries the call's
    `attempts` so far and their `maybe_processed`.
    """


class ResponseValidationError(FinalPOSError):
    """A 2xx body could not be read into the expected type; `field_path` says where."""

    field_path: str | None
    response: ResponseLike | None

    def __init__(
        self,
        message: str,
        *,
        field_path: str | None = None,
        response: ResponseLike | None = None,
    ) -> None:
        self.field_path = field_path
        if response is not None:
            response = response.redacted()
            message = mask_text(message, secrets_in(response.request_headers))
        self.response = response
        if response is None:
            super().__init__(message)
        else:
            super().__init__(
                message,
                method=response.method,
                url=response.url,
                attempts=response.attempts,
                idempotency_key=response.idempotency_key,
            )

    def _headline(self) -> str:
        if self.field_path:
            return f"{self.message} (at {self.field_path})"
        return self.message


def _rebuild_error(
    cls: type[FinalPOSError], args: tuple[Any, ...], state: dict[str, Any]
) -> FinalPOSError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def make_status_error(
    response: ResponseLike, *, retry_after: float | None = None
) -> APIStatusError:
    """Build the typed error for a non-2xx response (the class is chosen by status).

    The response is redacted first (`RawResponse.redacted()`): a server or proxy that echoes
    the key ("invalid key sk_live_...") must not put it into logs and tracebacks through the
    error's message, text, body or headers.
    """
    response = response.redacted()
    body = _parse_body(response.content)
    message = _message(response, body)
    status = response.status_code
    if status == 429:
        return RateLimitError(message, response=response, body=body, retry_after=retry_after)
    cls = _STATUS_CLASSES.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else APIStatusError
    return cls(message, response=response, body=body)


def _parse_body(content: bytes) -> Any:
    stripped = content.strip()
    if not stripped or stripped[:1] not in b'{["':
        return None
    try:
        return _codec.loads(stripped)
    except ValueError:
        return None


def _body_error(body: Any) -> str | None:
    if isinstance(body, dict):
        error = cast("dict[str, Any]", body).get("error")
        if isinstance(error, str):
            return error
    return None


def _message(response: ResponseLike, body: Any) -> str:
    if isinstance(body, dict):
        fields = cast("dict[str, Any]", body)
        msg = fields.get("message")
        # NestJS-style validation errors answer a list of messages.
        if isinstance(msg, list) and msg:
            return "; ".join(str(m) for m in cast("list[object]", msg))
        if isinstance(msg, str) and msg.strip():
            return msg.strip()
        err = fields.get("error")
        if isinstance(err, str) and err.strip():
            return err.strip()
    text = response.text.strip()
    if not text:
        return _reason(response.status_code) or "no response body"
    if "<" in text and re.search(r"<\s*(html|head|body|title|h1)\b", text, re.IGNORECASE):
        return _html_summary(text) or _reason(response.status_code) or "HTML error page"
    return _truncate(" ".join(text.split()), 300)


# A page's title or heading is near its top: only this much of an HTML error page is read for
# its summary. Every scan below is linear (no pattern can backtrack over the text), so even a
# hostile page at the size limit cannot hold the event loop for long.
_HTML_SCAN_LIMIT = 64 * 1024
# `[^<>]`: a "<" with no ">" after it fails at the next "<", instead of rescanning to the end.
_TAG_RE = re.compile(r"<[^<>]*>")
_OPEN_RES = {
    tag: re.compile(rf"<{tag}(?:[\s/][^<>]*)?>", re.IGNORECASE)
    for tag in ("title", "h1", "script", "style")
}
_CLOSE_RES = {
    tag: re.compile(rf"</{tag}\s*>", re.IGNORECASE) for tag in ("title", "h1", "script", "style")
}


def _element_text(text: str, tag: str) -> str:
    """The raw content of the first `<tag>...</tag>` in `text` ("" when there is none)."""
    opening = _OPEN_RES[tag].search(text)
    if opening is None:
        return ""
    closing = _CLOSE_RES[tag].search(text, opening.end())
    return "" if closing is None else text[opening.end() : closing.start()]


def _strip_elements(text: str, tag: str) -> str:
    """`text` without its `<tag>...</tag>` blocks (scripts and styles are not prose)."""
    parts: list[str] = []
    pos = 0
    while True:
        opening = _OPEN_RES[tag].search(text, pos)
        if opening is None:
            break
        parts.append(text[pos : opening.start()])
        closing = _CLOSE_RES[tag].search(text, opening.end())
        if closing is None:
            pos = len(text)
            break
        parts.append(" ")
        pos = closing.end()
    parts.append(text[pos:])
    return "".join(parts)


def _html_summary(text: str) -> str:
    """A one-line readable message from an HTML error page (a proxy's 502, for example)."""
    text = text[:_HTML_SCAN_LIMIT]
    for tag in ("title", "h1"):
        content = _element_text(text, tag)
        if content:
            found = " ".join(html.unescape(_TAG_RE.sub(" ", content)).split())
            if found:
                return _truncate(found, 300)
    prose = _strip_elements(_strip_elements(text, "script"), "style")
    plain = " ".join(html.unescape(_TAG_RE.sub(" ", prose)).split())
    return _truncate(plain, 300)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _truncate(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [truncated, {len(text)} characters in all]"
