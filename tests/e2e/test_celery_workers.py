"""Imports on Celery workers that come and go (`finalpos_async.celery`), against real
redis-server, PostgreSQL and Celery worker processes and a sandbox process that ignores
Idempotency-Key and limits each API key's requests per second.

- 20,000 rows over 4 workers sharing one Redis cap of 200 requests/s, with --key and without
  (side by side): two workers are killed with SIGKILL mid-run and replaced by fresh ones in
  new, empty directories. Every row is created once; no second of the sandbox's request log
  (every request it received, 429s included) holds more than its rate + burst; the job ends
  within 1.15 x rows / rate.
- Two tenants (two API keys, each capped at 50/s by the sandbox) in one pool of workers, one
  job with 10x the rows of the other: each ends within 1.2 x its own rows / 50 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery import Celery
from postgres_server import PostgresServer
from redis_server import RedisServer
from sandbox_proc import ROOT, duplicates, records, sandbox_process, write_customers_csv

from finalpos_async._secret import fingerprint
from finalpos_async.celery import enqueue_import

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

HERE = Path(__file__).parent
ROWS = 20_000
RATE = 200.0  # the sandbox's limit per API key, and the workers' shared cap
BURST = 20.0  # the sandbox's burst: the busiest second may hold RATE + BURST requests
CLIENT_BURST = 5.0  # the shared cap's burst: well under the API's (room for arrival jitter)
WORKERS = 4
LEASE = 10.0  # a killed worker's chunk is taken over at most this long after it died
CHUNKS = 8  # two per worker: each chunk's worker reads the whole file for its rows
# One process per worker (solo pool: a SIGKILL ends the worker and its task at once).
CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", "solo"]
CELERY_WORKER += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]


class Pool:
    """Celery worker processes, each in a directory of its own; all killed at the end."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.started: list[subprocess.Popen[bytes]] = []
        self.by_name: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        home = self.root / name
        home.mkdir(parents=True)  # new and empty: nothing of an earlier worker
        log = (home / "worker.log").open("wb")
        worker = subprocess.Popen(
            [*CELERY_WORKER, "-n", f"{name}@%h"],
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        self.started.append(worker)
        self.by_name[name] = worker
        return worker

    async def ready(self, name: str) -> None:
        deadline = time.monotonic() + 60
        log = self.root / name / "worker.log"
        while b" ready." not in log.read_bytes():
            assert time.monotonic() < deadline, log.read_text()
            assert self.by_name[name].poll() is None, log.read_text()  # it did not start
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        for worker in self.started:
            if worker.poll() is None:
                worker.kill()
            worker.wait()


@asynccontextmanager
async def pool(root: Path, env: dict[str, str]) -> AsyncIterator[Pool]:
    workers = Pool(root, env)
    try:
        yield workers
    finally:
        workers.stop()


def created_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('finalpos_journal_items')").fetchone() == (None,):
            return 0
        row = conn.execute(
            "SELECT COUNT(*) FROM finalpos_journal_items WHERE status = 'succeeded'"
        ).fetchone()
    return int(row[0]) if row else 0


def chunks(url: str, file: Path) -> list[tuple[str, int]]:
    """(state, claims) of each chunk of the job of `file` (none before a worker published it)."""
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('finalpos_work_chunks')").fetchone() == (None,):
            return []
        rows = conn.execute(
            "SELECT c.state, c.claims FROM finalpos_work_chunks c JOIN finalpos_work_jobs j "
            "ON j.work_id = c.work_id WHERE j.description->>'file' = %s ORDER BY c.chunk",
            (str(file),),
        )
        return [(state, claims) for state, claims in rows]


async def done(url: str, file: Path, deadline: float) -> list[tuple[str, int]]:
    """Wait until every chunk of the job of `file` is done; its chunks."""
    while True:
        states = chunks(url, file)
        if states and all(state == "done" for state, _ in states):
            return states
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.2)


def busiest_second(log: Path, api_key: str) -> int:
    """The most requests of `api_key` the sandbox received within any one second."""
    key = fingerprint(api_key)
    times = sorted(
        entry["t"] for entry in map(json.loads, log.read_text().splitlines()) if entry["key"] == key
    )
    most, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def environment(broker: str, journal: str, redis: str, keys: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
        "FINALPOS_TEST_BROKER": broker,
        "FINALPOS_JOURNAL": journal,
        "FINALPOS_REDIS_URL": redis,
        **keys,
    }


