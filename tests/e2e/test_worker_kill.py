"""`finalpos import ... --journal postgresql://... --worker` on workers that come and go: two
workers share a job; one is killed with SIGKILL while it holds a chunk, and a fresh worker
started in an empty directory joins. Against a sandbox that ignores Idempotency-Key, the job
ends with every row created once: the killed worker's chunk is taken over when its lease runs
out, and the rows it had sent are looked up before anything is sent again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import psycopg
import pytest
from postgres_server import PostgresServer
from sandbox_proc import (
    ROOT,
    cli_command,
    duplicates,
    records,
    sandbox_process,
    write_customers_csv,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

ROWS = 1200
CHUNKS = 6


def leased_rows(url: str, pid: int) -> tuple[int, int]:
    """(chunks leased by the worker process `pid`, rows the job has committed as created)."""
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('finalpos_journal_items')").fetchone() == (None,):
            return 0, 0
        # a chunk it claimed a moment ago: well inside it (a chunk takes over a second)
        held = conn.execute(
            "SELECT COUNT(*) FROM finalpos_work_chunks WHERE state = 'leased' AND owner LIKE %s "
            "AND now() - started_at BETWEEN interval '0.2 second' AND interval '0.6 second'",
            (f"%:{pid}:%",),
        ).fetchone()
        created = conn.execute(
            "SELECT COUNT(*) FROM finalpos_journal_items WHERE status = 'succeeded'"
        ).fetchone()
    return int(held[0] if held else 0), int(created[0] if created else 0)


def chunks(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT state, claims FROM finalpos_work_chunks ORDER BY chunk")
        return [(state, claims) for state, claims in rows]


async def test_a_killed_worker_s_chunk_is_taken_over_exactly_once(
    tmp_path: Path, postgres_cluster: PostgresServer
) -> None:
    url = postgres_cluster.url(postgres_cluster.schema())
    source = tmp_path / "shared" / "customers.csv"
    source.parent.mkdir()
    names = [f"w{n}" for n in range(ROWS)]
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
            "--journal",
            url,
            "--worker",
            "--chunks",
            str(CHUNKS),
            "--lease",
            "4",
            "--rate",
            "150",  # each worker's own cap: "midway" lasts a few seconds
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}

        async def worker(name: str) -> asyncio.subprocess.Process:
            home = tmp_path / name  # each worker in a directory of its own, empty
            home.mkdir()
            return await asyncio.create_subprocess_exec(
                *command,
                cwd=home,
                stdout=(home / "out.txt").open("wb"),
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )

        victim, other = await worker("victim"), await worker("other")
        deadline = loop.time() + 60
        while True:  # until the victim holds a chunk with rows already sent under it
            held, created = leased_rows(url, victim.pid)
            if held and created >= 100:
                break
            assert victim.returncode is None, "the worker ended before it could be killed"
            assert loop.time() < deadline, "the workers made no progress"
            await asyncio.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        assert await victim.wait() == -signal.SIGKILL
        fresh = await worker("fresh")
        codes = await asyncio.wait_for(asyncio.gather(other.wait(), fresh.wait()), 120)
        outputs = {n: (tmp_path / n / "out.txt").read_text() for n in ("other", "fresh")}
        assert codes == [0, 0], outputs
        stored = await records(sandbox.url, sandbox.api_key)
    assert duplicates(stored) == {}
    assert sorted(c["email"] for c in stored) == sorted(f"{n}@example.com" for n in names)
    states = chunks(url)
    assert [state for state, _ in states] == ["done"] * CHUNKS, outputs
    assert max(claims for _, claims in states) >= 2, outputs  # the victim's chunk, again
    assert any("taken over" in text for text in outputs.values()), outputs
    assert any(f"all {CHUNKS} chunks done" in text for text in outputs.values())
    # nothing written to the workers' own directories: the failed-rows files (none here) and
    # the journal belong to the job, not to the worker
    assert [p.name for p in (tmp_path / "fresh").iterdir()] == ["out.txt"]
