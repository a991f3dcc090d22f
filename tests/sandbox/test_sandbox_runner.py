"""Ways to run the sandbox: in the loop, in a background thread, from a shell, as fixtures."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
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


def _send_and_leave(port: int, request: bytes, *, reset: bool) -> None:
    """Send `request` and disconnect (a TCP reset when `reset`) without reading any answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.e2e
def test_quiet_sandbox_logs_a_client_disconnect_in_one_line(tmp_path: Path) -> None:
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "finalpos_async.sandbox", "--port", "0", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().rsplit(" ", 1)[-1].strip()
        port = int(url.rsplit(":", 1)[1])
        head = "x-api-key: sk_sandbox_finalpos\r\ncontent-type: application/json\r\n"
        # 1 and 2: gone halfway through the body it announced (a reset, then a plain close)
        cut = f"POST /v1/api/customer HTTP/1.1\r\nhost: x\r\n{head}content-length: 500\r\n\r\n{{"
        _send_and_leave(port, cut.encode(), reset=True)
        _send_and_leave(port, cut.encode(), reset=False)
        # 3: gone while the sandbox holds its answer back (a scripted delay)
        held = (
            f"GET /v1/api/customers HTTP/1.1\r\nhost: x\r\n{head}x-sandbox-fault: delay:0.3\r\n\r\n"
        )
        _send_and_leave(port, held.encode(), reset=False)
        deadline = time.monotonic() + 30
        while stderr_path.read_text().count("\n") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)  # polling the log, bounded by the deadline
        # the sandbox still serves
        assert _get(f"{url}/v1/api/customers", "sk_sandbox_finalpos") == (200, [])
    finally:
        process.terminate()
        process.wait(timeout=10)
    lines = stderr_path.read_text().splitlines()
    assert "Traceback" not in stderr_path.read_text()
    read = "sandbox: client 127.0.0.1 disconnected before its request was read (not processed)"
    assert lines == [
        f"{read}: POST /v1/api/customer",
        f"{read}: POST /v1/api/customer",
        "sandbox: client 127.0.0.1 disconnected before its answer (200) was sent: "
        "GET /v1/api/customers",
    ]


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
