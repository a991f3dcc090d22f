"""Sharded CLI import: 4 `finalpos import --shard k/4` processes against one rate-limited API.

    python benchmarks/sharded_import.py [--rows 20000] [--limit 200] [--burst 20] [--rate R]

Writes a CSV of ROWS customers; starts redis-server (127.0.0.1, free port, no persistence) and,
per scenario, a sandbox in its own process (`--faults rate-limit=LIMIT,burst=BURST`, `--db`) in
a fresh directory. **shared**: the 4 shards at once, each `--rate R --redis-url REDIS` (one cap,
R = LIMIT by default), then **resume**: the same commands again (the journals must skip every
row); **per-process**: the 4 shards each `--rate R` alone (4x the API's limit). Measures exit
codes, rows created (counted in the sandbox over HTTP, faults off), duplicate and missing
emails, 429s (server side from the sandbox's access log, in all and after its first 5 s; and
the shards' "HTTP attempts" minus created), wall time and rows/s; the shards' "rows of this
shard" must sum to ROWS. Prints a table, exit 1 when a check fails. `--json PATH` writes every
figure, the POST statuses per second and each shard's output; `--keep` keeps the temp dir.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _redis_process import redis_server
from _sandbox_process import SANDBOX_READY, stop_process

SHARDS = 4
START_TIMEOUT = 30.0
PAGE = 1000
# The sandbox's access log (aiohttp's default format): [time] "METHOD path HTTP/1.1" status
ACCESS = re.compile(r'\[([^\]]+)\] "(\w+) (\S+) [^"]*" (\d{3}) ')
PIPED: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "text": True}
# The shards' summary rows summed per scenario: result key, label in "Import summary".
SUMMED = "created:created|skipped:already imported (journal)|failed:failed (refused by the API)"
SUMMED += "|not_sent:not sent (kept for the next run)|http_attempts:HTTP attempts"


@contextlib.contextmanager
def sandbox(directory: Path, faults: str) -> Iterator[tuple[str, Path]]:
    """The sandbox in its own process, not --quiet: its access log (stderr, one line per request
    with the status) counts the 429s server side. Yields (url, access log path)."""
    log = directory / "sandbox-access.log"
    args = ["-m", "finalpos_async.sandbox", "--port", "0", "--db", str(directory / "sandbox.db")]
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, *args, "--faults", faults], stderr=err, **PIPED)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = proc.stdout.readline()
        while line and not line.startswith(SANDBOX_READY) and time.monotonic() < deadline:
            line = proc.stdout.readline()
        if not line.startswith(SANDBOX_READY):
            raise RuntimeError(f"the sandbox did not start: {log.read_text()[-300:]}")
        yield line[len(SANDBOX_READY) :].strip(), log
    finally:
        stop_process(proc)


def stored_emails(url: str, key: str) -> collections.Counter[str]:
    """Every customer's email in the sandbox, read page by page with faults off."""
    found: collections.Counter[str] = collections.Counter()
    while True:
        request = urllib.request.Request(
            f"{url}/v1/api/customers?skip={found.total()}&limit={PAGE}",
            headers={"x-api-key": key, "x-sandbox-fault": "ok"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            page = json.loads(response.read())
        found.update(c["email"] for c in page)
        if len(page) < PAGE:
            return found


def summary(output: str) -> dict[str, int]:
    """The counts of a shard's "Import summary" table (label -> number)."""
    counts: dict[str, int] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if len(cells) == 2 and cells[1].isdigit():
            counts[cells[0]] = int(cells[1])
    return counts


def server_statuses(log: Path, offset: int) -> list[dict[str, int]]:
    """Per second (access log from byte `offset`): the statuses of the customer POSTs."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    seconds: dict[str, collections.Counter[str]] = {}
    for match in ACCESS.finditer(text):
        if match[2] == "POST":
            seconds.setdefault(match[1], collections.Counter())[match[4]] += 1
    return [dict(seconds[t]) for t in seconds]  # in log order, i.e. by time


def failed_records(directory: Path) -> list[dict[str, Any]]:
    """The rows of every shard's failed-rows file (before a later run rewrites them)."""
    found: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.failed.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()[1:]
        found += [{"file": path.name, **json.loads(line)} for line in lines]
    return found


def run_shards(url: str, key: str, file: Path, extra: list[str]) -> tuple[float, list[Any]]:
    """The 4 shard commands at once; (wall seconds, [(exit code, output)] in shard order)."""
    env = {**os.environ, "COLUMNS": "200"}  # a wide summary table, one row a line
    base = [sys.executable, "-m", "finalpos_async.cli", "--api-key", key, "--base-url", url]
    base += ["import", "customers", str(file), "--key", "email", *extra, "--shard"]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([*base, f"{k}/{SHARDS}"], stderr=subprocess.STDOUT, env=env, **PIPED)
        for k in range(1, SHARDS + 1)
    ]
    outputs = [(p.communicate(timeout=3600)[0], p.returncode) for p in procs]
    return time.perf_counter() - t0, [(code, out) for out, code in outputs]


def scenario(
    name: str, url: str, key: str, file: Path, log: Path, extra: list[str], rows: int
) -> dict[str, Any]:
    """Run the 4 shards once and measure what they did to the target."""
    before = log.stat().st_size
    wall, shards = run_shards(url, key, file, extra)
    time.sleep(0.2)  # the access log line is written after the answer
    per_second = server_statuses(log, before)
    emails = stored_emails(url, key)
    sums = [summary(out) for _, out in shards]
    result: dict[str, Any] = {"scenario": name, "exit_codes": [code for code, _ in shards]}
    result["shard_rows"] = [s.get("rows of this shard", 0) for s in sums]
    for field, label in (pair.split(":") for pair in SUMMED.split("|")):
        result[field] = sum(s.get(label, 0) for s in sums)
    return result | {
        "stored": emails.total(),
        "duplicates": sum(1 for n in emails.values() if n > 1),
        "missing": sum(1 for i in range(rows) if f"shard{i}@example.com" not in emails),
        "server_429": sum(s.get("429", 0) for s in per_second),
        "server_429_after_5s": sum(s.get("429", 0) for s in per_second[5:]),
        "server_posts": sum(sum(s.values()) for s in per_second),
        "server_per_second": per_second,
        "cli_retries": result["http_attempts"] - result["created"],
        "seconds": wall,
        "rows_per_s": result["created"] / wall,
        "failed_rows": failed_records(file.parent),
        "outputs": [out for _, out in shards],
    }


def run_all(rows: int, limit: float, burst: int, rate: float, top: Path) -> list[dict[str, Any]]:
    from finalpos_async._constants import SANDBOX_API_KEY

    key = os.environ.get("FINALPOS_SANDBOX_API_KEY") or SANDBOX_API_KEY
    faults = f"rate-limit={limit:g},burst={burst}"
    results: list[dict[str, Any]] = []
    with redis_server() as redis:
        for n, name in enumerate(("shared", "per-process"), start=1):
            directory = top / name
            directory.mkdir()
            file = directory / "customers.csv"
            lines = [f"shard{i}@example.com,Ann,Row{i}\n" for i in range(rows)]
            file.write_text("email,firstName,lastName\n" + "".join(lines), encoding="utf-8")
            extra = ["--rate", f"{rate:g}"]
            if name == "shared":
                extra += ["--redis-url", redis, "--redis-key", f"bench-{n}"]
            with sandbox(directory, faults) as (url, log):
                for run in [name] + (["resume"] if name == "shared" else []):
                    results.append(scenario(run, url, key, file, log, extra, rows))
                    print(row_text(results[-1]), flush=True)
    return results


# The table: headers, and the result fields under them (right-aligned to the header's width).
HEADERS = "scenario   |exit codes|shard rows|created|skipped|not sent|stored|dupes|missing|429 srv"
HEADERS += "|429 after 5 s|retries|wall s|rows/s"
FIELDS = "scenario codes shard_total created skipped not_sent stored duplicates missing server_429"
FIELDS += " server_429_after_5s cli_retries seconds rows_per_s"


def cell(value: Any, width: int) -> str:
    if isinstance(value, str):
        return value.ljust(width)
    return (f"{value:,.1f}" if isinstance(value, float) else f"{value:,}").rjust(width)


def row_text(r: dict[str, Any]) -> str:
    r = r | {"codes": ",".join(map(str, r["exit_codes"])), "shard_total": sum(r["shard_rows"])}
    pairs = zip(FIELDS.split(), HEADERS.split("|"), strict=True)
    return "| " + " | ".join(cell(r[f], len(h)) for f, h in pairs) + " |"


def table(results: list[dict[str, Any]]) -> str:
    rule = "|" + "|".join("-" * (len(h) + 2) for h in HEADERS.split("|")) + "|"
    return "\n".join(["| " + HEADERS.replace("|", " | ") + " |", rule, *map(row_text, results)])


def problems(results: list[dict[str, Any]], rows: int) -> list[str]:
    """Shards partition ROWS, no row is stored twice, and every row is stored or kept in a
    failed-rows file ("not sent"). Shared and resume: every row stored, exit 0, resume creates
    0. Per-process (4x the API's limit) may leave rows not sent: that is its point."""
    found: list[str] = []
    for r in results:
        name, total, stored = r["scenario"], sum(r["shard_rows"]), r["stored"]
        expected = rows - r["not_sent"] if name == "per-process" else rows
        if total != rows or stored != expected or r["duplicates"] or r["missing"] != rows - stored:
            found.append(
                f"{name}: shards' rows {total}, stored {stored} (want {expected}), "
                f"{r['duplicates']} duplicated, {r['missing']} missing"
            )
        if name != "per-process" and set(r["exit_codes"]) != {0}:
            found.append(f"{name}: exit codes {r['exit_codes']}")
        if name == "resume" and r["created"]:
            found.append(f"resume: {r['created']} created (expected 0)")
    return found


def main() -> int:
    """Command-line entry: run the scenarios, print the table, exit 1 if a check failed."""
    parser = argparse.ArgumentParser(description="Sharded CLI import against a limited API.")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--limit", type=float, default=200.0, help="the API's limit, r/s")
    parser.add_argument("--burst", type=int, default=20, help="the API's burst")
    parser.add_argument("--rate", type=float, help="each shard's --rate (default: --limit)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and say where)")
    args = parser.parse_args()
    rate = args.rate or args.limit
    top = Path(tempfile.mkdtemp(prefix="sharded-import-"))
    try:
        results = run_all(args.rows, args.limit, args.burst, rate, top)
    finally:
        if args.keep:
            print(f"files kept in {top}", file=sys.stderr)
        else:
            shutil.rmtree(top, ignore_errors=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"\n{args.rows:,} rows, {SHARDS} shards, API {args.limit:g}/s burst {args.burst},", end=""
    )
    print(f" --rate {rate:g} per shard, {when}")
    print(table(results))
    if args.json:
        meta = {"rows": args.rows, "limit": args.limit, "burst": args.burst, "rate": rate}
        args.json.write_text(json.dumps({**meta, "date": when, "results": results}, indent=2))
    found = problems(results, args.rows)
    for problem in found:
        print(f"PROBLEM: {problem}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
