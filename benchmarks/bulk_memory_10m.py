"""Memory of a very long journaled bulk run: 10 million rows through `client.bulk.run`.

    python benchmarks/bulk_memory_10m.py                      # 10M rows, key=None then key="email"
    python benchmarks/bulk_memory_10m.py --rows 200000 --key email   # one identity rule
    python benchmarks/bulk_memory_10m.py --quick              # 2 x 40,000 rows, under 60 s

Library mode, no server: `client.bulk.run(client.customers.create, rows, journal=FILE,
key=KEY, concurrency=16)` on an `AsyncFinalPOS` whose transport is a `finalpos_async.MockTransport`
answering every request 201 with a small customer record (`{"id": "cus_N", ...}`), so the run
goes as fast as the client and the engine can. Rows are generated lazily with unique emails
(`bulk_memory.library_rows`). Each identity rule runs in a fresh interpreter: a warm-up run of
2,000 rows (its own journal) first, then the baseline RSS, then the measured run, with the RSS
sampled every 20 ms (`bulk_memory.PeakSampler`). Every `--step` rows pulled from the input, the
script notes the RSS, the sampler's peak so far, the elapsed time and the process CPU time, and
prints a table: growth (peak minus baseline) in total and per row, rows/s, CPU per row.

The goal (the journal counts identities in SQLite, not in Python sets): at most 64 MiB of growth
for 10M rows. When fewer rows are run (`--rows`), the last line extrapolates the growth to
10M linearly from the second half of the run, and says so.

`MockTransport` keeps every request it answers in `transport.requests` (for tests to inspect),
which alone would grow by a few hundred bytes per row; the handler empties that list, since it is
the test seam's memory, not the engine's. `--keep-mock-requests` leaves it, to show its cost.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _sandbox_process import rss_mib
from bulk_memory import PeakSampler, library_rows

GOAL_MIB = 64.0
GOAL_ROWS = 10_000_000
MIB = 1024 * 1024
KEYS = ("none", "email")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _filesystem(path: Path) -> str:
    """`df -T` of `path`: the device and filesystem type the journal is written to."""
    try:
        out = subprocess.run(
            ["df", "-T", str(path)], capture_output=True, text=True, check=True
        ).stdout.splitlines()[-1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"
    fields = out.split()
    return f"{fields[1]} on {fields[0]}" if len(fields) > 1 else out


class Checkpoints:
    """Wraps the row generator; every `step` rows pulled it notes RSS, peak, time and CPU."""

    def __init__(
        self, sampler: PeakSampler, baseline: float, step: int, budget_s: float | None
    ) -> None:
        self.sampler = sampler
        self.baseline = baseline
        self.step = step
        self.budget_s = budget_s
        self.started = time.perf_counter()
        self.cpu0 = _cpu()
        self.points: list[dict[str, float]] = []
        self.pulled = 0
        self.out_of_time = False

    def rows(self, count: int, offset: int) -> Iterator[dict[str, Any]]:
        """`count` rows, or fewer when the time budget runs out (the input then ends)."""
        step = self.step
        for n, row in enumerate(library_rows(count, offset), start=1):
            yield row
            self.pulled = n
            if n % 1000 == 0 and self._over_budget():
                self.out_of_time = True
                self.note(n)
                return
            if n % step == 0 or n == count:
                self.note(n)

    def _over_budget(self) -> bool:
        return self.budget_s is not None and time.perf_counter() - self.started > self.budget_s

    def note(self, rows: int) -> None:
        now = rss_mib()
        peak = max(self.sampler.peak, now)
        point = {
            "rows": rows,
            "seconds": time.perf_counter() - self.started,
            "cpu_s": _cpu() - self.cpu0,
            "rss_mib": now,
            "growth_now_mib": now - self.baseline,
            "growth_peak_mib": peak - self.baseline,
        }
        self.points.append(point)
        print(json.dumps({"point": point}), flush=True)  # progress, for the parent


def _mock_client(keep_requests: bool) -> Any:
    from finalpos_async import AsyncFinalPOS, MockTransport
    from finalpos_async._transport import TransportResponse

    headers = {"Content-Type": "application/json"}
    counter = iter(range(1, 1 << 62))
    transport: MockTransport

    def answer(request: Any) -> TransportResponse:
        if not keep_requests:
            transport.requests.clear()  # the test seam's record of requests, not the engine's
        n = next(counter)
        body = b'{"id":"cus_%d","firstName":"Mem","lastName":"Row %d"}' % (n, n)
        return TransportResponse(201, headers=headers, content=body)

    transport = MockTransport(answer)
    return AsyncFinalPOS("sk_bench_memory", transport=transport)


async def _measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    key = None if args.key == "none" else args.key
    async with _mock_client(args.keep_mock_requests) as client:
        # Warm-up (its own journal): lazy imports, converter hooks, SQLite, before the baseline.
        warm = client.bulk.run(
            client.customers.create,
            library_rows(2_000, 10**9),
            concurrency=args.concurrency,
            journal=folder / "warm.journal",
            key=key,
        )
        warm_report = await warm
        assert warm_report.succeeded == 2_000, warm_report
        gc.collect()
        baseline = rss_mib()
        journal = folder / "run.journal"
        with PeakSampler() as sampler:
            budget = args.minutes * 60 if args.minutes else None
            marks = Checkpoints(sampler, baseline, args.step, budget)
            job = client.bulk.run(
                client.customers.create,
                marks.rows(args.rows, 0),
                concurrency=args.concurrency,
                journal=journal,
                key=key,
            )
            report = await job
            seconds = time.perf_counter() - marks.started
            cpu = _cpu() - marks.cpu0
        peak = sampler.peak
    rows = marks.pulled
    return {
        "key": args.key,
        "rows": rows,
        "rows_asked": args.rows,
        "out_of_time": marks.out_of_time,
        "minutes_budget": args.minutes,
        "concurrency": args.concurrency,
        "succeeded": report.succeeded,
        "failed": report.failed,
        "other": rows - report.succeeded - report.failed,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "cpu_us_per_row": cpu / rows * 1e6,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": peak,
        "growth_mib": peak - baseline,
        "bytes_per_row": (peak - baseline) * MIB / rows,
        "keep_mock_requests": args.keep_mock_requests,
        "points": marks.points,
    }


def _child(args: argparse.Namespace) -> None:
    parent = Path(args.dir) if args.dir else None
    with tempfile.TemporaryDirectory(prefix="bulk-10m-", dir=parent) as tmp:
        folder = Path(tmp)
        result = asyncio.run(_measure(args, folder))
        # The journal's files (run.journal, and its -wal while open) and where they live.
        result["journal_bytes"] = {
            p.name: p.stat().st_size for p in folder.iterdir() if p.name.startswith("run.")
        }
        result["filesystem"] = _filesystem(folder)
    print(json.dumps(result), flush=True)


def _extrapolate(points: list[dict[str, float]]) -> float | None:
    """Growth at GOAL_ROWS, linear from the second half of the checkpoints (None: too few)."""
    last = points[-1]
    if last["rows"] >= GOAL_ROWS:
        return None
    half = [p for p in points if p["rows"] >= last["rows"] / 2]
    first = half[0]
    if len(half) < 2 or last["rows"] == first["rows"]:
        return None
    slope = (last["growth_peak_mib"] - first["growth_peak_mib"]) / (last["rows"] - first["rows"])
    return last["growth_peak_mib"] + max(slope, 0.0) * (GOAL_ROWS - last["rows"])


def table(result: dict[str, Any]) -> str:
    """The per-checkpoint markdown table of one run."""
    lines = [
        f"key={result['key']}: {result['rows']:,} rows"
        + (
            f" (of {result['rows_asked']:,} asked: the {result['minutes_budget']:g}-minute budget "
            "ran out)"
            if result["out_of_time"]
            else ""
        )
        + f", concurrency {result['concurrency']}, "
        f"{result['succeeded']:,} succeeded, {result['failed']:,} failed; baseline RSS "
        f"{result['baseline_rss_mib']:.1f} MiB; journal on {result['filesystem']}, "
        + ", ".join(f"{n} {b / MIB:,.0f} MiB" for n, b in sorted(result["journal_bytes"].items())),
        "",
        "| rows | RSS growth now (MiB) | peak growth so far (MiB) | peak growth / row (B) "
        "| rows/s (interval) | rows/s (overall) | CPU µs/row (interval) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    previous = {"rows": 0.0, "seconds": 0.0, "cpu_s": 0.0}
    for p in result["points"]:
        rows = p["rows"] - previous["rows"]
        interval = p["seconds"] - previous["seconds"]
        lines.append(
            f"| {int(p['rows']):,} | {p['growth_now_mib']:.1f} | {p['growth_peak_mib']:.1f} "
            f"| {p['growth_peak_mib'] * MIB / p['rows']:.2f} | {rows / interval:,.0f} "
            f"| {p['rows'] / p['seconds']:,.0f} "
            f"| {(p['cpu_s'] - previous['cpu_s']) / rows * 1e6:,.0f} |"
        )
        previous = p
    growth = result["growth_mib"]
    verdict = "within" if growth <= GOAL_MIB else "OVER"
    lines += [
        "",
        f"total: peak growth {growth:.1f} MiB = {result['bytes_per_row']:.2f} B/row over "
        f"{result['rows']:,} rows, {result['rows_per_s']:,.0f} rows/s, "
        f"{result['cpu_us_per_row']:,.0f} µs CPU/row, {result['seconds'] / 60:.1f} min",
    ]
    if result["rows"] >= GOAL_ROWS:
        lines.append(f"measured: {verdict} the goal of {GOAL_MIB:.0f} MiB for {GOAL_ROWS:,} rows")
        return "\n".join(lines)
    guess = _extrapolate(result["points"])
    if guess is None:
        lines.append(f"fewer than {GOAL_ROWS:,} rows, too few checkpoints to extrapolate")
    else:
        verdict = "within" if guess <= GOAL_MIB else "OVER"
        lines.append(
            f"EXTRAPOLATED (linear from the second half of this {result['rows']:,}-row run, "
            f"not measured): about {guess:.1f} MiB at {GOAL_ROWS:,} rows: {verdict} the goal "
            f"of {GOAL_MIB:.0f} MiB"
        )
    return "\n".join(lines)


def _run_child(command: list[str]) -> dict[str, Any] | None:
    """Run one child; relay its checkpoints as progress lines; its final JSON line (None: it
    failed)."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        last = ""
        for line in child.stdout:
            last = line
            point = json.loads(line).get("point")
            if point is not None:
                print(
                    f"#   {int(point['rows']):,} rows, {point['seconds']:.0f} s, peak growth "
                    f"{point['growth_peak_mib']:.1f} MiB, load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    if child.returncode != 0:
        print(f"the child failed (exit status {child.returncode})", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(last)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Each identity rule runs in a child interpreter; see the module docstring.",
    )
    parser.add_argument("--rows", type=int, default=GOAL_ROWS, help="rows (default 10,000,000)")
    parser.add_argument(
        "--key", choices=[*KEYS, "both"], default="both", help="identity rule (default: both)"
    )
    parser.add_argument(
        "--step", type=int, default=None, help="rows between checkpoints (default: rows/10)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="default 16")
    parser.add_argument("--quick", action="store_true", help="2 x 40,000 rows (CI)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=40.0,
        help="time budget per identity rule: the input ends after it (0: none; default 40)",
    )
    parser.add_argument("--dir", help="where the journals go (default: the system temp dir)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument(
        "--keep-mock-requests",
        action="store_true",
        help="leave MockTransport's list of every request it answered (not emptied)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rows = 40_000
    if args.step is None:
        args.step = max(1, args.rows // 10)
    if args.child:
        _child(args)
        return 0
    results = []
    for key in KEYS if args.key == "both" else (args.key,):
        command = [sys.executable, __file__, "--child", "--key", key, "--rows", str(args.rows)]
        command += ["--step", str(args.step), "--concurrency", str(args.concurrency)]
        command += ["--minutes", str(args.minutes)]
        command += ["--dir", args.dir] if args.dir else []
        command += ["--keep-mock-requests"] if args.keep_mock_requests else []
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} key={key}: {' '.join(command[1:])}")
        print(f"# load: {os.getloadavg()}", flush=True)
        result = _run_child(command)
        if result is None:
            return 1
        results.append(result)
        print(table(result), flush=True)
        print(flush=True)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} load: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    bad = [r for r in results if r["succeeded"] != r["rows"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
