"""Memory and speed of the README's main job: `finalpos import customers FILE` with 100,000 rows.

    python benchmarks/bulk_memory.py [--rows 100000] [--concurrency 16] [--mode cli|library]

The sandbox runs in a process of its own (`python -m finalpos_async.sandbox`), so this process
holds only what a user's import holds: the CSV reader, the row checks, the bulk engine, the
journal and the client. `cli` mode (the default) runs the real `import` command in-process on a
generated CSV (with its journal and progress bar); `library` mode feeds generated rows straight
to `client.bulk.run`. A warm-up import of 500 rows runs first, so lazy imports and pools are
not counted as growth. Prints one JSON line: rows, outcome counts, seconds, rows/s, baseline and
peak RSS and the growth (peak of a 20 ms RSS sampler minus the baseline); the goal is a growth
of at most 30 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _sandbox_process import ROOT, rss_mib, start_sandbox

GOAL_MIB = 30.0


class PeakSampler:
    """Samples RSS every 20 ms in a thread; `peak` is the highest value seen."""

    def __init__(self) -> None:
        self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def make_csv(path: Path, rows: int, seed: int) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_example_csv", ROOT / "scripts" / "make_example_csv.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with path.open("w", encoding="utf-8", newline="") as out:
        module.write(out, rows, invalid=0, seed=seed)


def cli_import(url: str, key: str, source: Path, concurrency: int) -> tuple[int, Any]:
    """Run `finalpos import customers SOURCE` in this process; (exit status, None)."""
    from rich.console import Console

    from finalpos_async.cli._connect import Settings
    from finalpos_async.cli._import import ImportOptions, run_import
    from finalpos_async.cli._spec import find_resource

    resource = find_resource("customers")
    assert resource is not None
    options = ImportOptions(
        resource=resource,
        file=source,
        fmt="csv",
        concurrency=concurrency,
        rate=None,
        journal=None,  # the default: SOURCE.journal, since the target keeps its data
        no_journal=False,
        key_field=None,
        failed_file=None,
        validate_only=False,
        drain_timeout=30.0,
    )
    settings = Settings(api_key=key, base_url=url, sandbox_db=None, max_retries=None, timeout=None)
    with open(os.devnull, "w") as devnull:
        status = run_import(options, settings, Console(file=devnull, force_terminal=True))
    return status, None


def library_rows(count: int, offset: int) -> Iterator[dict[str, Any]]:
    for n in range(offset, offset + count):
        yield {
            "email": f"mem{n}@example.com",
            "first_name": "Mem",
            "last_name": f"Row {n}",
            "tags": ["bench"],
            "billing": {"city": "Porto", "country": "Portugal"},
        }


def library_import(url: str, key: str, rows: int, offset: int, concurrency: int) -> Any:
    from finalpos_async import AsyncFinalPOS

    async def run() -> Any:
        async with AsyncFinalPOS(key, base_url=url) as client:
            return await client.bulk.run(
                client.customers.with_raw_response.create,
                library_rows(rows, offset),
                concurrency=concurrency,
            )

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--mode", choices=["cli", "library"], default="cli")
    args = parser.parse_args()

    from finalpos_async._constants import SANDBOX_API_KEY

    # The warm-up imports into a sandbox of its own: the measured import then starts, as a
    # first import does, against an empty target (into one that holds records, a new journal
    # looks rows up before sending them, `BULK_LOOKUP_FIRST_CHUNK` rows at a time: more memory).
    warm_proc, warm_url = start_sandbox()
    proc, url = start_sandbox()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            warm, big = Path(tmp) / "warm.csv", Path(tmp) / "big.csv"
            if args.mode == "cli":
                make_csv(warm, 500, seed=1)
                make_csv(big, args.rows, seed=2)
                cli_import(warm_url, SANDBOX_API_KEY, warm, args.concurrency)
            else:
                library_import(warm_url, SANDBOX_API_KEY, 500, 10**9, args.concurrency)
            warm_proc.terminate()
            warm_proc.wait(10)
            baseline = rss_mib()
            started = time.perf_counter()
            with PeakSampler() as sampler:
                if args.mode == "cli":
                    status, _ = cli_import(url, SANDBOX_API_KEY, big, args.concurrency)
                    outcome: dict[str, Any] = {"exit_status": status}
                else:
                    report = library_import(url, SANDBOX_API_KEY, args.rows, 0, args.concurrency)
                    outcome = {
                        "succeeded": report.succeeded,
                        "failed": report.failed,
                        "attempts": report.attempts,
                    }
            seconds = time.perf_counter() - started
    finally:
        for process in (warm_proc, proc):
            process.terminate()
            process.wait(10)
    growth = sampler.peak - baseline
    print(
        json.dumps(
            {
                "mode": args.mode,
                "rows": args.rows,
                "concurrency": args.concurrency,
                **outcome,
                "seconds": round(seconds, 2),
                "rows_per_s": round(args.rows / seconds),
                "baseline_rss_mib": round(baseline, 1),
                "peak_rss_mib": round(sampler.peak, 1),
                "rss_growth_mib": round(growth, 1),
                "goal_mib": GOAL_MIB,
                "within_goal": growth <= GOAL_MIB,
            }
        )
    )


if __name__ == "__main__":
    main()
