"""Bulk engine throughput and memory: create N customers in the sandbox through `client.bulk`.

    python benchmarks/bulk.py --rows 20000 [--concurrency 64]

The sandbox runs in a process of its own (`python -m finalpos_async.sandbox`), so this process
holds only the client and the bulk engine: its peak RSS is the engine's, not the sandbox's
storage. Rows are generated lazily (the engine must pull them as it goes). Prints one JSON line:
rows, succeeded, failed, seconds, rows/s, client CPU, baseline and peak RSS.
`run.py` calls this; `bulk_memory.py` (the bulk engineer's) covers the 100,000-row memory goal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from _sandbox_process import SANDBOX_READY, rss_mib, stop_process

START_TIMEOUT = 30.0


def _rows(count: int) -> Iterator[dict[str, Any]]:
    """Generate `count` distinct create inputs lazily (the engine pulls them as it goes)."""
    for i in range(count):
        yield {
            "email": f"bulk{i}@example.com",
            "first_name": "Bulk",
            "last_name": f"Row{i}",
            "phone": "+1234567890",
            "tags": ["import"],
        }


def _start_sandbox() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "finalpos_async.sandbox", "--port", "0", "--quiet"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(SANDBOX_READY):
                found.append(line[len(SANDBOX_READY) :].strip())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    if not found:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"sandbox did not start: {err.strip()[-300:]}")
    return proc, found[0]


async def _run(url: str, api_key: str, rows: int, concurrency: int) -> dict[str, Any]:
    from finalpos_async import AsyncFinalPOS

    async with AsyncFinalPOS(api_key=api_key, base_url=url) as client:
        # Warm up: connections, converter hooks and lazy imports, before the baseline RSS.
        await client.customers.create(email="warm@example.com", first_name="W", last_name="U")
        job = client.bulk.run(client.customers.create, _rows(rows), concurrency=concurrency)
        rss0 = rss_mib()
        cpu0 = _cpu()
        t0 = time.perf_counter()
        report = await job
        seconds = time.perf_counter() - t0
        cpu = _cpu() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "status": "ok",
        "rows": rows,
        "concurrency": concurrency,
        "succeeded": report.succeeded,
        "failed": report.failed,
        "attempts": report.attempts,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "client_cpu_us_per_row": cpu / rows * 1e6,
        "baseline_rss_mib": rss0,
        "peak_rss_mib": peak,
        "rss_growth_mib": peak - rss0,
        "note": (
            "Sandbox in its own process (stateful aiohttp app, in-memory storage); "
            "rows/s is bound by the sandbox on these shared cores, the client's CPU per "
            f"row was {cpu / rows * 1e6:,.0f} µs."
        ),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Command-line entry: run the bulk benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description="Bulk engine benchmark against the sandbox.")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    try:
        from finalpos_async import AsyncFinalPOS

        AsyncFinalPOS.bulk  # noqa: B018  (is the bulk engine wired to the client yet?)
        from finalpos_async._constants import SANDBOX_API_KEY
    except (ImportError, AttributeError) as exc:
        print(json.dumps({"status": "unavailable", "reason": f"not available yet: {exc}"}))
        return
    proc, url = _start_sandbox()
    try:
        key = os.environ.get("FINALPOS_SANDBOX_API_KEY") or SANDBOX_API_KEY
        result = asyncio.run(_run(url, key, args.rows, args.concurrency))
    finally:
        stop_process(proc)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
