"""URL building: path-parameter encoding and base-URL validation."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, urlsplit

__all__ = ["encode_path_param", "is_local_host", "normalize_base_url"]

# One regex scan per value instead of an `ord()` per character (this runs on every call).
_CONTROL_CHAR = re.compile(r"[\x00-\x1f\x7f]")
# RFC 3986 unreserved characters: exactly what `quote(value, safe="")` leaves as it is.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")


def encode_path_param(value: object, name: str) -> str:
    """Validate one path parameter and percent-encode it (nothing is left unescaped, not even `/`).

    Raises `TypeError` when `value` is not a `str` and `ValueError` when it is empty or holds a
    control character (CR/LF would split the request line); both name the parameter.
    """
    if not isinstance(value, str):
        raise TypeError(f"path parameter {name!r} must be a str, got {type(value).__name__}")
    # Ids are almost always plain (hex, uuid, slug): nothing to escape. Hex and other
    # alphanumeric ids pass two C-level checks; the regex covers "-", "_", "." and "~".
    if value.isascii() and value.isalnum():
        return value
    if _UNRESERVED.fullmatch(value) and value not in {".", ".."}:
        return value
    if not value:
        raise ValueError(f"path parameter {name!r} must not be empty")
    control = _CONTROL_CHAR.search(value)
    if control is not None:
        raise ValueError(
            f"path parameter {name!r} contains the control character {control.group()!r}; "
            "ids never contain CR, LF or other control characters"
        )
    # "." and ".." would be resolved away as path segments by proxies and URL joiners.
    if value in {".", ".."}:
        raise ValueError(f"path parameter {name!r} must not be {value!r}")
    try:
        return quote(value, safe="")
    except UnicodeEncodeError:
        # A lone surrogate (from a bad decode upstream) has no UTF-8 form to send.
        raise ValueError(
            f"path parameter {name!r} is not valid Unicode text (it holds a lone surrogate)"
        ) from None


def is_local_host(host: str | None) -> bool:
    """True for `localhost` (and `*.localhost`) and loopback addresses, where plain http is safe."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_base_url(
    url: str, *, allow_insecure_http: bool = False, name: str = "base_url"
) -> str:
    """Check a base URL and return it without a trailing slash (errors start with `name`).

    `http://` is refused for any host other than localhost/loopback unless `allow_insecure_http`
    is set, because the API key would travel in clear text.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{name} must be a non-empty URL such as 'https://api.finalpos.com'")
    url = url.strip()
    # urlsplit silently drops CR, LF and tab, so check first: they would otherwise reach the
    # request line or the Host header.
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError(f"{name} must not contain spaces or control characters (CR, LF, tab, ...)")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{name} must not carry a query string or fragment, got {url!r}")
    if parts.username or parts.password:
        raise ValueError(f"{name} must not carry credentials; pass api_key instead")
    if parts.scheme == "http" and not allow_insecure_http and not is_local_host(parts.hostname):
        raise ValueError(
            f"{name} {url!r} uses plain http to a non-local host, so the API key would travel "
            "in clear text; use https, or pass allow_insecure_http=True if you really mean it"
        )
    return url.rstrip("/")
