"""The one rule set for client settings and per-call values (constructor, `with_options`, calls).

Every check returns the value it accepted (normalised where that is cheap) or raises a
`TypeError`/`ValueError` naming the setting. None of them ever echoes a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ._secret import HeaderSecret, Secret

__all__ = [
    "CONTROL_CHAR",
    "CREDENTIAL_HEADERS",
    "check_api_key",
    "check_bool",
    "check_header_value",
    "check_headers",
    "check_int",
    "check_method",
    "check_path",
    "check_seconds",
    "merge_headers",
]

# RFC 9110 section 5.6.2: a header name is a "token"; anything else (":", space, "\r") could
# forge another header or split the request.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Framing and hop-by-hop headers (and `Proxy-*`): the transport sets them from the body and the
# connection. One from a caller would go out next to the transport's (Transfer-Encoding with
# Content-Length, the classic request-smuggling set-up) or lie about the body (Content-Length: 0
# on a POST that has one), and a server or proxy could then read one request as two.
_REFUSED_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
    }
)
CONTROL_CHAR = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
"""Control characters and lone surrogates: one regex scan instead of an `ord()` per character.

Lone surrogates too: aiohttp and yarl silently drop them from headers and URLs, so two
different values ("k\\ud800", "k\\udc00") would go out as the same one."""

CREDENTIAL_HEADERS = frozenset({"x-api-key", "authorization"})
"""Header names (lower case) whose values are credentials: held as `HeaderSecret`s."""

# The methods the generated resources send, accepted as they are without further checks.
_PLAIN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def check_api_key(key: object, name: str = "api_key") -> str:
    """A usable API key (the key itself never appears in the messages, which start with `name`)."""
    if not isinstance(key, str):
        raise TypeError(f"{name} must be a str, got {type(key).__name__}")
    if not key.strip():
        raise ValueError(f"{name} must not be empty")
    if key != key.strip():
        # A copy-paste artefact: sent as is it fails later as a 401 that hides the cause.
        raise ValueError(
            f"{name} has spaces or line breaks around it; remove them (the key itself is not "
            "shown here)"
        )
    if CONTROL_CHAR.search(key):
        raise ValueError(
            f"{name} contains control characters (CR, LF, ...) or lone surrogates; "
            "check how it is read"
        )
    return key


def check_method(method: object) -> str:
    """An HTTP method in upper case."""
    if isinstance(method, str):
        # A plain str is returned as it is; a subclass (an enum member) becomes a plain str.
        if method.__class__ is str and method in _PLAIN_METHODS:
            return method
        if method.isalpha():
            return method.upper()
    raise ValueError(f"method must be an HTTP method such as 'GET' or 'POST', got {method!r}")


def check_path(path: object) -> str:
    """A URL path below the base URL: starts with '/', no scheme, no control characters."""
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, got {type(path).__name__}")
    if not path.startswith("/") or "://" in path:
        raise ValueError(
            f"path must be a URL path starting with '/', such as '/v1/api/customers'; got {path!r}"
        )
    if CONTROL_CHAR.search(path):
        raise ValueError(
            "path must not contain control characters (CR, LF, ...) or lone surrogates"
        )
    return path


def check_seconds(name: str, value: object) -> float | None:
    """A finite number of seconds > 0, or `None` (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {value!r}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds > 0 (or None), got {value!r}")
    return float(value)


def check_int(name: str, value: object, *, minimum: int) -> int:
    """An int (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_bool(name: str, value: object) -> bool:
    """A real bool (a truthy string such as "false" is refused, not read as True)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_headers(name: str, headers: Mapping[str, str] | None) -> Mapping[str, str]:
    """Header names that are RFC 9110 tokens and values without control characters.

    Framing and hop-by-hop headers (Content-Length, Transfer-Encoding, Host, Connection, Upgrade,
    TE, Trailer, Keep-Alive, Proxy-*) are refused, whatever their case. A credential
    (`x-api-key`, `Authorization`, or any `Secret`) comes back as a `HeaderSecret` (in a copy of
    `headers`): masked wherever it is kept, sent as is.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str, got {type(headers).__name__}")
    concealed: dict[str, str] | None = None
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"{name} must map str to str; {key!r} maps to {type(value).__name__}")
        if not _TOKEN_RE.fullmatch(key):
            raise ValueError(
                f"{name} has an invalid header name {key!r}; a name is letters, digits and "
                "!#$%&'*+-.^_`|~ only (no spaces, colons or control characters)"
            )
        lowered = key.lower()
        if lowered in _REFUSED_HEADERS or lowered.startswith("proxy-"):
            raise ValueError(
                f"{name} must not set {key!r}: framing and hop-by-hop headers (Content-Length, "
                "Transfer-Encoding, Host, Connection, Upgrade, TE, Trailer, Keep-Alive, Proxy-*) "
                "are set by the transport; one set by hand could make a server or proxy read the "
                "request differently (request smuggling). Remove it"
            )
        if CONTROL_CHAR.search(value):
            raise ValueError(
                f"{name} entry {key!r} contains control characters (CR, LF, ...) or lone surrogates"
            )
        # A `Secret` of the caller's must go on the wire as itself, not as its mask.
        if not isinstance(value, HeaderSecret) and (
            isinstance(value, Secret) or lowered in CREDENTIAL_HEADERS
        ):
            if concealed is None:
                concealed = dict(headers)
            concealed[key] = HeaderSecret(value)
    return headers if concealed is None else concealed


def check_header_value(name: str, value: object) -> str:
    """A value that goes into a header: a non-empty str without control characters."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    if CONTROL_CHAR.search(value):
        # The value itself is not echoed: it could be long or sensitive.
        raise ValueError(
            f"{name} contains control characters (CR, LF, ...) or lone surrogates; they are refused"
        )
    return value


def merge_headers(headers: dict[str, str], extra: Mapping[str, str]) -> None:
    """Put `extra` into `headers`, replacing any header of the same name in another case.

    Header names are case-insensitive: an override must replace ours, not be sent next to it
    (two `x-api-key` or `User-Agent` headers).
    """
    overridden = {key.lower() for key in extra}
    for key in [k for k in headers if k.lower() in overridden]:
        del headers[key]
    headers.update(extra)
