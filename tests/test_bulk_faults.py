"""The bulk engine with the real client against a faulty sandbox: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from conftest import all_customers

from finalpos_async import AsyncFinalPOS
from finalpos_async._constants import SANDBOX_API_KEY
from finalpos_async.bulk import ItemStatus
from finalpos_async.types import Customer

ROWS = 10_000
ROOT = Path(__file__).parent.parent


def customers(count: int) -> Iterator[dict[str, Any]]:
    for n in range(count):
        yield {
            "email": f"bulk{n}@example.com",
            "first_name": "Bulk",
            "last_name": f"Customer {n}",
            "tags": ["import"],
            "billing": {"city": "Lisbon", "country": "Portugal"},
        }


@contextlib.asynccontextmanager
async def sandbox_process(faults: str) -> AsyncIterator[SimpleNamespace]:
    """A faulty sandbox in its own process: the client and the server get a core each."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "finalpos_async.sandbox", "--port", "0", "--quiet",
        "--faults", faults,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        url = line.decode().rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:"), line
        yield SimpleNamespace(url=url, api_key=SANDBOX_API_KEY)
    finally:
        proc.terminate()
        await proc.wait()


async def test_ten_thousand_customers_under_ten_percent_faults_arrive_exactly_once() -> None:
    # 10 % of requests fail: 429 with Retry-After (honoured by the client, kept short so the
    # test stays fast), 503, a reset connection, or an answer slower than the client's timeout.
    faults = "rate=0.1,kinds=429+503+reset+delay,retry-after=0.01,delay=0.5,seed=7"
    sent = collections.Counter[str]()

    async def on_request_start(
        _session: aiohttp.ClientSession,
        _ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        sent[params.method] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)

    async with sandbox_process(faults) as sandbox:
        session = aiohttp.ClientSession(
            trace_configs=[trace], connector=aiohttp.TCPConnector(limit=64)
        )
        client = AsyncFinalPOS(
            sandbox.api_key,
            base_url=sandbox.url,
            session=session,
            timeout=0.25,
            max_retries=8,
            backoff_base=0.001,
            backoff_cap=0.01,
        )
        try:
            job = client.bulk.run(client.customers.create, customers(ROWS), concurrency=32)
            attempts_seen = 0
            statuses = collections.Counter[ItemStatus]()
            async for result in job:
                statuses[result.status] += 1
                attempts_seen += result.attempts
                if result.status is not ItemStatus.SUCCEEDED:
                    raise AssertionError(f"row {result.index} failed: {result.reason}")
                assert isinstance(result.value, Customer)
                assert result.created_id == result.value.id
            report = job.report
            assert statuses == {ItemStatus.SUCCEEDED: ROWS}
            assert report.succeeded == report.submitted == ROWS
            assert report.failed == report.cancelled == report.in_flight == 0
            # Every HTTP attempt the client made is accounted to an item, retries included,
            # and the faults really happened (about 10% of attempts).
            assert attempts_seen == report.attempts == sent["POST"]
            assert report.attempts > ROWS * 1.05
            print(
                f"\n{ROWS} rows, {report.attempts} POST attempts "
                f"({report.attempts - ROWS} retries), {report.elapsed:.1f} s, "
                f"{report.rate:.0f} rows/s"
            )

            # The faults are still on for the read-back, so the client's retries help here too.
            stored = await all_customers(client.with_options(max_retries=10))
        finally:
            await client.close()
            await session.close()
    emails = [c["email"] for c in stored]
    assert len(stored) == ROWS
    assert len(set(emails)) == ROWS
    assert set(emails) == {f"bulk{n}@example.com" for n in range(ROWS)}
