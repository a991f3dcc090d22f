"""Requests per second of the in-process sandbox: customer retrieve at a given concurrency.

    python scripts/bench_sandbox.py [--concurrency 64] [--seconds 5] [--uvloop]

Server and client (raw aiohttp, one pooled session) share one event loop in this process, as in a
test suite that uses the `finalpos_sandbox` fixture. The CPU time per request is printed too: on a
shared machine it is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from finalpos_async.sandbox import Sandbox

CUSTOMER = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}


async def bench(concurrency: int, seconds: float) -> tuple[int, float, int, float]:
    async with Sandbox() as sandbox:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(
            sandbox.url, headers={"x-api-key": sandbox.api_key}, connector=connector
        ) as session:
            async with session.post("/v1/api/customer", json=CUSTOMER) as response:
                customer_id = (await response.json())["id"]
            path = f"/v1/api/customer/{customer_id}"
            done = 0
            errors = 0
            stop_at = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal done, errors
                while time.perf_counter() < stop_at:
                    async with session.get(path) as response:
                        await response.read()
                        if response.status == 200:
                            done += 1
                        else:
                            errors += 1

            started = time.perf_counter()
            cpu_started = time.process_time()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            cpu = time.process_time() - cpu_started
            return done, time.perf_counter() - started, errors, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    done, elapsed, errors, cpu = asyncio.run(bench(args.concurrency, args.seconds))
    loop = "uvloop" if args.uvloop else "asyncio"
    # CPU per request (client + server, one process) does not depend on how busy the machine is
    print(
        f"customer retrieve, concurrency {args.concurrency}, {loop}: {done / elapsed:.0f} req/s "
        f"({done} in {elapsed:.1f} s, {errors} errors); {cpu / max(done, 1) * 1e6:.0f} us CPU "
        f"per request, i.e. {done / cpu if cpu else 0:.0f} req/s per fully available core"
    )


if __name__ == "__main__":
    main()
