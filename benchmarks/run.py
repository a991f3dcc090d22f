"""Benchmark finalpos against the clients a user would pick instead, in one run.

    python benchmarks/run.py            # full run (about 10 minutes on 2 shared cores)
    python benchmarks/run.py --quick    # harness check for CI (under 2 minutes)

Starts a canned local API server in its own process (nginx when installed, else aiohttp.web),
generates the openapi-python-client peer from the package's spec into a temporary folder, runs
every (variant, operation) cell in a fresh interpreter, repetitions interleaved in a shuffled
order, then measures import times and the bulk engine. Prints a markdown report and writes it to
`benchmarks/results/latest.md` (`quick.md` for `--quick`) with the raw data beside it
(`latest.json`, `quick.json`).
See `benchmarks/README.md` for how to read the tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import csv_import  # noqa: E402  (benchmarks/ is not a package; its modules sit beside us)
import peer_client  # noqa: E402
import report  # noqa: E402
import server  # noqa: E402

SPEC = REPO / "finalpos_async" / "spec" / "finalpos-openapi.json"
RESULTS = BENCH_DIR / "results"

SEQUENTIAL = {
    "aiohttp-orjson-seq",
    "requests",
    "generated-sync",
    "finalpos-sync",
    "finalpos-async-seq",
}

# Operations per cell (walks of 10 requests for `list`). Sync cells run 2,000 sequential
# retrieves, as sync code calls one at a time. Peers that cost 5-30x the floor per request run a
# fraction of the count so that a cell stays a few seconds long; per-request figures do not
# depend on it.
SIZES: dict[str, dict[str, dict[str, int]]] = {
    "full": {
        "async": {"retrieve": 5000, "create": 5000, "list": 64},
        "sync": {"retrieve": 2000, "create": 2000, "list": 20},
    },
    "quick": {
        "async": {"retrieve": 600, "create": 600, "list": 8},
        "sync": {"retrieve": 200, "create": 200, "list": 3},
    },
}
SLOW_SHARE = {
    "full": {"httpx-async": 0.25, "generated-async": 0.25},
    "quick": {"httpx-async": 0.15, "generated-async": 0.15, "generated-sync": 0.5},
}
REPS = {"full": 5, "quick": 1}
IMPORT_SAMPLES = {"full": 15, "quick": 2}
BULK_ROWS = {"full": 20_000, "quick": 1_000}
IMPORT_ROWS = {"full": 20_000, "quick": 1_000}
"""CSV rows per import cell: at 20,000 the interpreter's start-up is about 5 % of a row's CPU."""
CELL_TIMEOUT = {"full": 300.0, "quick": 60.0}
IMPORT_MODULES = {
    "full": ("aiohttp", "finalpos_async", "finalpos_sync", "httpx", "requests"),
    "quick": ("aiohttp", "finalpos_async", "finalpos_sync"),
}


def _size(mode: str, variant: str, op: str) -> tuple[int, int]:
    """Return (operations, warm-up operations) for one cell."""
    kind = "sync" if variant in SEQUENTIAL else "async"
    n = SIZES[mode][kind][op]
    n = max(2, int(n * SLOW_SHARE[mode].get(variant, 1.0)))
    warmup = max(1, n // 10) if op != "list" else max(1, n // 8)
    return n, warmup


def _run_unit(
    variant: str, ops: tuple[str, ...], url: str, peer: str | None, mode: str, csv: Path | None
) -> dict[str, dict[str, Any]]:
    """Run the cells `variant` x `ops` in one fresh interpreter; return a result per operation."""
    if variant in report.IMPORT_VARIANTS:
        if csv is None:
            return {"import": {"status": "failed", "reason": "no CSV was written for the run"}}
        return {"import": csv_import.run_cell(variant, url, csv, IMPORT_ROWS[mode])}
    sizes = [_size(mode, variant, op) for op in ops]
    cmd = [sys.executable, str(BENCH_DIR / "variants.py"), variant, ",".join(ops), "--url", url]
    cmd += ["--n", ",".join(str(n) for n, _ in sizes)]
    cmd += ["--warmup", ",".join(str(w) for _, w in sizes)]
    if peer:
        cmd += ["--peer", peer]
    timeout = CELL_TIMEOUT[mode] * len(ops)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
        )
    except subprocess.TimeoutExpired:
        return {
            op: {"status": "failed", "reason": f"timed out after {timeout:.0f} s"} for op in ops
        }
    results: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and parsed.get("operation") in ops:
            results[parsed["operation"]] = parsed
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    for op in ops:
        results.setdefault(
            op, {"status": "failed", "reason": f"exit {proc.returncode}: {tail[:300]}"}
        )
    return results


def run_cells(
    variants: list[str],
    url: str,
    peer: str | None,
    mode: str,
    reps: int,
    log: Any,
    csv: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every cell `reps` times, each round in a new shuffled order; return cell stats.

    A full run gives every (variant, operation) cell its own interpreter; `--quick` runs the
    three operations of a variant in one interpreter to save start-up time. The import cells
    (`csv_import.py`) read `csv` and take their place in the same shuffled rounds.
    """
    units: list[tuple[str, tuple[str, ...]]]
    if mode == "quick":
        units = [(v, report.operations_of(v)) for v in variants]
    else:
        units = [(v, (op,)) for v in variants for op in report.operations_of(v)]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {
        (v, op): [] for v in variants for op in report.operations_of(v)
    }
    skip: dict[str, dict[str, Any]] = {}
    for rep in range(reps):
        order = units[:]
        random.Random(rep).shuffle(order)
        started = time.monotonic()
        for variant, ops in order:
            if variant in skip:
                # An unavailable variant stays unavailable: do not pay its start-up again.
                for op in ops:
                    runs[(variant, op)].append(skip[variant])
                continue
            for op, result in _run_unit(variant, ops, url, peer, mode, csv).items():
                runs[(variant, op)].append(result)
                if result.get("status") == "unavailable":
                    skip[variant] = result
                log(_progress_line(rep, variant, op, result))
        log(f"  round {rep + 1}/{reps} took {time.monotonic() - started:.0f} s")
    out: dict[str, dict[str, Any]] = {}
    for (variant, op), results in runs.items():
        out.setdefault(variant, {})[op] = report.cell_stats(results)
    return out


