"""`honour_idempotency=False` / `--ignore-idempotency`: a sandbox that processes every POST anew."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from sandbox_proc import records, sandbox_process

from finalpos_async.sandbox import Sandbox

CUSTOMER = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}
IGNORED_LINE = "  idempotency: ignored (Idempotency-Key is not honoured)"


async def post(http: aiohttp.ClientSession, body: Any, key: str) -> tuple[int, Any, dict[str, str]]:
    headers = {"Idempotency-Key": key}
    async with http.post("/v1/api/customer", json=body, headers=headers) as response:
        return response.status, json.loads(await response.text()), dict(response.headers)


async def count(http: aiohttp.ClientSession) -> int:
    async with http.get("/v1/api/customers") as response:
        return len(await response.json())


def test_honours_idempotency_by_default_and_is_read_only() -> None:
    assert Sandbox().honours_idempotency is True
    sandbox = Sandbox(honour_idempotency=False)
    assert sandbox.honours_idempotency is False
    with pytest.raises(AttributeError):
        sandbox.honours_idempotency = True  # type: ignore[misc]


@pytest.mark.finalpos_sandbox(honour_idempotency=False)
async def test_one_key_twice_creates_two_records(
    http: aiohttp.ClientSession, finalpos_sandbox: Sandbox
) -> None:
    assert not finalpos_sandbox.honours_idempotency
    first = await post(http, CUSTOMER, "key-1")
    second = await post(http, CUSTOMER, "key-1")
    assert first[0] == second[0] == 201
    assert first[1]["id"] != second[1]["id"]
    assert "Idempotent-Replayed" not in first[2]
    assert "Idempotent-Replayed" not in second[2]
    assert await count(http) == 2


@pytest.mark.finalpos_sandbox(honour_idempotency=False)
async def test_a_reused_key_with_another_body_is_not_a_conflict(
    http: aiohttp.ClientSession,
) -> None:
    await post(http, CUSTOMER, "key-2")
    status, body, _ = await post(http, {**CUSTOMER, "firstName": "Grace"}, "key-2")
    assert status == 201
    assert body["firstName"] == "Grace"
    assert await count(http) == 2


@pytest.mark.finalpos_sandbox(honour_idempotency=False)
async def test_concurrent_posts_with_one_key_all_create(http: aiohttp.ClientSession) -> None:
    results = await asyncio.gather(*(post(http, CUSTOMER, "key-3") for _ in range(5)))
    assert len({r[1]["id"] for r in results}) == 5
    assert await count(http) == 5


async def test_the_default_still_replays(
    http: aiohttp.ClientSession, finalpos_sandbox: Sandbox
) -> None:
    assert finalpos_sandbox.honours_idempotency
    first = await post(http, CUSTOMER, "key-4")
    second = await post(http, CUSTOMER, "key-4")
    assert first[1] == second[1]
    assert second[2].get("Idempotent-Replayed") == "true"
    assert await count(http) == 1


async def _rest_of_announcement(stdout: asyncio.StreamReader) -> list[str]:
    """The announcement lines after "listening on", up to "Press Ctrl-C", within 30 s."""
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while not lines or not lines[-1].startswith("Press Ctrl-C"):
        raw = await asyncio.wait_for(stdout.readline(), max(deadline - time.monotonic(), 0.001))
        assert raw, f"stdout ended after {lines!r}"
        lines.append(raw.decode().rstrip("\n"))
    return lines


@pytest.mark.parametrize(("ignore", "created"), [(True, 2), (False, 1)])
async def test_python_dash_m_announces_and_applies_the_flag(ignore: bool, created: int) -> None:
    # sandbox_process runs `python -m finalpos_async.sandbox --port 0 --quiet [--ignore-...]`
    async with sandbox_process(ignore_idempotency=ignore) as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")
        assert sandbox.process.stdout is not None
        lines = await _rest_of_announcement(sandbox.process.stdout)
        assert (IGNORED_LINE in lines) is ignore
        headers = {"x-api-key": sandbox.api_key, "Idempotency-Key": "proc-key"}
        async with aiohttp.ClientSession(sandbox.url, headers=headers) as session:
            for _ in range(2):
                async with session.post("/v1/api/customer", json=CUSTOMER) as response:
                    assert response.status == 201
        assert len(await records(sandbox.url, sandbox.api_key)) == created


@pytest.mark.parametrize(("args", "honoured"), [([], True), (["--ignore-idempotency"], False)])
def test_the_finalpos_sandbox_command_passes_the_flag(
    monkeypatch: pytest.MonkeyPatch, args: list[str], honoured: bool
) -> None:
    from finalpos_async import sandbox
    from finalpos_async.cli._app import cli

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(sandbox, "serve", lambda **kwargs: calls.append(kwargs))
    result = CliRunner().invoke(cli, ["sandbox", "--port", "0", "--quiet", *args])
    assert result.exit_code == 0, result.output
    assert [c["honour_idempotency"] for c in calls] == [honoured]
    assert "--ignore-idempotency" in CliRunner().invoke(cli, ["sandbox", "--help"]).stdout
