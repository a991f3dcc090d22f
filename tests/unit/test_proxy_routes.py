"""Which proxy a request goes through: the variables' precedence and `NO_PROXY`'s forms."""

from __future__ import annotations

import pytest

from finalpos_async._transport._proxy import bypasses, is_loopback, resolve_proxies

NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def proxy_for(url: str) -> str | None:
    routes = resolve_proxies(None, trust_env=True)
    route = None if routes is None else routes.route_for(url)
    return None if route is None else route.source


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "direct"),
    [
        ("api.example.com", 443, "*", True),
        ("api.example.com", 443, "example.com", True),
        ("api.example.com", 443, ".example.com", True),
        ("example.com", 443, ".example.com", True),
        ("api.example.com", 443, "EXAMPLE.com.", True),
        ("badexample.com", 443, "example.com", False),
        ("api.example.com", 443, "example.com:443", True),
        ("api.example.com", 443, "example.com:8443", False),
        ("10.1.2.3", 443, "10.0.0.0/8", True),
        ("10.1.2.3", 443, "10.1.2.3", True),
        ("11.1.2.3", 443, "10.0.0.0/8", False),
        ("::1", 443, "::1", True),
        ("[fd00::5]", 8080, "[fd00::/8]:8080", True),
        ("api.example.com", 443, "", False),
        ("api.example.com", 443, "other.org,*.nope", False),
    ],
)
def test_no_proxy_entries(host: str, port: int, no_proxy: str, direct: bool) -> None:
    entries = tuple(e.strip().lower() for e in no_proxy.split(",") if e.strip())
    assert bypasses(host, port, entries) is direct


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("sandbox.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("api.finalpos.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_each_scheme_has_its_variable_and_all_proxy_is_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://tls-proxy:3128")
    monkeypatch.setenv("ALL_PROXY", "http://any-proxy:3128")
    assert proxy_for("https://api.finalpos.com/v1/api/customers") == "HTTPS_PROXY"
    assert proxy_for("http://api.finalpos.com/v1") == "ALL_PROXY"
    monkeypatch.setenv("http_proxy", "http://plain-proxy:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://upper-proxy:3128")
    assert proxy_for("http://api.finalpos.com/v1") == "http_proxy"  # lowercase wins


def test_an_empty_variable_is_unset_and_no_variable_means_no_routes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve_proxies(None, trust_env=True) is None
    monkeypatch.setenv("HTTPS_PROXY", "  ")
    assert resolve_proxies(None, trust_env=True) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://tls-proxy:3128")
    assert resolve_proxies(None, trust_env=False) is None


def test_in_a_cgi_script_http_proxy_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # There HTTP_PROXY may come from a request's `Proxy:` header (as urllib treats it).
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    monkeypatch.setenv("HTTP_PROXY", "http://attacker:3128")
    assert proxy_for("http://api.finalpos.com/v1") is None


def test_no_proxy_and_loopback_apply_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://tls-proxy:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example.com")
    assert proxy_for("https://internal.example.com/x") is None
    assert proxy_for("https://api.finalpos.com/x") == "HTTPS_PROXY"
    assert proxy_for("https://127.0.0.1:8443/x") is None
    assert proxy_for("https://localhost/x") is None


def test_the_argument_covers_every_host() -> None:
    routes = resolve_proxies("http://proxy.example.com:3128", trust_env=True)
    assert routes is not None
    for url in ("https://api.finalpos.com/v1", "http://127.0.0.1:8080/v1"):
        route = routes.route_for(url)
        assert route is not None
        assert route.source == "proxy="
        assert str(route.url) == "http://proxy.example.com:3128"