async def one_job(
    tmp: Path, cluster: PostgresServer, redis: RedisServer, db: int, key: str | None
) -> dict[str, Any]:
    """The 20,000-row job with `key` (None: rows named by content); what it measured."""
    journal = cluster.url(cluster.schema())
    source = tmp / "shared" / "customers.csv"
    source.parent.mkdir(parents=True)
    names = [f"c{n}" for n in range(ROWS)]
    write_customers_csv(source, names)
    log = tmp / "requests.jsonl"
    faults = f"rate-limit={RATE:g},burst={BURST:g}"
    api_key = f"sk_sandbox_{key or 'content'}_job"  # its own key: its own shared cap
    async with sandbox_process(
        ignore_idempotency=True, faults=faults, request_log=log, api_key=api_key
    ) as sb:
        base = redis.url.rsplit("/", 1)[0]  # redis://host:port, without its database
        broker = f"{base}/{db}"
        env = environment(broker, journal, f"{base}/0", {"FINALPOS_API_KEY": sb.api_key})
        async with pool(tmp / "workers", env) as workers:
            for n in range(WORKERS):
                workers.start(f"w{n}")
            for n in range(WORKERS):
                await workers.ready(f"w{n}")
            app = Celery(broker=broker)
            started = time.monotonic()
            enqueue_import(
                "customers",
                source,
                tasks=WORKERS + 2,  # two wait in the queue for the workers that replace others
                key=key,
                base_url=sb.url,
                rate=RATE,
                burst=CLIENT_BURST,
                lease=LEASE,
                chunks=CHUNKS,
                app=app,
            )
            deadline = started + 300
            for victim, at in ((0, ROWS // 4), (1, ROWS // 2)):
                while created_rows(journal) < at:
                    assert time.monotonic() < deadline, "the job made no progress"
                    await asyncio.sleep(0.1)
                workers.started[victim].send_signal(signal.SIGKILL)
                assert workers.started[victim].wait() == -signal.SIGKILL
                workers.start(f"fresh{victim}")
            states = await done(journal, source, deadline)
            elapsed = time.monotonic() - started
            app.close()
        stored = await records(sb.url, sb.api_key)
    return {
        "elapsed": elapsed,
        "busiest": busiest_second(log, sb.api_key),
        "states": states,
        "duplicates": duplicates(stored),
        "missing": sorted({f"{n}@example.com" for n in names} - {r["email"] for r in stored}),
        "created": len(stored),
    }


async def test_workers_killed_and_replaced_create_every_row_once_within_the_cap(
    tmp_path: Path, postgres_cluster: PostgresServer, redis_servers: Any
) -> None:
    redis = redis_servers()
    by_key, by_content = await asyncio.gather(
        one_job(tmp_path / "key", postgres_cluster, redis, 1, "email"),
        one_job(tmp_path / "content", postgres_cluster, redis, 2, None),
    )
    for name, result in (("--key email", by_key), ("by content", by_content)):
        summary = {k: v for k, v in result.items() if k not in ("missing", "duplicates")}
        print(name, summary)
        assert result["duplicates"] == {}, name
        assert result["missing"] == [], name
        assert result["created"] == ROWS, name
        assert max(claims for _, claims in result["states"]) >= 2, name  # taken over
        assert result["busiest"] <= RATE + BURST, (name, result["busiest"])
        assert result["elapsed"] <= 1.15 * ROWS / RATE, (name, result["elapsed"])


TENANT_RATE = 50.0
SMALL = 400  # the small tenant's rows; the big one has 10 times as many


async def test_a_tenant_with_ten_times_the_rows_does_not_slow_the_other(
    tmp_path: Path, postgres_cluster: PostgresServer, redis_servers: Any
) -> None:
    redis = redis_servers()
    base = redis.url.rsplit("/", 1)[0]
    journal = postgres_cluster.url(postgres_cluster.schema())
    keys = {"big": "sk_sandbox_tenant_big", "small": "sk_sandbox_tenant_small"}
    files = {}
    for tenant, rows in (("big", 10 * SMALL), ("small", SMALL)):
        files[tenant] = tmp_path / "shared" / f"{tenant}.csv"
        files[tenant].parent.mkdir(exist_ok=True)
        write_customers_csv(files[tenant], [f"{tenant}{n}" for n in range(rows)])
    faults = f"rate-limit={TENANT_RATE:g},burst=5"  # each API key its own bucket
    async with sandbox_process(
        ignore_idempotency=True, faults=faults, api_keys=tuple(keys.values())
    ) as sb:
        env = environment(
            f"{base}/3",
            journal,
            f"{base}/0",
            {f"FINALPOS_API_KEY_{t.upper()}": key for t, key in keys.items()},
        )
        async with pool(tmp_path / "workers", env) as workers:
            for n in range(WORKERS):
                workers.start(f"w{n}")
            for n in range(WORKERS):
                await workers.ready(f"w{n}")
            app = Celery(broker=f"{base}/3")
            started = time.monotonic()
            for tenant in ("big", "small"):  # the big job first: it is not served first
                enqueue_import(
                    "customers",
                    files[tenant],
                    tasks=2,
                    key="email",
                    tenant=tenant,
                    base_url=sb.url,
                    rate=TENANT_RATE,
                    burst=5,
                    chunks=4,
                    app=app,
                )
            took: dict[str, float] = {}
            deadline = started + 180
            while len(took) < 2:
                for tenant in set(files) - set(took):
                    states = chunks(journal, files[tenant])
                    if states and all(state == "done" for state, _ in states):
                        took[tenant] = time.monotonic() - started
                assert time.monotonic() < deadline, took
                await asyncio.sleep(0.1)
            app.close()
        stored = {t: await records(sb.url, key) for t, key in keys.items()}
    print(took)
    for tenant, rows in (("big", 10 * SMALL), ("small", SMALL)):
        assert duplicates(stored[tenant]) == {}, tenant
        assert len(stored[tenant]) == rows, tenant
        assert took[tenant] <= 1.2 * rows / TENANT_RATE, (tenant, took)
