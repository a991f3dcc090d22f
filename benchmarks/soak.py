"""Soak: 200,000 creates through the bulk engine against the sandbox; memory must stay flat.

    python benchmarks/soak.py [--requests 200000] [--concurrency 64] [--faults SPEC] [--journal]

Not part of CI (it takes minutes). The sandbox runs in a process of its own
(`python -m finalpos_async.sandbox`), so this process holds only the client side: the bulk
engine, the client, its pool and (with `--journal`) the journal. Rows are generated lazily, and
every result is dropped as soon as it is counted, so anything that grows is the SDK's.

RSS is read when 50,000 results have come back and again after the last one; the goal is
`RSS(200k) - RSS(50k) <= 10 MiB`. A warm-up of 2,000 requests runs first, so lazy imports,
the pool and the converter's caches are not counted as growth. Prints one line per 25,000
results and a final JSON line with the figures; exits 1 when the goal is missed or a request
was lost (every item must come back exactly once, succeeded or failed with a reason).
`--faults` passes a fault spec to the sandbox (e.g. `rate=0.01,kinds=503+429,retry-after=0.01`)
to keep retries and error objects in the loop too.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _sandbox_process import rss_mib, start_sandbox

GOAL_MIB = 10.0
CHECKPOINT = 50_000


def rows(count: int, offset: int) -> Iterator[dict[str, Any]]:
    """Create-customer rows, made one at a time (never a list of all of them)."""
    for n in range(offset, offset + count):
        yield {
            "email": f"soak{n}@example.com",
            "first_name": "Soak",
            "last_name": f"Row {n}",
            "tags": ["soak"],
            "billing": {"city": "Porto", "country": "Portugal"},
        }


async def soak(
    url: str, key: str, total: int, concurrency: int, journal: Path | None
) -> dict[str, Any]:
    from finalpos_async import AsyncFinalPOS

    async with AsyncFinalPOS(key, base_url=url, backoff_base=0.01, backoff_cap=0.05) as client:
        # Warm-up: imports, pool, converter hooks, logging setup.
        await client.bulk.run(client.customers.create, rows(2_000, 10**9), concurrency=concurrency)
        gc.collect()
        rss_start = rss_mib()
        outcomes: Counter[str] = Counter()
        seen = 0
        rss_checkpoint = 0.0
        started = time.perf_counter()
        checkpoint_at = started
        job = client.bulk.run(
            client.customers.create,
            rows(total, 0),
            concurrency=concurrency,
            journal=journal,
        )
        async for result in job:
            seen += 1
            outcomes[result.status.name] += 1
            if not result.ok and outcomes["_reasons"] < 5:
                outcomes["_reasons"] += 1
                print(f"  failed item {result.index}: {result.reason}", flush=True)
            if seen == CHECKPOINT:
                gc.collect()
                rss_checkpoint = rss_mib()
                checkpoint_at = time.perf_counter()
            if seen % 25_000 == 0:
                elapsed = time.perf_counter() - started
                print(
                    f"  {seen:>7} results  {seen / elapsed:7.0f} req/s  RSS {rss_mib():7.1f} MiB",
                    flush=True,
                )
            del result
        seconds = time.perf_counter() - started
        gc.collect()
        rss_end = rss_mib()
        outcomes.pop("_reasons", None)
        return {
            "requests": total,
            "results": seen,
            "outcomes": dict(outcomes),
            "concurrency": concurrency,
            "seconds": round(seconds, 1),
            "req_per_s": round(total / seconds),
            "req_per_s_after_50k": round(
                (total - CHECKPOINT) / max(1e-9, time.perf_counter() - checkpoint_at)
            ),
            "rss_after_warmup_mib": round(rss_start, 1),
            "rss_at_50k_mib": round(rss_checkpoint, 1),
            "rss_at_end_mib": round(rss_end, 1),
            "growth_50k_to_end_mib": round(rss_end - rss_checkpoint, 2),
            "retry_budget_tokens": client.retry_budget.tokens if client.retry_budget else None,
            "open_connections_after": client.transport.in_flight,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--faults", help="fault spec for the sandbox (default: none)")
    parser.add_argument("--journal", action="store_true", help="keep a bulk journal (SQLite)")
    args = parser.parse_args()
    if args.requests <= CHECKPOINT:
        parser.error(f"--requests must be more than {CHECKPOINT}")

    from finalpos_async._constants import SANDBOX_API_KEY

    sandbox_args = ["--faults", args.faults, "--seed", "1"] if args.faults else []
    proc, url = start_sandbox(*sandbox_args)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            journal = Path(tmp) / "soak.journal" if args.journal else None
            figures = asyncio.run(
                soak(url, SANDBOX_API_KEY, args.requests, args.concurrency, journal)
            )
    finally:
        proc.terminate()
        proc.wait(10)
    figures["faults"] = args.faults
    figures["journal"] = args.journal
    figures["python"] = sys.version.split()[0]
    figures["pid"] = os.getpid()
    lost = figures["results"] != figures["requests"]
    within = figures["growth_50k_to_end_mib"] <= GOAL_MIB
    figures["goal"] = f"growth <= {GOAL_MIB} MiB: {'met' if within else 'MISSED'}"
    print(json.dumps(figures))
    if lost:
        print(f"LOST: {figures['requests'] - figures['results']} items never came back")
    return 0 if within and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
