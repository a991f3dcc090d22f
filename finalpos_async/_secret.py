"""`Secret`: the API key (or a Redis URL's password) as a `str` that never renders in clear.

Error trackers, `traceback.TracebackException(capture_locals=True)` and rich's `show_locals`
render every local of every frame with `repr()`; logs format with `str()`. A secret held as a
`Secret` shows a mask (`'sk_…3f9a'`) in all of them, wherever it sits: a local, a settings
object, the `Request` and its headers. It is still a real `str` for everything else (equality,
hashing, `in`, `.encode()`), so comparisons and HTTP libraries work unchanged.

An error built from a server's answer masks the secrets that were sent with the request
(`mask_text`, `mask_bytes`): a server or proxy that echoes the key must not put it into
`str(error)`, `error.text`, `error.headers` or a pickled error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn, TypeVar, overload
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = [
    "HeaderSecret",
    "Secret",
    "SecretURL",
    "conceal",
    "conceal_url",
    "fingerprint",
    "mask_bytes",
    "mask_text",
    "secrets_in",
]

_T = TypeVar("_T")
_S = TypeVar("_S", bound="Secret")

# At most a third of a secret shows: its first 3 characters from 9 on, its last 4 from 21 on.
_HEAD, _HEAD_FROM = 3, 9
_TAIL, _TAIL_FROM = 4, 21


class Secret(str):
    """A secret string whose `repr()`, `str()` and format show only a mask (`'sk_…3f9a'`).

    `reveal()` returns the plain value; comparisons, hashing, `in` and `.encode()` see the real
    characters. It refuses to be pickled (the pickle would hold it in clear).
    """

    __slots__ = ()

    def __new__(cls: type[_S], value: str) -> _S:
        if not isinstance(value, str):
            raise TypeError(f"a {cls.__name__} holds a str, got {type(value).__name__}")
        # str.__str__, not str(): the str() of a Secret is its mask.
        return str.__new__(cls, str.__str__(value))

    @property
    def mask(self) -> str:
        """What renderings show: at most the first 3 and last 4 characters, and never more
        than a third of the secret (`'sk_…3f9a'`; `'…'` for a short one)."""
        size = len(self)
        head = str.__getitem__(self, slice(0, _HEAD)) if size >= _HEAD_FROM else ""
        tail = str.__getitem__(self, slice(size - _TAIL, size)) if size >= _TAIL_FROM else ""
        return f"{head}…{tail}"

    def reveal(self) -> str:
        """The secret itself, as a plain `str` (to hand to a library that needs it)."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return repr(self.mask)

    def __str__(self) -> str:
        return self.mask

    def __format__(self, format_spec: str) -> str:
        return format(self.mask, format_spec)

    def __rich_repr__(self) -> Iterable[str]:
        # rich renders a long str local as a slice of it (`value[:80]`), which would be a plain
        # str: this hook makes it show the mask instead.
        yield self.mask

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(
            f"a {type(self).__name__} cannot be pickled: the pickle would hold it in clear "
            "(pickle secret.reveal() if that is really meant)"
        )

    def __copy__(self: _T) -> _T:
        return self  # immutable, like any str

    def __deepcopy__(self: _T, memo: object) -> _T:
        return self


class HeaderSecret(Secret):
    """A `Secret` sent as a header value: masked in `repr()` (so the headers and the `Request`
    render masked), but `str()` and format give the value, because HTTP libraries build the
    header line with `str()` (aiohttp's C writer does, for any `str` subclass)."""

    __slots__ = ()

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(self, format_spec)


class SecretURL(Secret):
    """A URL with a password (a Redis URL): it renders as the URL with the password as `***`
    (and any query string, which may carry one too, as `…`)."""

    __slots__ = ()

    @property
    def mask(self) -> str:
        """The URL without its password or query string."""
        return redact_url(str.__str__(self))


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***` and its query string by `…`; never raises."""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:  # a malformed netloc or port: show nothing of it
        return "<a URL that cannot be parsed>"
    query = "…" if parts.query else ""
    if password is None:
        netloc = parts.netloc
    else:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))


@overload
def conceal(value: str) -> Secret: ...
@overload
def conceal(value: _T) -> _T: ...
def conceal(value: object) -> object:
    """`value` as a `Secret` when it is a plain `str` (anything else is returned as it is, for
    the caller's type check to refuse). Constructors call it first, so their own locals are
    masked in a traceback even when a later check fails."""
    return Secret(value) if type(value) is str else value


@overload
def conceal_url(value: str) -> SecretURL: ...
@overload
def conceal_url(value: _T) -> _T: ...
def conceal_url(value: object) -> object:
    """`value` as a `SecretURL` when it is a `str` (a URL that may hold a password, such as a
    proxy's); anything else as it is, for the caller's type check to refuse."""
    if isinstance(value, SecretURL) or not isinstance(value, str):
        return value
    return SecretURL(value.reveal() if isinstance(value, Secret) else value)


def fingerprint(api_key: str) -> str:
    """A one-way fingerprint of an API key (16 hex digits of a SHA-256): tells two keys apart
    without revealing either, so it may be stored, logged and used as a name."""
    return hashlib.sha256(b"finalpos-credentials:" + api_key.encode()).hexdigest()[:16]


def secrets_in(headers: Mapping[str, str]) -> list[Secret]:
    """The `Secret` values among `headers` (what a request sent that must never render)."""
    return [value for value in headers.values() if isinstance(value, Secret)]


def mask_text(text: str, secrets: Iterable[Secret]) -> str:
    """`text` with every occurrence of each secret replaced by its mask."""
    for secret in secrets:
        plain = secret.reveal()
        if plain and plain in text:
            text = text.replace(plain, secret.mask)
    return text


def mask_bytes(content: bytes, secrets: Iterable[Secret]) -> bytes:
    """`content` with each secret (UTF-8) replaced by its mask."""
    for secret in secrets:
        plain = secret.reveal().encode()
        if plain and plain in content:
            content = content.replace(plain, secret.mask.encode())
    return content
