"""Two tenants in one pool of Celery workers (`finalpos_async.celery`): two API keys, each capped
at 50 requests/s by a sandbox that ignores Idempotency-Key, one job with 10 times the rows of the
other. Each ends within 1.2 x its own rows / 50 s: each tenant has its own shared cap (a Redis
bucket per API key fingerprint) and its own tasks, so the big one does not slow the small one."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery_pool import chunks, environment, pool
from postgres_server import PostgresServer
from sandbox_proc import duplicates, records, sandbox_process, write_customers_csv

from finalpos_async.celery import enqueue_import

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

WORKERS = 4


TENANT_RATE = 50.0
# The small tenant's rows (12 s at 50/s, so that start-up, 0.5-1 s, is a small part of its
# margin); the big one has 10 times as many.
SMALL = 600


@pytest.mark.timeout(300)  # the big job alone is 120 s of paced rows
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
            # As in a running web app, the producer is connected before the jobs are sent: the
            # first send otherwise loads the transport and connects (0.1 s, 0.4 s on busy cores).
            with app.connection_for_write() as connection:
                connection.ensure_connection()
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
                    chunks=2,  # one per task: the fewest passes over the file
                    app=app,
                )
            took: dict[str, float] = {}
            deadline = started + 240
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
