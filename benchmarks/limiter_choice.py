"""Our GCRA Lua script (`RedisRateLimiter`) against the `limits` library, as a shared cap.

    python benchmarks/limiter_choice.py [--quick] [--implementation coredis|redispy]

Needs `pip install -e '.[redis,bench]'` and a redis-server binary. One throwaway redis-server;
for each limiter (ours; `limits`' fixed window, moving window and sliding window counter, each
behind `LimitsAdapter`: `hit()`; when refused, `get_window_stats()`, sleep until the reset time,
hit again) it measures: **idle**: 2,000 sequential `acquire()` calls (300 with `--quick`) at an
unreachable rate: p50/p99 latency, round trips and Redis commands per call; **cap**: 4 worker
processes x 32 tasks sharing 200/s for 10 s (3 s with `--quick`), as `shared_limit.py` but
stamping grants instead of sending HTTP: grants, rate, steady rate from t = 1 s, most grants in
a sliding 1-s window, round trips, commands and Redis CPU per grant; **memory**: `MEMORY USAGE`
of the limiter's keys after 200 grants; **deadline**: 90 concurrent `acquire(timeout=1.5)` at
30/s on a fresh key: granted, declined within 0.5 s (no sleep) or later, time to a decline;
**window edge**: one grant, then `acquire(timeout=0)` until refused at 0.95 s and at 1.05 s.

`INFO commandstats` counts the commands scripts run too: a round trip is an EVAL/EVALSHA or a
command the limiter's Lua scripts (ours; `limits`' .lua files) never call. `--worker`: internal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from importlib import resources
from typing import Any

import redis
from _redis_process import redis_server
from limits import RateLimitItemPerSecond
from limits.aio import strategies
from limits.storage import storage_from_string
from shared_limit import max_in_window

from finalpos_async import Limiter, RedisRateLimiter
from finalpos_async._redis_limit import GCRA_SCRIPT

RATE = 200
WORKERS, TASKS = 4, 32
START_DELAY = 2.5  # ready -> start: every strategy's warm-up state has expired by then
IDLE_RATE = 1_000_000
# 90 calls: kept under 100, the connection pool size some Redis clients default to.
DEADLINE_RATE, DEADLINE_CALLS, DEADLINE_TIMEOUT, AT_ONCE = 30, 90, 1.5, 0.5
EDGE_DRAINS = (0.95, 1.05)  # s after a window's first grant: take tokens until refused
OWN = {"info", "memory|usage", "scan"}  # this script's own commands, not the limiters'
LIMITS_SCRIPTS = {  # coredis's bridge sends fixed-window's INCRBY and EXPIRE itself
    "fixed-window": ["incr_expire"],
    "moving-window": ["acquire_moving_window", "moving_window"],
    "sliding-window-counter": ["acquire_sliding_window", "sliding_window"],
}
KINDS = ["lua (ours)", *(k for k in LIMITS_SCRIPTS if k in strategies.STRATEGIES)]


class LimitsAdapter:
    """A `Limiter` on `limits`: hit; if refused, sleep until the window's reset and hit again."""

    def __init__(self, strategy: strategies.RateLimiter, rate: int, key: str) -> None:
        self.strategy = strategy
        self.item = RateLimitItemPerSecond(rate)
        self.key = key
        self.rate = self.burst = float(rate)  # a window's worth may go at once
        self.poll_floor = 1 / rate  # TTL is whole seconds: a reset "now" must not spin

    async def acquire(self, *, timeout: float | None = None) -> bool:
        if timeout is not None and timeout < 0:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        while not await self.strategy.hit(self.item, self.key):
            stats = await self.strategy.get_window_stats(self.item, self.key)
            wait = max(stats.reset_time - time.time(), self.poll_floor)
            if deadline is not None and time.monotonic() + wait > deadline:
                return False  # nothing was booked: a refused hit takes no slot
            await asyncio.sleep(wait)
        return True


def make_limiter(kind: str, url: str, rate: int, key: str, implementation: str) -> Limiter:
    if kind == "lua (ours)":
        return RedisRateLimiter(url, rate=rate, key=key, redis_timeout=5.0)
    storage = storage_from_string(f"async+{url}", implementation=implementation)
    return LimitsAdapter(strategies.STRATEGIES[kind](storage), rate, key)


def script_commands(kind: str, implementation: str) -> set[str]:
    """Commands the limiter's Lua scripts call (counted by commandstats, no round trip)."""
    folder = resources.files("limits") / "resources" / "redis" / "lua_scripts"
    names = LIMITS_SCRIPTS.get(kind, [])
    if kind == "fixed-window" and implementation == "coredis":
        names = []
    sources = [GCRA_SCRIPT] if kind == "lua (ours)" else []
    sources += [(folder / f"{name}.lua").read_text() for name in names]
    pattern = r"redis\.call\(\s*['\"](\w+)['\"]"
    return {name.lower() for text in sources for name in re.findall(pattern, text)}


