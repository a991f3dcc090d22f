"""A sandbox process playing a multi-tenant API that ignores `Idempotency-Key`: two keys, each
capped on its own, on a SQLite file, watched through its request log from outside the process."""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sandbox_proc import records, sandbox_process

from finalpos_async import AsyncFinalPOS

pytestmark = pytest.mark.e2e

KEYS = ("sk_tenant_one_a1b2c3", "sk_tenant_two_d4e5f6")
RATE, BURST = 2, 10
SENT = 30  # creates per key, 2 at a time: far more than one bucket lets through at once


async def _create(session: aiohttp.ClientSession, key: str, n: int) -> tuple[int, str | None]:
    # every two creates share an Idempotency-Key: ignored, so both make a record
    headers = {"x-api-key": key, "Idempotency-Key": f"create-{n // 2}"}
    body = {"email": f"c{n}@example.com", "firstName": "C", "lastName": "Test"}
    async with session.post("/v1/api/customer", json=body, headers=headers) as response:
        payload: Any = await response.json()
        return response.status, payload.get("id") if response.status == 201 else None


async def _flood(url: str, key: str) -> list[tuple[int, str | None]]:
    async with aiohttp.ClientSession(url) as session:
        results: list[tuple[int, str | None]] = []
        for n in range(0, SENT, 2):
            results += await asyncio.gather(_create(session, key, n), _create(session, key, n + 1))
        return results


def _busiest_second(times: list[float]) -> int:
    """The most of `times` inside any 1-second window."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


async def _fingerprint(key: str, url: str) -> str:
    async with AsyncFinalPOS(api_key=key, base_url=url) as client:
        return client.credentials_fingerprint


async def test_two_capped_tenants_on_a_file_ignoring_idempotency(tmp_path: Path) -> None:
    db, log = tmp_path / "sandbox.db", tmp_path / "requests.jsonl"
    faults = f"rate-limit={RATE},burst={BURST},retry-after=0.05"
    async with sandbox_process(
        db=db, faults=faults, ignore_idempotency=True, api_keys=KEYS, request_log=log
    ) as sandbox:
        started = time.monotonic()
        one, two = await asyncio.gather(_flood(sandbox.url, KEYS[0]), _flood(sandbox.url, KEYS[1]))
        elapsed = time.monotonic() - started
        stored = [await records(sandbox.url, key) for key in KEYS]
        prints = [await _fingerprint(key, sandbox.url) for key in KEYS]
    for results, kept in zip((one, two), stored, strict=True):
        created = [record_id for status, record_id in results if status == 201]
        statuses = Counter(status for status, _ in results)
        assert set(statuses) == {201, 429}, statuses
        # each key had its whole burst, whatever the other key sent meanwhile (one bucket for
        # both would have let about BURST through for the two together), and no more
        assert BURST <= len(created) <= BURST + RATE * elapsed + 1, (len(created), elapsed)
        # the Idempotency-Key every two creates share was ignored: each 201 is a record
        assert sorted(r["id"] for r in kept) == sorted(created)
        assert len({r["companyId"] for r in kept}) == 1
    assert stored[0][0]["companyId"] != stored[1][0]["companyId"]

    # the request log, read from outside: a line per request, per key, with its status
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for fingerprint, results in zip(prints, (one, two), strict=True):
        mine = [line for line in lines if line["key"] == fingerprint and line["method"] == "POST"]
        assert Counter(line["status"] for line in mine) == Counter(s for s, _ in results)
        accepted = [line["t"] for line in mine if line["status"] == 201]
        assert _busiest_second(accepted) <= RATE + BURST
    assert not any(key in log.read_text() for key in KEYS)

    # the file keeps each account's records across a restart with the same keys
    async with sandbox_process(db=db, api_keys=KEYS) as again:
        assert [await records(again.url, key) for key in KEYS] == stored
