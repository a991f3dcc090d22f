"""Ways to run the sandbox: in the loop, in a background thread, from a shell, as fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from finalpos_async.sandbox import Sandbox, main


def _get(url: str, key: str | None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"x-api-key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_port_zero_picks_a_free_port_on_localhost() -> None:
    async with Sandbox() as first, Sandbox() as second:
        assert first.port != second.port
        assert first.url == f"http://127.0.0.1:{first.port}"
    assert not first.running
    with pytest.raises(RuntimeError, match="not started"):
        _ = first.url


async def test_close_is_idempotent_and_start_twice_is_an_error() -> None:
    sandbox = Sandbox()
    await sandbox.start()
    with pytest.raises(RuntimeError, match="already running"):
        await sandbox.start()
    await sandbox.close()
    await sandbox.close()


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="api_key"):
        Sandbox(api_key="  ")
    with pytest.raises(ValueError, match="port"):
        Sandbox(port=70000)
    with pytest.raises(ValueError, match="faults"):
        Sandbox(faults="rate=banana")


def test_run_in_thread_serves_sync_callers() -> None:
    with Sandbox().run_in_thread() as sandbox:
        status, body = _get(f"{sandbox.url}/v1/api/customers", sandbox.api_key)
        assert (status, body) == (200, [])
        status, body = _get(f"{sandbox.url}/v1/api/customers", None)
        assert status == 401
    assert not sandbox.running


def test_the_thread_fixture_serves(finalpos_sandbox_thread: Sandbox) -> None:
    status, _ = _get(
        f"{finalpos_sandbox_thread.url}/v1/api/outlets", finalpos_sandbox_thread.api_key
    )
    assert status == 200


def test_python_dash_m_serves_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "finalpos_async.sandbox", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("Final POS sandbox listening on http://127.0.0.1:")
        url = first_line.rsplit(" ", 1)[-1].strip()
        assert "sk_sandbox_finalpos" in process.stdout.readline()  # the default key is shown
        status, body = _get(f"{url}/v1/api/customers", "sk_sandbox_finalpos")
        assert (status, body) == (200, [])
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_main_reports_bad_fault_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--faults", "rate=9"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_reset_from_the_callers_thread_clears_a_threaded_sandbox() -> None:
    with Sandbox().run_in_thread() as sandbox:
        request = urllib.request.Request(
            f"{sandbox.url}/v1/api/account",
            data=b"{}",
            headers={"x-api-key": sandbox.api_key, "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
        assert len(_get(f"{sandbox.url}/v1/api/customers", sandbox.api_key)[1]) == 0
        assert sandbox.storage.list("AccountDto", 0, None)
        sandbox.reset()
        assert sandbox.storage.list("AccountDto", 0, None) == []
