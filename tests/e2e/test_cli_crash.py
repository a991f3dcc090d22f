"""A `finalpos import` killed with SIGKILL midway resumes from its journal: exact count, no dups."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from conftest import all_customers
from sandbox_proc import cli_command

from finalpos_async import AsyncFinalPOS
from finalpos_async.sandbox import Sandbox

# e2e (pyproject.toml): .ci/run runs it on Python 3.11 with the newest dependencies only; the CLI in
# subprocesses, killed and interrupted: its recovery logic, not the Python it runs on.
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
ROWS = 2000
KILL_AFTER = 400  # journaled rows before the kill: well inside the run


def make_csv(path: Path, rows: int) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_example_csv", ROOT / "scripts" / "make_example_csv.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with path.open("w", encoding="utf-8", newline="") as out:
        module.write(out, rows, invalid=0, seed=11)


def journaled(path: Path) -> int:
    """Rows the running import has committed as done (0 before the journal exists)."""
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute("SELECT COUNT(*) FROM items WHERE status = 'succeeded'").fetchone()
    except sqlite3.OperationalError:  # the writer has not created the table yet
        return 0
    return int(row[0])


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_import_killed_midway_resumes_with_exact_count_and_no_duplicates(
    tmp_path: Path,
) -> None:
    source = tmp_path / "customers.csv"
    make_csv(source, ROWS)
    journal = tmp_path / "import.journal"
    loop = asyncio.get_running_loop()
    async with Sandbox() as sandbox:
        command = cli_command(
            sandbox.api_key,
            sandbox.url,
            "import",
            "customers",
            str(source),
            "--journal",
            str(journal),
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        # Slowed by a rate limit so that "midway" lasts long enough to be caught.
        first = await asyncio.create_subprocess_exec(
            *command,
            "--rate",
            "500",
            "--concurrency",
            "8",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        deadline = loop.time() + 60
        while journaled(journal) < KILL_AFTER:
            assert first.returncode is None, "the import ended before it could be killed"
            assert loop.time() < deadline, "the import made no progress"
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        done_before = journaled(journal)
        assert KILL_AFTER <= done_before < ROWS
        async with AsyncFinalPOS(sandbox.api_key, base_url=sandbox.url) as client:
            created_before = len(await all_customers(client))
        # Rows the server created after the journal's last commit (and rows in flight) are
        # the dangerous ones: the re-run sends them again and must not duplicate them.
        assert created_before >= done_before
        print(f"killed at {done_before} journaled, {created_before} created on the server")

        second = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        _, err = await asyncio.wait_for(second.communicate(), 120)
        assert second.returncode == 0, err.decode()
        assert "already imported (journal)" in err.decode()

        async with AsyncFinalPOS(sandbox.api_key, base_url=sandbox.url) as client:
            stored = await all_customers(client)
    emails = [c["email"] for c in stored]
    assert len(stored) == ROWS
    assert len(set(emails)) == ROWS
    assert journaled(journal) == ROWS


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_ctrl_c_stops_gracefully_reports_and_a_rerun_finishes(tmp_path: Path) -> None:
    source = tmp_path / "customers.csv"
    make_csv(source, 1000)
    journal = tmp_path / "import.journal"
    loop = asyncio.get_running_loop()
    async with Sandbox() as sandbox:
        command = [
            sys.executable, "-m", "finalpos_async.cli",
            "--api-key", sandbox.api_key, "--base-url", sandbox.url,
            "import", "customers", str(source), "--journal", str(journal),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        first = await asyncio.create_subprocess_exec(
            *command, "--rate", "300",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        deadline = loop.time() + 60
        while journaled(journal) < 100:
            assert first.returncode is None, "the import ended before it could be interrupted"
            assert loop.time() < deadline, "the import made no progress"
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(first.communicate(), 60)
        text = err.decode()
        assert first.returncode == 130, text
        assert "Stopping" in text
        flat = " ".join(text.split())
        # One instruction, and the rows not sent are all in the failed-rows file it names.
        assert flat.count("To finish:") == 1
        assert "customers.csv.failed.jsonl" in flat
        # The graceful stop let every row in flight finish and recorded it.
        async with AsyncFinalPOS(sandbox.api_key, base_url=sandbox.url) as client:
            assert len(await all_customers(client)) == journaled(journal)

        second = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env
        )
        _, err = await asyncio.wait_for(second.communicate(), 120)
        assert second.returncode == 0, err.decode()
        async with AsyncFinalPOS(sandbox.api_key, base_url=sandbox.url) as client:
            emails = [c["email"] for c in await all_customers(client)]
    assert len(emails) == len(set(emails)) == 1000
