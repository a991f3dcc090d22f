"""`Request`: one logical call as a value, and the pure functions that build it.

The client builds a `Request` once per call (options merged, body encoded, idempotency key
chosen, retry safety decided); the retry loop (`_retry_loop.py`) sends that same value on
every attempt through an `Transport`, and a `MockTransport` handler receives it.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import attrs

from . import _codec
from ._checks import (
    check_bool,
    check_header_value,
    check_headers,
    check_int,
    check_seconds,
    merge_headers,
)
from ._retry import IDEMPOTENT_METHODS
from ._types import DEFAULT_OPTIONS, NotGiven, RequestOptions

__all__ = [
    "CallSettings",
    "Request",
    "build_request",
    "call_deadline",
    "encode_body",
    "flatten_params",
    "new_idempotency_key",
    "query_value",
    "request_headers",
]


def _read_only(headers: Mapping[str, str]) -> Mapping[str, str]:
    # `build_request` hands in a view already (no copy per call); anything else is copied once.
    if isinstance(headers, MappingProxyType):
        return headers
    return MappingProxyType(dict(headers))


# slots=False: a frozen dict class is built about a third faster than a slotted one (its
# `__init__` fills `__dict__` instead of calling `object.__setattr__` per field), and one is
# built per call.
@attrs.frozen(kw_only=True, slots=False)
class Request:
    """What one logical call sends, the same on every attempt: an immutable value.

    - `method`, `url` (absolute, path already percent-encoded), `query` (flattened pairs),
      `content` (the JSON body bytes, or `None`), `headers` (what goes on the wire);
    - `timeout`: the read timeout of each attempt; `deadline`: the whole call's budget
      (seconds, `None` for none); `max_retries`: retries after the first attempt;
    - `idempotency_key`: sent as `Idempotency-Key`;
    - `unsafe_ok`: the caller said a repeat is harmless (a key of their own, or
      `retry_unsafe=True`); `strict`: never repeat what may have taken effect
      (`retry_unsafe=False`, as a bulk run passes for each item).

    Built by keyword only. Setting a field raises `attrs.exceptions.FrozenInstanceError`;
    `headers` is a read-only view (`types.MappingProxyType`), so changing it raises
    `TypeError`; `attrs.evolve(request, url=...)` makes a changed copy, and
    `request.with_headers({...})` one with headers added (what a middleware sends). The API key in
    `headers` is a `HeaderSecret`: the request, its headers and the key render masked
    (`'sk_…3f9a'`) in a `repr`, a log line or a traceback's locals.
    """

    method: str
    url: str
    query: tuple[tuple[str, str], ...]
    content: bytes | None
    headers: Mapping[str, str] = attrs.field(converter=_read_only)
    timeout: float | None
    deadline: float | None
    max_retries: int
    idempotency_key: str | None
    unsafe_ok: bool
    strict: bool

    def json(self) -> Any:
        """The body decoded as JSON (`None` without one); handy in a `MockTransport` handler."""
        return None if self.content is None else _codec.loads(self.content)

    @property
    def params(self) -> dict[str, str]:
        """The query as a dict (the last value wins for a repeated name)."""
        return dict(self.query)

    def with_headers(self, headers: Mapping[str, str]) -> Request:
        """A copy with `headers` set over this request's (a name in another case replaces it).

        What a middleware uses to add a header to an attempt. The headers are checked as
        `extra_headers` are (a bad name or value, or a framing header, raises naming it), and
        a credential among them is kept masked like the API key.
        """
        extra = check_headers("with_headers", headers)
        current = self.headers
        # The converter made it a view: its own copy is much faster than dict(view).
        merged = current.copy() if isinstance(current, MappingProxyType) else dict(current)
        merge_headers(merged, extra)
        # Every field as it is but `headers` (already a read-only view): what `attrs.evolve`
        # builds, without its field-by-field introspection (this runs on every attempt).
        return _new_request({**vars(self), "headers": MappingProxyType(merged)})


class CallSettings(NamedTuple):
    """The client-level values a call starts from (before its `RequestOptions`)."""

    timeout: float | None
    deadline: float | None
    max_retries: int


def call_deadline(default: float | None, options: RequestOptions) -> float | None:
    """The deadline a call runs under: its `deadline` option, else `default` (the client's)."""
    if options is DEFAULT_OPTIONS or isinstance(options.deadline, NotGiven):
        return default
    return check_seconds("deadline", options.deadline)


def build_request(
    method: str,
    url: str,
    base_headers: MappingProxyType[str, str],
    settings: CallSettings,
    *,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    options: RequestOptions = DEFAULT_OPTIONS,
) -> Request:
    """The `Request` for one call: options over client settings, body, key, retry safety.

    `method` and `url` are already checked; a bad option or body raises before anything is sent.
    """
    timeout, deadline, max_retries = settings
    if options is not DEFAULT_OPTIONS:  # the shared default overrides nothing
        if not isinstance(options.timeout, NotGiven):
            timeout = check_seconds("timeout", options.timeout)
        deadline = call_deadline(deadline, options)
        if not isinstance(options.max_retries, NotGiven):
            max_retries = check_int("max_retries", options.max_retries, minimum=0)
        if options.retry_unsafe is not None:
            check_bool("retry_unsafe", options.retry_unsafe)
    query = flatten_params(params)
    if options.extra_query:
        query.extend(flatten_params(options.extra_query))
    content = encode_body(json) if json is not None else None
    # One key per logical call, reused on every attempt (a new key per retry would defeat it).
    key = options.idempotency_key
    if key is not None:
        check_header_value("idempotency_key", key)
    elif method not in IDEMPOTENT_METHODS:
        key = new_idempotency_key()
    # An explicit key (or retry_unsafe=True) is the caller's word that a repeat is harmless;
    # retry_unsafe=False takes that word back.
    strict = options.retry_unsafe is False
    unsafe_ok = not strict and (options.retry_unsafe is True or options.idempotency_key is not None)
    return _new_request(
        {
            "method": method,
            "url": url,
            "query": tuple(query) if query else (),
            "content": content,
            # Already a read-only view (the converter's work is done).
            "headers": request_headers(
                base_headers, content is not None, key, options.extra_headers
            ),
            "timeout": timeout,
            "deadline": deadline,
            "max_retries": max_retries,
            "idempotency_key": key,
            "unsafe_ok": unsafe_ok,
            "strict": strict,
        }
    )


def _new_request(fields: dict[str, Any]) -> Request:
    """A `Request` holding `fields` (every field, by name; `headers` a read-only view).

    What attrs' `__init__` of this frozen dict class does, minus its keyword matching and
    field-by-field stores, which cost about a microsecond on every call. Kept equal to it
    by tests/client/test_lean_request_path.py.
    """
    request = object.__new__(Request)
    # Frozen: the instance's own dict is set through `object`, as attrs itself does.
    object.__setattr__(request, "__dict__", fields)
    return request


def request_headers(
    base: MappingProxyType[str, str],
    has_body: bool,
    idempotency_key: str | None,
    extra: Mapping[str, str] | None,
) -> Mapping[str, str]:
    """The client's headers plus what this call adds, as a read-only view.

    `base` is the client's cached read-only view: a plain GET sends it as it is (no copy per
    call, and no handler can change it for the calls after).
    """
    if not has_body and idempotency_key is None and not extra:
        return base
    headers = base.copy()  # the dict's own copy: dict(view) is ten times slower
    if has_body:
        headers["Content-Type"] = "application/json"
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    if extra:
        merge_headers(headers, check_headers("extra_headers", extra))
    return MappingProxyType(headers)


def new_idempotency_key() -> str:
    """A fresh `Idempotency-Key`: a random (os.urandom) version-4 UUID.

    Kept cryptographically random on purpose: a key predictable from earlier ones could let
    another party replay or block a caller's POSTs.
    """
    return str(uuid.uuid4())


def encode_body(json: Any) -> bytes:
    """The request body as JSON bytes; what cannot be encoded is an error naming `json`."""
    try:
        return _codec.dumps(json)
    except TypeError as exc:
        raise TypeError(f"json (the request body) cannot be encoded as JSON: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"json (the request body) cannot be encoded as JSON: {exc}") from None


def flatten_params(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Flatten query parameters: `None` dropped, bools as true/false, sequences repeated."""
    out: list[tuple[str, str]] = []
    if not params:
        return out
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of names to values, got {type(params).__name__}")
    for key, value in params.items():
        if not isinstance(key, str):
            raise TypeError(f"params keys must be str, got {key!r} ({type(key).__name__})")
        if _SURROGATE.search(key):
            raise ValueError(f"query parameter name {key!r} holds a lone surrogate")
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            for item in cast("list[object] | tuple[object, ...]", value):
                if item is not None:
                    out.append((key, query_value(key, item)))
        else:
            out.append((key, query_value(key, value)))
    return out


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def query_value(key: str, value: object) -> str:
    """One query value in its wire form; a value that cannot be sent raises, naming `key`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        # "nan"/"inf" in a filter would be read as a word, or match nothing, silently.
        raise ValueError(f"query parameter {key!r} must be a finite number, got {value!r}")
    if isinstance(value, str):
        if _SURROGATE.search(value):
            # yarl would silently drop it: a different value than the caller's would be sent.
            raise ValueError(f"query parameter {key!r} holds a lone surrogate (invalid Unicode)")
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        # A naive time means a different instant on every machine; the API needs an offset.
        raise ValueError(
            f"query parameter {key!r} is a naive datetime ({value.isoformat()}); pass a "
            "timezone-aware one, e.g. datetime.now(timezone.utc)"
        )
    # Enums, Decimals, dates and the like: their str() is the wire form.
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    enum_value = getattr(value, "value", None)
    if isinstance(enum_value, (str, int)):
        return str(enum_value)
    if type(value).__name__ == "Decimal":
        return str(value)
    raise TypeError(
        f"query parameter {key!r} has a value of type {type(value).__name__}, which cannot be "
        "sent in a URL; pass a str, int, float, bool, date/datetime, enum or a list of them"
    )
