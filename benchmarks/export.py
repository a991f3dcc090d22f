"""`finalpos export` against a raw aiohttp + orjson listing of the same sandbox collection.

    python benchmarks/export.py                   # 200,000 customers, 5 interleaved repetitions
    python benchmarks/export.py --records 20000 --reps 1
    python benchmarks/export.py --latency 0.02    # every answer held back 20 ms, as by a network

A sandbox process serves a SQLite file seeded with N customers (one created through the API,
the rest copies of its stored form with their own id and e-mail, written through the sandbox's
public `storage` in one transaction with `insert_many`). Each repetition runs, in turn, a raw
listing (aiohttp + orjson, the same page size and pages in flight, in order, one JSON line per
record to a file) and `finalpos export customers` to JSON Lines, CSV and Parquet, each as a
process of its own so that start-up is counted for both, in a shuffled order (the same seeds each
run), each after an `os.sync()`: the kernel writing back the previous cell's file (60 MB of JSON
Lines, 40 MB of CSV) otherwise ran during the next cell, and Parquet, which always came after
CSV, used 0.1 s more CPU for it. The figure is wall time (the sandbox serves both the same way)
and the process's CPU time, with the sandbox's CPU time for the same run beside it (Linux): on a
machine of 2 CPUs the client and the sandbox share them, so the two CPU figures together bound
the wall time. The ratio is against the raw listing's median wall time. Before the runs, one
page is timed at skip 0 and at the last full page (the sandbox finds either through an index, so
they should cost about the same), and the load average is printed before and after (the machine
may be shared: compare ratios within one run).

`--latency S` has the sandbox hold every answer back S seconds (its `delay` fault on every
request), as an API across a network would: the pages in flight then overlap that wait with the
client's CPU, and the ratios show what is left of the local figures against a real API.

The checkout's bytecode is compiled first (`compileall`), as pip compiles an installed package's
and as aiohttp's and orjson's here are: otherwise, under PYTHONDONTWRITEBYTECODE (or in a
read-only checkout), every `finalpos` process would compile its modules from source at start,
about 0.03-0.07 s that no installed copy pays.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from _sandbox_process import ROOT, cpu_seconds, start_sandbox, stop_process

from finalpos_async.sandbox import Sandbox

PAGE_SIZE = 1000
CONCURRENCY = 4

RAW = """
import asyncio, sys, orjson, aiohttp
url, key, out = sys.argv[1:4]
size, concurrency = int(sys.argv[4]), int(sys.argv[5])
async def page(session, skip):
    async with session.get(url + "/v1/api/customers", params={"skip": skip, "limit": size}) as r:
        r.raise_for_status()
        return orjson.loads(await r.read())
