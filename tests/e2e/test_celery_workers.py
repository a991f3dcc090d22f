"""Imports on Celery workers that come and go (`finalpos_async.celery`), against real
redis-server, PostgreSQL and Celery worker processes and a sandbox process that ignores
Idempotency-Key and limits each API key's requests per second.

- 20,000 rows over 4 workers sharing one Redis cap of 200 requests/s, with --key and without
  (side by side): two workers are killed with SIGKILL mid-run and replaced by fresh ones in
  new, empty directories. Every row is created once; no second holds more HTTP attempts (429s
  included) than the sandbox's rate + burst; the job ends within 1.15 x rows / rate.

(Two tenants in one pool: test_celery_tenants.py.) The busiest second counts the HTTP attempts
the workers sent (each stamped by a middleware right after the shared cap granted it,
`celery_app.py`): when the sandbox gets to a request also depends on its own scheduling (on 2
shared cores a stalled sandbox took in 44 requests within 50 ms), which is printed beside it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery_pool import done, environment, pool
from postgres_server import PostgresServer, created_rows
from redis_server import RedisServer
from sandbox_proc import duplicates, records, sandbox_process, write_customers_csv

from finalpos_async._secret import fingerprint
from finalpos_async.celery import enqueue_import

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

ROWS = 20_000
RATE = 200.0  # the sandbox's limit per API key, and the workers' shared cap
BURST = 20.0  # the sandbox's burst: the busiest second may hold RATE + BURST requests
CLIENT_BURST = 10.0  # the shared cap's burst: half the API's, as the README advises
WORKERS = 4
LEASE = 10.0  # a killed worker's chunk is taken over at most this long after it died
CHUNKS = 8  # two per worker: each chunk's worker reads the whole file for its rows


def received(log: Path, api_key: str) -> list[float]:
    """When the sandbox got to each request of `api_key` (its request log)."""
    key = fingerprint(api_key)
    return [e["t"] for e in map(json.loads, log.read_text().splitlines()) if e["key"] == key]


def sent(workers: Path) -> list[float]:
    """When each HTTP attempt of the workers (killed ones too) left: their `sent.log` files."""
    return [float(t) for log in workers.glob("*/sent.log") for t in log.read_text().split()]


def busiest_second(moments: list[float]) -> int:
    """The most of `moments` within any one second."""
    times = sorted(moments)
    most, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


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
        "busiest sent": busiest_second(sent(tmp / "workers")),
        "busiest received": busiest_second(received(log, sb.api_key)),
        "attempts": len(sent(tmp / "workers")),
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
        assert result["attempts"] >= ROWS, name  # every attempt was stamped
        assert result["busiest sent"] <= RATE + BURST, (name, result)
        assert result["elapsed"] <= 1.15 * ROWS / RATE, (name, result["elapsed"])
