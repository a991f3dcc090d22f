"""`finalpos --proxy` (and `FINALPOS_PROXY`): the CLI's requests counted at a forwarding proxy on
127.0.0.1 (`tests/forward_proxy.py`), and the proxy's password never printed."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_run import run
from click.testing import CliRunner, Result
from forward_proxy import ForwardProxy, clear_proxy_environment, forward_proxy
from sandbox_proc import write_customers_csv

from finalpos_async.cli._app import cli
from finalpos_async.sandbox import Sandbox

USER, PASSWORD = "proxyuser", "cli-s3cret-pw"
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_environment(monkeypatch)


@pytest.fixture
def proxy(sandbox: Sandbox) -> Iterator[ForwardProxy]:
    assert sandbox.url is not None
    with forward_proxy(sandbox.url, credentials=(USER, PASSWORD)) as running:
        yield running


def printed(result: Result) -> str:
    return result.stdout + result.stderr


def assert_no_credentials(text: str) -> None:
    assert PASSWORD not in text
    assert TOKEN not in text


def test_import_get_and_export_go_through_the_proxy(
    proxy: ForwardProxy, sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "c.csv"
    write_customers_csv(source, ["ann", "bob"])
    via = ["--proxy", proxy.url_with_credentials]
    imported = run(sandbox, *via, "import", "customers", str(source), "--no-journal")
    assert imported.exit_code == 0, printed(imported)
    posts = [s for s in proxy.seen if s.method == "POST"]
    assert len(posts) == 2
    assert all(s.target.startswith(f"{sandbox.url}/v1/api/customer") for s in posts)

    exported = run(sandbox, *via, "export", "customers", "--format", "jsonl")
    assert exported.exit_code == 0, printed(exported)
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert sorted(r["email"] for r in rows) == ["ann@example.com", "bob@example.com"]

    got = run(sandbox, *via, "get", "customers", rows[0]["id"])
    assert got.exit_code == 0, printed(got)
    path = f"{sandbox.url}/v1/api/customer/{rows[0]['id']}"
    assert [s.method for s in proxy.seen if s.target == path] == ["GET"]
    assert proxy.refused == 0
    assert {s.authorization for s in proxy.seen} == {f"Basic {TOKEN}"}
    for result in (imported, exported, got):
        assert_no_credentials(printed(result))


def test_the_proxy_can_come_from_finalpos_proxy(proxy: ForwardProxy, sandbox: Sandbox) -> None:
    result = run(sandbox, "export", "customers", env={"FINALPOS_PROXY": proxy.url_with_credentials})
    assert result.exit_code == 0, printed(result)
    assert proxy.forwarded >= 1  # the first (empty) page, and any fetched beside it
    assert all(s.target.startswith(f"{sandbox.url}/v1/api/customers?") for s in proxy.seen)


def test_the_environments_proxy_is_not_used_for_a_loopback_api(
    proxy: ForwardProxy, sandbox: Sandbox
) -> None:
    env = {"HTTP_PROXY": proxy.url_with_credentials}
    result = run(sandbox, "export", "customers", env=env)
    assert result.exit_code == 0, printed(result)
    assert proxy.seen == []


def test_a_refusing_proxy_is_one_clear_line_without_the_password(sandbox: Sandbox) -> None:
    assert sandbox.url is not None
    with forward_proxy(sandbox.url, credentials=(USER, "other")) as refusing:
        url = f"http://{USER}:{PASSWORD}@127.0.0.1:{refusing.port}"
        result = run(sandbox, "--proxy", url, "get", "customers", "c_1")
        assert refusing.refused == 1  # not retried: the same credentials would fail again
    assert result.exit_code == 1
    text = " ".join(printed(result).split())
    assert "407 Proxy Authentication Required" in text
    assert f"http://{USER}:***@127.0.0.1:{refusing.port} (from proxy=)" in text
    assert_no_credentials(text)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (f"socks5://{USER}:{PASSWORD}@127.0.0.1:1080", "must be an http:// proxy URL"),
        (f"http://{USER}:{PASSWORD}@", "has no host"),
    ],
)
def test_a_bad_proxy_url_is_refused_without_echoing_the_password(
    sandbox: Sandbox, value: str, says: str
) -> None:
    result = run(sandbox, "--proxy", value, "export", "customers")
    assert result.exit_code == 1
    text = " ".join(printed(result).split())
    assert says in text
    assert_no_credentials(text)


def test_without_a_key_the_embedded_sandbox_ignores_the_proxy_and_says_so(
    proxy: ForwardProxy,
) -> None:
    result = CliRunner().invoke(
        cli,
        ["--proxy", proxy.url_with_credentials, "export", "customers"],
        env={"FINALPOS_API_KEY": "", "FINALPOS_BASE_URL": ""},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, printed(result)
    text = " ".join(printed(result).split())
    assert "--proxy is ignored: the embedded sandbox runs in this process" in text
    assert proxy.seen == []
    assert_no_credentials(text)


def test_the_command_to_finish_an_import_repeats_the_proxy_without_its_password(
    proxy: ForwardProxy, sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "c.csv"
    source.write_text("email,firstName,lastName\nann@example.com,Ann,T\nnot-an-email,,\n")
    result = run(
        sandbox, "--proxy", proxy.url_with_credentials, "--no-trust-env", "import", "customers",
        str(source),
    )  # fmt: skip
    assert result.exit_code == 1
    text = " ".join(printed(result).split())
    assert '--proxy "$FINALPOS_PROXY" --no-trust-env import customers' in text
    assert_no_credentials(text)
    assert [s.method for s in proxy.seen].count("POST") == 1  # the valid row