async def main():
    async with aiohttp.ClientSession(headers={"x-api-key": key}) as session:
        with open(out, "wb") as f:
            skip, pending, done = 0, [], False
            while not done:
                while len(pending) < concurrency:
                    pending.append(asyncio.ensure_future(page(session, skip)))
                    skip += size
                records = await pending.pop(0)
                f.write(b"".join(orjson.dumps(r) + b"\\n" for r in records))
                done = len(records) < size
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
asyncio.run(main())
"""


def seed(db: Path, count: int) -> None:
    """Fill the sandbox file `db` with `count` customers (see the module docstring)."""
    with Sandbox(db=str(db)).run_in_thread() as sandbox:
        body = {
            "email": "seed@example.com",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "billing": {"city": "London", "country": "GB"},
            "tags": ["vip", "seed"],
            "totalSpent": "1000.50",
        }
        request = urllib.request.Request(
            sandbox.url + "/v1/api/customer",
            data=json.dumps(body).encode(),
            headers={"x-api-key": sandbox.api_key, "content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request) as answer:
            created = json.load(answer)
        template = sandbox.storage.get("CustomerDto", created["id"])
        assert template is not None
        ids = (uuid.uuid4().hex[:24] for _ in range(1, count))
        sandbox.storage.insert_many(
            "CustomerDto",
            (
                (record_id, {**template, "id": record_id, "email": f"c{n}@example.com"})
                for n, record_id in enumerate(ids, start=1)
            ),
        )


def page_seconds(url: str, key: str, skip: int, size: int, tries: int = 5) -> float:
    """The fastest of `tries` requests for one page at `skip`, in seconds."""
    request = urllib.request.Request(
        f"{url}/v1/api/customers?skip={skip}&limit={size}", headers={"x-api-key": key}
    )
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        with urllib.request.urlopen(request) as answer:
            answer.read()
        best = min(best, time.perf_counter() - started)
    return best


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def timed(args: list[str]) -> tuple[float, float]:
    """Run a command; its wall time and CPU time (user + system of the child), in seconds."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def process_cpu(pid: int) -> float:
    """`cpu_seconds(pid)`, or NaN where there is no /proc to read it from (not Linux)."""
    try:
        return cpu_seconds(pid)
    except OSError:
        return float("nan")


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    options = parser.parse_args()
    compileall.compile_dir(ROOT / "finalpos_async", quiet=1)  # see the module docstring
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = work / "sandbox.db"
        started = time.perf_counter()
        seed(db, options.records)
        print(f"seeded {options.records:,} customers in {time.perf_counter() - started:.1f} s")
        faults = ["--faults", f"rate=1,kinds=delay,delay={options.latency}"]
        proc, url = start_sandbox("--db", str(db), *(faults if options.latency else []))
        key = "sk_sandbox_finalpos"
        try:
            last = max(0, options.records - options.page_size)
            first_page = page_seconds(url, key, 0, options.page_size)
            last_page = page_seconds(url, key, last, options.page_size)
            print(
                f"one page of {options.page_size} (fastest of 5): {first_page * 1000:.0f} ms at "
                f"skip 0, {last_page * 1000:.0f} ms at skip {last:,}"
            )
            load_before = load()
            cli = [sys.executable, "-m", "finalpos_async.cli", "--api-key", key, "--base-url", url]
            size, conc = str(options.page_size), str(options.concurrency)
            cells = {
                "raw aiohttp + orjson (jsonl)": [
                    sys.executable,
                    "-c",
                    RAW,
                    url,
                    key,
                    str(work / "raw.jsonl"),
                    size,
                    conc,
                ],
            }
            for fmt in ("jsonl", "csv", "parquet"):
                cells[f"finalpos export --format {fmt}"] = [
                    *cli,
                    "export",
                    "customers",
                    "--format",
                    fmt,
                    "-o",
                    str(work / f"out.{fmt}"),
                    "--page-size",
                    size,
                    "-c",
                    conc,
                ]
            walls: dict[str, list[float]] = {name: [] for name in cells}
            cpus: dict[str, list[float]] = {name: [] for name in cells}
            served: dict[str, list[float]] = {name: [] for name in cells}
            for rep in range(options.reps):
                order = list(cells.items())
                random.Random(rep).shuffle(order)  # no cell always follows the same one
                for name, args in order:
                    if hasattr(os, "sync"):  # (Unix) the previous cell's file is written
                        os.sync()  # back before this cell, not during it
                    before = process_cpu(proc.pid)
                    wall, cpu = timed(args)
                    served[name].append(process_cpu(proc.pid) - before)
                    walls[name].append(wall)
                    cpus[name].append(cpu)
            load_after = load()
            assert count_lines(work / "raw.jsonl") == options.records
            assert count_lines(work / "out.jsonl") == options.records
            assert count_lines(work / "out.csv") == options.records + 1
        finally:
            stop_process(proc)
    floor = statistics.median(walls["raw aiohttp + orjson (jsonl)"])
    print(
        f"\n{options.records:,} customers, page size {options.page_size}, "
        f"{options.concurrency} pages in flight, {options.reps} interleaved repetitions, "
        f"{f'{options.latency * 1000:g} ms added to each answer, ' if options.latency else ''}"
        f"load average {load_before} before, {load_after} after, {os.cpu_count()} CPUs\n"
    )
    print("| | wall s (median, min..max) | CPU s (median) | sandbox CPU s | wall / raw |")
    print("|---|---:|---:|---:|---:|")
    for name in cells:
        w = walls[name]
        print(
            f"| {name} | {statistics.median(w):.2f} ({min(w):.2f}..{max(w):.2f}) "
            f"| {statistics.median(cpus[name]):.2f} | {statistics.median(served[name]):.2f} "
            f"| {statistics.median(w) / floor:.2f}x |"
        )
    print(f"\n(run from {ROOT})")


if __name__ == "__main__":
    main()
