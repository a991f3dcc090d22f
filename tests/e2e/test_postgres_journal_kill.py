"""A `finalpos import --journal postgresql://...` killed with SIGKILL midway, against a sandbox
that ignores Idempotency-Key, resumes from the PostgreSQL journal: no duplicate, none missing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from postgres_server import PASSWORD, PostgresServer, created_rows
from sandbox_proc import (
    ROOT,
    cli_command,
    duplicates,
    records,
    sandbox_process,
    write_customers_csv,
)

# e2e (the tests/e2e folder): the CLI in subprocesses against a sandbox process, run once in CI.
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

ROWS = 1500
KILL_AFTER = 300  # rows committed as created before the kill: well inside the run


async def test_an_import_killed_midway_resumes_from_postgres_exactly_once(
    tmp_path: Path, postgres_cluster: PostgresServer
) -> None:
    schema = postgres_cluster.schema()
    url = postgres_cluster.url(schema)  # with the password: the killed run's --journal
    bare = postgres_cluster.url(schema, password=None)  # the resumed run's: PGPASSWORD has it
    source = tmp_path / "customers.csv"
    names = [f"pg{n}" for n in range(ROWS)]
    write_customers_csv(source, names)
    loop = asyncio.get_running_loop()
    async with sandbox_process(ignore_idempotency=True) as sandbox:
        command = cli_command(
            sandbox.api_key,
            sandbox.url,
            "import",
            "customers",
            str(source),
            "--key",
            "email",
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
        env.pop("PGPASSWORD", None)
        with (tmp_path / "first.out").open("wb") as out:
            # Slowed by a rate limit so that "midway" lasts long enough to be caught.
            first = await asyncio.create_subprocess_exec(
                *command,
                "--journal",
                url,
                "--rate",
                "400",
                "--concurrency",
                "8",
                stdout=out,
                stderr=out,
                env=env,
            )
            deadline = loop.time() + 60
            while created_rows(url) < KILL_AFTER:
                assert first.returncode is None, "the import ended before it could be killed"
                assert loop.time() < deadline, "the import made no progress"
                await asyncio.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
        done_before = created_rows(url)
        created_before = len(await records(sandbox.url, sandbox.api_key))
        assert KILL_AFTER <= done_before < ROWS
        # Rows created after the journal's last commit (and rows in flight) are the dangerous
        # ones: this sandbox would create them twice if they were sent again.
        assert created_before >= done_before
        print(f"killed at {done_before} journaled, {created_before} created on the server")

        second = await asyncio.create_subprocess_exec(
            *command,
            "--journal",
            bare,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**env, "PGPASSWORD": PASSWORD},
        )
        output, _ = await asyncio.wait_for(second.communicate(), 120)
        text = output.decode()
        assert second.returncode == 0, text
        assert "already imported (journal)" in text
        stored = await records(sandbox.url, sandbox.api_key)
    assert duplicates(stored) == {}
    assert sorted(c["email"] for c in stored) == sorted(f"{n}@example.com" for n in names)
    assert created_rows(url) == ROWS
    # The killed run took its password from the URL, the resumed one from PGPASSWORD: neither
    # printed it (the journal is named by its URL without the password).
    assert PASSWORD not in text
    assert PASSWORD not in (tmp_path / "first.out").read_text()
    assert f"Journal: postgresql://finalpos@127.0.0.1:{postgres_cluster.port}/" in text