def _progress_line(rep: int, variant: str, op: str, result: Mapping[str, Any]) -> str:
    if result.get("status") == "ok":
        us = result["cpu_s"] / result["requests"] * 1e6
        rps = result["requests"] / result["wall_s"]
        return f"  [{rep + 1}] {variant:22} {op:8} {us:9.1f} µs/req {rps:8.0f} req/s"
    return f"  [{rep + 1}] {variant:22} {op:8} {result.get('status')}: {result.get('reason')}"


def measure_imports(samples: int, modules: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Time `import X` in fresh interpreters, interleaved, keeping best and median in ms."""
    code = (
        "import time, sys\n"
        "t = time.perf_counter()\n"
        "import {module}\n"
        "sys.stdout.write(repr(time.perf_counter() - t))\n"
    )
    times: dict[str, list[float]] = {m: [] for m in modules}
    errors: dict[str, str] = {}
    for _ in range(samples):
        for module in modules:
            if module in errors:
                continue
            proc = subprocess.run(
                [sys.executable, "-c", code.format(module=module)],
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=60,
                check=False,
            )
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                errors[module] = f"not available: {last[:200]}"
                continue
            times[module].append(float(proc.stdout) * 1000)
    out: dict[str, dict[str, Any]] = {}
    for module in modules:
        if module in errors:
            out[module] = {"status": "unavailable", "reason": errors[module]}
        else:
            values = times[module]
            out[module] = {
                "status": "ok",
                "best_ms": min(values),
                "median_ms": statistics.median(values),
                "samples": len(values),
            }
    return out


def measure_bulk(rows: int, mode: str) -> dict[str, Any]:
    """Run `bulk.py` (bulk engine against the sandbox) in a fresh interpreter."""
    cmd = [sys.executable, str(BENCH_DIR / "bulk.py"), "--rows", str(rows)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=600, cwd=REPO, check=False
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": "bulk benchmark timed out after 600 s"}
    lines = proc.stdout.strip().splitlines()
    if lines:
        try:
            result: dict[str, Any] = json.loads(lines[-1])
            return result
        except json.JSONDecodeError:
            pass
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": "failed", "reason": f"exit {proc.returncode}: {tail[:300]}"}


def _loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def render(data: Mapping[str, Any]) -> str:
    """The whole markdown report of one run."""
    meta = data["meta"]
    lines = [
        f"# finalpos benchmarks ({meta['mode']} run)",
        "",
        f"- when: {meta['started']} UTC, {meta['duration_s']:.0f} s; command: `{meta['command']}`",
        f"- machine: {meta['cpus']} CPUs ({meta['machine']}), Python {meta['python']}, "
        f"load average before/after {meta['load_before']} → {meta['load_after']}",
        f"- server: {meta['server']} at 127.0.0.1, separate process; "
        f"{meta.get('placement', 'not pinned')}",
        f"- repetitions per cell: {meta['reps']}, each cell in a fresh interpreter, "
        "rounds interleaved in a shuffled order",
        f"- peer generator: {meta['peer']}",
        "- figure: client CPU time per HTTP request (getrusage user+sys, all threads of the "
        "client process) — lower is better; req/s beside it is wall-clock and depends on load",
        "",
    ]
    cells = data["cells"]
    lines += report.target_table(cells)
    for group in report.GROUPS:
        lines += report.group_table(group, cells)
    lines += report.noise_lines(cells)
    lines += report.budget_table(data["budgets"])
    if data.get("imports"):
        lines += report.import_table(data["imports"])
    if data.get("bulk"):
        lines += report.bulk_table(data["bulk"])
    return "\n".join(lines)


def _cpu_split(pin: bool) -> tuple[set[int], set[int]] | None:
    """(server CPUs, client CPUs) when pinning is asked for and possible, else None.

    Unpinned on a 2-core machine, the scheduler moves the sync facade's two threads and the
    server between cores from one cell to the next, and a wake-up across cores costs several
    times one on the same core: the sync retrieve's CPU per call jumped between 117 and 296 us
    within one run. Pinning the server to one CPU and every client process to the others makes
    the figures measure the client's code instead of where the scheduler put it.
    """
    affinity = getattr(os, "sched_getaffinity", None)
    if not pin or affinity is None:
        return None
    cpus = sorted(affinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[0]}, set(cpus[1:])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (0 unless the harness itself broke)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition (CI)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per cell")
    parser.add_argument(
        "--server", choices=("auto", "nginx", "aiohttp"), default="auto", help="server to use"
    )
    parser.add_argument("--only", default="", help="comma-separated variants to run (default: all)")
    parser.add_argument("--no-imports", action="store_true", help="skip import timing")
    parser.add_argument("--no-bulk", action="store_true", help="skip the bulk benchmark")
    parser.add_argument(
        "--output", type=Path, default=None, help="markdown file (default results/latest.md)"
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the scheduler place server and clients (default: server on one CPU, clients on "
        "the others, when there are two or more)",
    )
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    reps = args.reps or REPS[mode]
    variants = [v for v in report.ALL_VARIANTS if not args.only or v in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - set(report.ALL_VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {report.ALL_VARIANTS}")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.monotonic()
    meta: dict[str, Any] = {
        "mode": mode,
        "started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(
            ["python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load_before": _loadavg(),
        "reps": reps,
    }
    split = _cpu_split(not args.no_pin)
    all_cpus = os.sched_getaffinity(0) if split else set()
    meta["placement"] = (
        f"server pinned to CPU {sorted(split[0])}, client processes to CPU {sorted(split[1])}"
        if split
        else "not pinned (the scheduler places server and clients)"
    )
    with tempfile.TemporaryDirectory(prefix="finalpos-bench-") as tmp:
        peer = peer_client.generate(SPEC, Path(tmp))
        csv: Path | None = None
        if report.IMPORT_VARIANTS & set(variants):
            csv = Path(tmp) / "customers.csv"
            csv_import.make_csv(csv, IMPORT_ROWS[mode])
        meta["peer"] = (
            f"openapi-python-client {peer.version}, generated into a temporary folder"
            if peer.path
            else f"not generated: {peer.reason}"
        )
        log(f"peer client: {meta['peer']}")
        if split:
            os.sched_setaffinity(0, split[0])  # the server's processes inherit this
        with server.run_server(args.server) as srv:
            if split:
                os.sched_setaffinity(0, split[1])  # and every client process this
            meta["server"] = srv.kind
            log(f"server: {srv.kind} at {srv.url}; {meta['placement']}")
            peer_path = str(peer.path) if peer.path else None
            cells = run_cells(variants, srv.url, peer_path, mode, reps, log, csv)
        if split:
            os.sched_setaffinity(0, all_cpus)
    imports = {} if args.no_imports else measure_imports(IMPORT_SAMPLES[mode], IMPORT_MODULES[mode])
    if not args.no_imports:
        log(
            "imports: " + ", ".join(f"{m} {d.get('best_ms', 0):.0f} ms" for m, d in imports.items())
        )
    bulk = {} if args.no_bulk else measure_bulk(BULK_ROWS[mode], mode)
    if bulk:
        log(f"bulk: {bulk.get('status')} {bulk.get('reason', '')}")
    meta["load_after"] = _loadavg()
    meta["duration_s"] = time.monotonic() - started
    data: dict[str, Any] = {
        "meta": meta,
        "cells": cells,
        "imports": imports,
        "bulk": bulk,
        "budgets": report.budget_rows(cells, imports),
        "targets": report.target_rows(cells),
    }
    text = render(data)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = args.output or RESULTS / ("quick.md" if args.quick else "latest.md")
    out.write_text(text)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(data, indent=1, default=str))
    log(f"wrote {out} and {json_path}")
    broken = [
        f"{v} {op}: {c['reason']}"
        for v, ops in cells.items()
        for op, c in ops.items()
        if c["status"] == "failed" and not v.startswith("generated")
    ]
    if broken:
        # A baseline failing means the harness or server broke; finalpos failing against a
        # canned server means the SDK broke. The generated peer is third-party code: reported.
        log("failures:\n  " + "\n  ".join(broken))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