def snapshot(client: redis.Redis) -> tuple[Counter[str], float]:
    """(calls per command, Redis CPU seconds) so far."""
    stats: dict[str, dict[str, Any]] = client.info("commandstats")
    calls = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})
    cpu: dict[str, Any] = client.info("cpu")
    return calls, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def commands(
    kind: str, impl: str, before: Counter[str], after: Counter[str]
) -> tuple[int, int, Counter[str]]:
    """(round trips, all commands, calls per command) between two snapshots."""
    delta = Counter({k: n for k, n in (after - before).items() if k not in OWN})
    inner = script_commands(kind, impl)
    return sum(n for k, n in delta.items() if k not in inner), sum(delta.values()), delta


async def close(limiter: Limiter) -> None:
    if isinstance(limiter, RedisRateLimiter):
        await limiter.aclose()


async def single_process(kind: str, url: str, opts: argparse.Namespace) -> dict[str, Any]:
    """The idle latency, memory and deadline figures of one limiter, in this process."""
    client = redis.Redis.from_url(url)
    idle = make_limiter(kind, url, IDLE_RATE, uuid.uuid4().hex, opts.implementation)
    await asyncio.gather(*(idle.acquire() for _ in range(100)))  # connections, script loaded
    before, _ = snapshot(client)
    times = []
    for _ in range(opts.calls):
        t0 = time.perf_counter()
        await idle.acquire()
        times.append(time.perf_counter() - t0)
    trips, cmds, _ = commands(kind, opts.implementation, before, snapshot(client)[0])
    cuts = statistics.quantiles(times, n=100)
    key = uuid.uuid4().hex
    full = make_limiter(kind, url, RATE, key, opts.implementation)
    granted = [await full.acquire(timeout=0) for _ in range(RATE)]
    memory = sum(client.memory_usage(k) or 0 for k in client.scan_iter(match=f"*{key}*"))
    out = await deadline_test(kind, url, opts.implementation)
    out |= await edge_test(kind, url, opts.implementation)
    for limiter in (idle, full):
        await close(limiter)
    client.close()
    out |= {"p50_us": cuts[49] * 1e6, "p99_us": cuts[98] * 1e6, "idle_trips": trips / opts.calls}
    return out | {"idle_cmds": cmds / opts.calls, "memory_b": memory if all(granted) else -1}


async def deadline_test(kind: str, url: str, implementation: str) -> dict[str, Any]:
    """DEADLINE_CALLS concurrent acquire(timeout=DEADLINE_TIMEOUT) on a fresh key."""
    limiter = make_limiter(kind, url, DEADLINE_RATE, uuid.uuid4().hex, implementation)
    await asyncio.gather(*(limiter.acquire(timeout=0) for _ in range(DEADLINE_CALLS)))
    await asyncio.sleep(START_DELAY)  # connections open; the warm-up's state expired

    async def one() -> tuple[bool, float]:
        t0 = time.monotonic()
        ok = await limiter.acquire(timeout=DEADLINE_TIMEOUT)
        return ok, time.monotonic() - t0

    results = await asyncio.gather(*(one() for _ in range(DEADLINE_CALLS)))
    await close(limiter)
    no = [took for ok, took in results if not ok]
    soon = sum(took < AT_ONCE for took in no)
    out = {"granted": len(results) - len(no), "no_soon": soon, "no_later": len(no) - soon}
    return out | {"no_s": statistics.mean(no) if no else 0.0}


async def edge_test(kind: str, url: str, implementation: str) -> dict[str, Any]:
    """One grant opens a window; take all tokens at 0.95 s, then again at 1.05 s (past its end)."""
    limiter = make_limiter(kind, url, RATE, uuid.uuid4().hex, implementation)
    await limiter.acquire(timeout=0)
    t0, grants = time.monotonic(), []
    for at in EDGE_DRAINS:
        await asyncio.sleep(t0 + at - time.monotonic())
        while len(grants) < 3 * RATE and await limiter.acquire(timeout=0):
            grants.append(time.monotonic())
    await close(limiter)
    return {"edge": len(grants), "edge_ms": (grants[-1] - grants[0]) * 1e3 if grants else 0.0}


async def worker(opts: argparse.Namespace) -> None:
    """One cap worker: warm up, say "ready", read the start time, take tokens, print grants."""
    kind, url, key = opts.worker
    limiter = make_limiter(kind, url, RATE, key, opts.implementation)
    await asyncio.gather(*(limiter.acquire(timeout=0) for _ in range(TASKS)))
    print("ready", flush=True)
    start = float(await asyncio.to_thread(sys.stdin.readline))
    end = start + opts.duration
    await asyncio.sleep(max(0.0, start - time.time()))
    grants: list[float] = []

    async def task() -> None:
        while (left := end - time.time()) > 0:
            if not await limiter.acquire(timeout=left):
                return  # the next slot falls after the window
            grants.append(time.time())

    await asyncio.gather(*(task() for _ in range(TASKS)))
    await close(limiter)
    print(json.dumps(grants), flush=True)


