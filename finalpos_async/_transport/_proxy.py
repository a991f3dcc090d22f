"""Which proxy an attempt goes through: `proxy=`, or with `trust_env` the environment's.

- `proxy=` (an `http://` URL, optionally `user:password@`): every request goes through it, the
  environment's proxy variables and `NO_PROXY` notwithstanding (as in requests and httpx).
- `trust_env=True` (the default) and no `proxy=`: `HTTP_PROXY` for `http://` targets,
  `HTTPS_PROXY` for `https://` ones (`ALL_PROXY` for either when unset; lowercase names win over
  uppercase, as in urllib, curl and requests), except for the hosts `NO_PROXY` lists and for
  loopback hosts (`localhost`, `127.0.0.0/8`, `::1`), which are always reached directly (as Go's
  `net/http` does): a proxy elsewhere cannot reach this machine's loopback, so the embedded
  sandbox and local servers would be unreachable through it. `SSL_CERT_FILE`/`SSL_CERT_DIR`
  replace the certificates TLS is verified against.

The environment is read once, when the client is constructed; a malformed value is an error
naming its variable. A proxy URL renders with its password as `***` everywhere (`SecretURL`).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from typing import Final
from urllib.parse import SplitResult, urlsplit

import yarl

from .._secret import SecretURL, conceal, conceal_url

__all__ = ["PROXY_SCHEMES", "ProxyRoute", "ProxyRoutes", "resolve_proxies", "tls_from_env"]

PROXY_SCHEMES: Final = ("http",)

# Each target scheme's variables, in order of precedence (the first set one wins).
_ENV_NAMES: Final = {
    "http": ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"),
    "https": ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"),
}
_NO_PROXY_NAMES: Final = ("no_proxy", "NO_PROXY")
# Distinct origins remembered (a client talks to one or two).
_CACHE_SIZE = 64


class ProxyRoute:
    """One proxy: the URL aiohttp gets (`url`, credentials included) and how people see it."""

    __slots__ = ("passwords", "secret", "source", "url")

    def __init__(self, secret: SecretURL, source: str) -> None:
        self.secret = secret  # renders as the URL with the password as `***`
        self.source = source  # where it came from: `proxy=` or the variable's name
        self.url = yarl.URL(secret.reveal())
        # The password alone, as written and decoded, masked in any error text quoting it.
        forms = {self.url.raw_password or "", self.url.password or ""} - {""}
        self.passwords = tuple(conceal(form) for form in sorted(forms, key=len, reverse=True))

    def __repr__(self) -> str:
        return f"<ProxyRoute {self.secret.mask} from {self.source}>"

    def describe(self) -> str:
        """`the proxy http://user:***@host:port (from HTTPS_PROXY)`, for error messages."""
        return f"the proxy {self.secret.mask} (from {self.source})"


class ProxyRoutes:
    """Picks the proxy for a target URL (`route_for`), remembering the answer per origin."""

    __slots__ = ("_by_scheme", "_cache", "_explicit", "_no_proxy")

    def __init__(
        self,
        *,
        explicit: ProxyRoute | None = None,
        by_scheme: Mapping[str, ProxyRoute] | None = None,
        no_proxy: tuple[str, ...] = (),
    ) -> None:
        self._explicit = explicit
        self._by_scheme = dict(by_scheme or {})
        self._no_proxy = no_proxy
        self._cache: dict[str, ProxyRoute | None] = {}

    def __repr__(self) -> str:
        if self._explicit is not None:
            return f"<ProxyRoutes all via {self._explicit.secret.mask}>"
        routes = ", ".join(f"{k}: {v.secret.mask}" for k, v in self._by_scheme.items())
        return f"<ProxyRoutes {routes} no_proxy={','.join(self._no_proxy)!r}>"

    @property
    def routes(self) -> list[ProxyRoute]:
        """Every proxy these routes may use."""
        if self._explicit is not None:
            return [self._explicit]
        return list(self._by_scheme.values())

    def route_for(self, url: str) -> ProxyRoute | None:
        """The proxy for a request to `url` (an absolute URL), or None to go direct."""
        explicit = self._explicit
        if explicit is not None:
            return explicit
        # The origin: scheme://authority, up to the path's first slash.
        start = url.find("://") + 3
        end = url.find("/", start)
        origin = url if end == -1 else url[:end]
        try:
            return self._cache[origin]
        except KeyError:
            pass
        route = self._pick(origin)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[origin] = route
        return route

    def _pick(self, origin: str) -> ProxyRoute | None:
        parts = urlsplit(origin)
        route = self._by_scheme.get(parts.scheme.lower())
        host = (parts.hostname or "").rstrip(".")
        if route is None or not host or is_loopback(host):
            return None
        try:
            port = parts.port
        except ValueError:
            port = None
        if bypasses(host, port, self._no_proxy):
            return None
        return route


def is_loopback(host: str) -> bool:
    """True for `localhost`, a `*.localhost` name and loopback addresses (127/8, ::1)."""
    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bypasses(host: str, port: int | None, entries: tuple[str, ...]) -> bool:
    """Whether `NO_PROXY` (its comma-separated `entries`) sends `host[:port]` direct.

    An entry is `*` (every host), a domain (`example.com` or `.example.com`: it and its
    subdomains), an IP address or a CIDR network (`10.0.0.0/8`), each optionally with `:port`.
    """
    host = host.lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
            host.strip("[]")
        )
    except ValueError:
        address = None
    for entry in entries:
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    # `host:port`, `[v6]:port`; a bare IPv6 address has colons but no port.
    head, colon, tail = entry.rpartition(":")
    if colon and tail.isdigit() and (not head.count(":") or head.endswith("]")):
        return head, int(tail)
    return entry, None


def check_proxy_url(value: object, name: str, *, scheme_optional: bool = False) -> SecretURL:
    """`value` as a proxy URL (`http://[user:password@]host[:port]`), or an error saying why.

    `name` is what the message calls it (`proxy`, or the environment variable); a URL without
    a scheme is an `http://` one when `scheme_optional` (as curl and httpx read the variables).
    The password is never part of a message, nor held in clear by a frame that raises.
    """
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a proxy URL (a str such as 'http://proxy.example.com:3128'), "
            f"got {type(value).__name__}"
        )
    url = SecretURL(_with_scheme(value, scheme_optional))
    shown = url.mask
    fix = _FIX_ENV.format(name=name) if scheme_optional else _FIX_ARG
    problem = _problem(url.reveal())
    if problem == "malformed":
        raise ValueError(
            f"{name} is not a valid proxy URL ({shown!r}): check the port and brackets; {fix}"
        )
    if problem.startswith("scheme "):
        scheme = problem.removeprefix("scheme ")
        extra = (
            "; for SOCKS, pass session=aiohttp.ClientSession(connector=...) with a SOCKS "
            "connector (aiohttp-socks)"
            if scheme.startswith("socks")
            else ""
        )
        raise ValueError(
            f"{name} must be an http:// proxy URL, got {shown!r} "
            f"(scheme {scheme or 'missing'!r}: https:// targets are tunnelled through an "
            f"http:// proxy with CONNECT, so the API traffic stays encrypted){extra}; {fix}"
        )
    if problem == "no host":
        raise ValueError(f"{name} has no host: {shown!r}; {fix}")
    if problem == "not an origin":
        raise ValueError(
            f"{name} must be only scheme, host and port (no path or query): {shown!r}; {fix}"
        )
    return SecretURL(_origin(url.reveal()))


def _with_scheme(value: str, scheme_optional: bool) -> str:
    text = str.strip(value)
    return "http://" + text if scheme_optional and text and "://" not in text else text


def _problem(url: str) -> str:
    """What is wrong with a proxy URL ("" for nothing); never its text."""
    try:
        parts = urlsplit(url)
        if parts.port == 0:
            return "malformed"
    except ValueError:
        return "malformed"
    scheme = parts.scheme.lower() if "://" in url else ""
    if scheme not in PROXY_SCHEMES:
        return f"scheme {scheme}"
    if not parts.hostname:
        return "no host"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "not an origin"
    return ""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return SplitResult(parts.scheme.lower(), parts.netloc, "", "", "").geturl()


_FIX_ARG = (
    "give it as http://[user:password@]host[:port], with any of : / @ ? # in the user or "
    "password percent-encoded"
)
_FIX_ENV = (
    "fix the {name} environment variable (http://[user:password@]host[:port]), or pass "
    "trust_env=False to ignore the environment"
)


def resolve_proxies(proxy: object, *, trust_env: bool) -> ProxyRoutes | None:
    """The client's proxy routes (None: every request goes direct).

    `os.environ` is read in place, never bound to a local: a traceback with locals would render
    all of it.
    """
    proxy = conceal_url(proxy)
    if proxy is not None:
        url = check_proxy_url(proxy, "proxy")
        return ProxyRoutes(explicit=ProxyRoute(url, "proxy="))
    if not trust_env:
        return None
    # As urllib does: in a CGI script, HTTP_PROXY may be a request's `Proxy:` header.
    cgi = "REQUEST_METHOD" in os.environ
    by_scheme: dict[str, ProxyRoute] = {}
    for scheme, names in _ENV_NAMES.items():
        for name in names:
            if cgi and name == "HTTP_PROXY":
                continue
            if os.environ.get(name, "").strip():
                value = conceal_url(os.environ[name])  # never held in clear
                url = check_proxy_url(value, name, scheme_optional=True)
                by_scheme[scheme] = ProxyRoute(url, name)
                break
    if not by_scheme:
        return None
    no_proxy = next((os.environ[n] for n in _NO_PROXY_NAMES if os.environ.get(n, "").strip()), "")
    entries = tuple(e.strip().lower() for e in no_proxy.split(",") if e.strip())
    return ProxyRoutes(by_scheme=by_scheme, no_proxy=entries)


def tls_from_env() -> ssl.SSLContext | None:
    """A verifying TLS context from `SSL_CERT_FILE`/`SSL_CERT_DIR` (None when neither is set)."""
    cafile = os.environ.get("SSL_CERT_FILE", "").strip() or None
    capath = os.environ.get("SSL_CERT_DIR", "").strip() or None
    if cafile is None and capath is None:
        return None
    if cafile is not None and not os.path.isfile(cafile):
        raise ValueError(
            f"SSL_CERT_FILE={cafile!r} is not a file: point it at a PEM bundle of CA "
            "certificates, unset it, or pass trust_env=False to ignore the environment"
        )
    if capath is not None and not os.path.isdir(capath):
        raise ValueError(
            f"SSL_CERT_DIR={capath!r} is not a directory: point it at a directory of CA "
            "certificates, unset it, or pass trust_env=False to ignore the environment"
        )
    # Loading a bundle costs tens of milliseconds (a system bundle holds ~150 certificates),
    # and containers often set SSL_CERT_FILE: one context per bundle and process, shared by
    # every client (as aiohttp shares its default one), renewed when the file changes.
    stamp = os.stat(cafile).st_mtime_ns if cafile is not None else 0
    key = (cafile, capath, stamp)
    cached = _TLS_CONTEXTS.get(key)
    if cached is not None:
        return cached
    try:
        context = ssl.create_default_context(cafile=cafile, capath=capath)
    except ssl.SSLError as exc:
        raise ValueError(
            f"SSL_CERT_FILE={cafile!r} holds no usable CA certificate ({exc.reason or exc}): "
            "point it at a PEM bundle, or pass trust_env=False to ignore the environment"
        ) from None
    if len(_TLS_CONTEXTS) >= _CACHE_SIZE:
        _TLS_CONTEXTS.clear()
    _TLS_CONTEXTS[key] = context
    return context


_TLS_CONTEXTS: dict[tuple[str | None, str | None, int], ssl.SSLContext] = {}