def run_cap(kind: str, url: str, opts: argparse.Namespace) -> dict[str, Any]:
    """WORKERS processes x TASKS tasks on one key at RATE for opts.duration seconds."""
    client = redis.Redis.from_url(url)
    command = [sys.executable, __file__, "--worker", kind, url, uuid.uuid4().hex]
    command += ["--duration", repr(opts.duration), "--implementation", opts.implementation]
    pipe = subprocess.PIPE
    procs = [subprocess.Popen(command, stdin=pipe, stdout=pipe, text=True) for _ in range(WORKERS)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {kind} worker failed before the start")
        (calls0, cpu0), start = snapshot(client), time.time() + START_DELAY
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start!r}\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=opts.duration + 60)[0] for proc in procs]
        calls1, cpu1 = snapshot(client)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    client.close()
    if any(proc.returncode for proc in procs):
        raise RuntimeError(f"{kind} workers exited with {[p.returncode for p in procs]}")
    grants = sorted(t for out in outputs for t in json.loads(out.strip().splitlines()[-1]))
    trips, cmds, delta = commands(kind, opts.implementation, calls0, calls1)
    n = max(1, len(grants))
    per_grant = ", ".join(f"{name} {calls / n:.2f}" for name, calls in delta.most_common(8))
    print(f"{kind}: Redis commands per grant in the cap run: {per_grant}", flush=True)
    steady = sum(t >= start + 1 for t in grants) / (opts.duration - 1)
    out = {"grants": len(grants), "rate": len(grants) / opts.duration, "steady": steady}
    out |= {"max_1s": max_in_window(grants, 1.0)[0], "trips": trips / n, "cmds": cmds / n}
    return out | {"cpu_us": (cpu1 - cpu0) / n * 1e6}


COLUMNS = [  # (header, cell): str.format templates over the module's globals and a row
    ("limiter", "{kind}"),
    ("idle: round trips / cmds per acquire", "{idle_trips:.2f} / {idle_cmds:.2f}"),
    ("idle acquire p50 / p99 µs", "{p50_us:.0f} / {p99_us:.0f}"),
    ("cap: {WORKERS}x{TASKS} tasks, {RATE}/s, {T:g} s: grants", "{grants:,}"),
    ("req/s (GCRA bound {bound:g})", "{rate:.1f}"),
    ("steady req/s, t ≥ 1 s", "{steady:.1f}"),
    ("max in 1 s (GCRA bound {RATE2})", "{max_1s}"),
    ("round trips / grant", "{trips:.2f}"),
    ("Redis cmds / grant", "{cmds:.2f}"),
    ("Redis CPU µs / grant", "{cpu_us:.0f}"),
    ("key memory after {RATE} grants (B)", "{memory_b:,}"),
    (
        "{DEADLINE_CALLS}x acquire(timeout={DEADLINE_TIMEOUT:g}) at {DEADLINE_RATE}/s: granted"
        " / declined < {AT_ONCE:g} s / declined later (mean s to a decline)",
        "{granted} / {no_soon} / {no_later} ({no_s:.2f})",
    ),
    ("window edge: grants at 0.95 s + at 1.05 s (span ms)", "{edge} ({edge_ms:.0f})"),
]


def table(rows: dict[str, dict[str, Any]], duration: float) -> str:
    consts = globals() | {"T": duration, "bound": RATE + RATE / duration, "RATE2": 2 * RATE}
    lines = ["| " + " | ".join(head.format(**consts) for head, _ in COLUMNS) + " |"]
    lines.append("|" + "---|" * len(COLUMNS))
    for kind, r in rows.items():
        lines.append("| " + " | ".join(cell.format(kind=kind, **r) for _, cell in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s cap runs, 300 idle calls")
    parser.add_argument("--implementation", choices=["coredis", "redispy"], default="coredis")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)  # KIND URL KEY
    parser.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        asyncio.run(worker(opts))
        return
    opts.duration = opts.duration or (3.0 if opts.quick else 10.0)
    opts.calls = 300 if opts.quick else 2000
    rows: dict[str, dict[str, Any]] = {}
    with redis_server() as url:
        version = redis.Redis.from_url(url).info("server")["redis_version"]
        for kind in KINDS:
            rows[kind] = asyncio.run(single_process(kind, url, opts)) | run_cap(kind, url, opts)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"\n{when}, redis-server {version}, limits via {opts.implementation}\n")
    print(table(rows, opts.duration))


if __name__ == "__main__":
    main()
