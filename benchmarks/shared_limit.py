"""Does one `RedisRateLimiter` cap 4 processes together, and what does sharing it cost?

    python benchmarks/shared_limit.py [--duration 20] [--quick] [--json PATH] [--check]

Starts a redis-server (127.0.0.1, free port, temp dir, no persistence) and the sandbox
(`python -m finalpos_async.sandbox`), each in its own process, then runs three scenarios of 4
worker processes (this script with `--worker`), 32 tasks each, all sending
`client.customers.retrieve(id)` (`max_retries=0`: one call is one HTTP attempt) as fast as their
limiter allows for `--duration` seconds from a common start time:

- **shared**: every worker's client has `RedisRateLimiter(url, rate=200, key=<fresh key>)`;
- **per-process**: every worker has its own `RateLimiter(200)` (expected: about 4x the cap);
- **split**: every worker has its own `RateLimiter(50)`, the static alternative: the same
  aggregate cap, and the same per-worker rate as *shared*, so its worker CPU per request is the
  fair baseline for what the Redis round trip costs the client.

Each worker records the wall-clock time at which every token was granted (a thin `Limiter`
around the real one; the grant is when the attempt is sent, which is what the cap controls) and
of every response. The warm-up (one request per task, connections and the Lua script loaded)
runs before a barrier; the start is 1 s after it, so every bucket is full again: the first
second holds the burst (200 tokens at once), which is why the table shows the aggregate rate
over the whole window (GCRA bound: rate + burst / T) beside the steady rate from t = 1 s on.
"max in 1 s" slides a 1-second window starting at every grant (bound: rate + burst = 400).
Grant times are taken in the client, so they trail Redis's reservation by the event loop's lag
(milliseconds when 128 tasks start at once): the busiest window's first-grant lag is printed.

Also reported: Redis CPU (`INFO cpu` delta over the run) per acquire and as % of one core (and
the part spent inside the script, from `INFO commandstats`), the workers' CPU time per
request, and the latency `acquire()` adds when no wait is needed (2,000 calls on a limiter with
an unreachable rate, Redis vs the in-process bucket).
Exit status 0 unless something crashed. `--quick`: 3 s runs and 300 latency calls.

`--check` (CI's benchmark step runs `--quick --duration 2 --check`) then asserts what must hold
on any machine, however loaded: every scenario ran and sent requests, the shared cap held
(at most rate * T + burst grants over the 4 workers) and no 429 came back (the sandbox runs
without faults). Nothing about speed is checked. The Redis limiters allow 5 s per round trip
(`redis_timeout`; the default 0.5 s would count a round trip slowed by a busy machine as Redis
being down, which is not what is measured here).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from _redis_process import redis_cpu_seconds, redis_server
from _sandbox_process import start_sandbox, stop_process

from finalpos_async import AsyncFinalPOS, Limiter

RATE = 200.0
BURST = RATE  # the default: one second's worth
WORKERS = 4
CONCURRENCY = 32
START_DELAY = 1.0  # barrier -> start: long enough for every bucket to refill after the warm-up
REDIS_TIMEOUT = 5.0  # per Redis round trip: a loaded machine is not a Redis outage
STEADY_FROM = 1.0  # s after the start: the burst is spent by then
# scenario -> what each worker's client gets (the split is the static alternative: 4 x 50/s).
SCENARIOS = {
    "shared": "RedisRateLimiter(rate=200), one key",
    "per-process": "RateLimiter(200) each",
    "split": "RateLimiter(50) each",
}


class WindowClosed(Exception):
    """Raised from `acquire` once the measured window is over: the sender stops."""


class Recorder:
    """A `Limiter` around another: records when each token is granted, closes at `end`."""

    def __init__(self, inner: Limiter) -> None:
        self.inner = inner
        self.end = float("inf")
        self.recording = False
        self.grants: list[float] = []
        self.called: list[float] = []  # when each granted acquire was called
        self.calls = 0  # acquire calls on the inner limiter while recording

    @property
    def rate(self) -> float:
        return self.inner.rate

    @property
    def burst(self) -> float:
        return self.inner.burst

    async def acquire(self, *, timeout: float | None = None) -> bool:
        left = self.end - time.time()
        if left <= 0:
            raise WindowClosed
        self.calls += self.recording
        called = time.time()
        if await self.inner.acquire(timeout=left if timeout is None else min(timeout, left)):
            if self.recording:
                self.grants.append(time.time())
                self.called.append(called)
            return True
        if timeout is None or left <= timeout:
            raise WindowClosed  # declined because the slot falls after the window
        return False


async def _sender(
    client: AsyncFinalPOS, customer: str, responses: list[float], tally: Counter[str]
) -> None:
    from finalpos_async import APIStatusError, FinalPOSError

    while True:
        try:
            await client.customers.retrieve(customer)
        except WindowClosed:
            return
        except APIStatusError as exc:
            tally[str(exc.status_code)] += 1
        except FinalPOSError as exc:
            tally[type(exc).__name__] += 1
        else:
            tally["200"] += 1
        responses.append(time.time())


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def worker(opts: argparse.Namespace) -> dict[str, Any]:
    """One worker process: warm up, say "ready", read the start time from stdin, send."""
    from finalpos_async import RateLimiter, RedisRateLimiter

    inner: Limiter
    if opts.worker == "shared":
        inner = RedisRateLimiter(opts.redis, rate=RATE, key=opts.key, redis_timeout=REDIS_TIMEOUT)
    else:
        inner = RateLimiter(RATE if opts.worker == "per-process" else RATE / WORKERS)
    recorder = Recorder(inner)
    responses: list[float] = []
    tally: Counter[str] = Counter()
    client = AsyncFinalPOS(opts.api_key, base_url=opts.sandbox, rate_limit=recorder, max_retries=0)
    async with client:
        await asyncio.gather(
            *(client.customers.retrieve(opts.customer) for _ in range(CONCURRENCY))
        )
        print("ready", flush=True)
        start = float(await asyncio.to_thread(sys.stdin.readline))
        recorder.end = start + opts.duration
        await asyncio.sleep(max(0.0, start - time.time()))
        recorder.recording = True
        cpu0 = _cpu_seconds()
        senders = (_sender(client, opts.customer, responses, tally) for _ in range(CONCURRENCY))
        await asyncio.gather(*senders)
        cpu = _cpu_seconds() - cpu0
    if isinstance(inner, RedisRateLimiter):
        await inner.aclose()
    return {
        "grants": recorder.grants,
        "called": recorder.called,
        "responses": responses,
        "outcomes": dict(tally),
        "acquire_calls": recorder.calls,
        "cpu_s": cpu,
    }


async def seed_customer(url: str, api_key: str) -> str:
    async with AsyncFinalPOS(api_key, base_url=url) as client:
        customer = await client.customers.create(
            email="bench@example.com", first_name="Bench", last_name="Limit"
        )
        return customer.id


def run_scenario(name: str, opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Start the 4 workers, release them at one start time, collect and summarize."""
    key = f"bench:shared-limit:{os.getpid()}:{time.time_ns()}"
    common = ["--sandbox", opts.sandbox_url, "--redis", opts.redis_url, "--key", key]
    common += ["--customer", opts.customer, "--api-key", opts.api_key]
    common += ["--duration", repr(opts.duration)]
    outs = [tmp / f"{name}-{i}.json" for i in range(WORKERS)]
    commands = [
        [sys.executable, __file__, "--worker", name, *common, "--out", str(out)] for out in outs
    ]
    pipe = subprocess.PIPE
    procs = [subprocess.Popen(cmd, stdin=pipe, stdout=pipe, text=True) for cmd in commands]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {name} worker failed before the start")
        start = time.time() + START_DELAY
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start!r}\n")
            proc.stdin.flush()
        time.sleep(max(0.0, start - time.time()))
        (cpu0, script0), t0 = redis_cpu_seconds(opts.redis_url), time.time()
        codes = [proc.wait(timeout=opts.duration + 60) for proc in procs]
        (cpu1, script1), t1 = redis_cpu_seconds(opts.redis_url), time.time()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if any(codes):
        raise RuntimeError(f"{name} workers exited with {codes}")
    results = [json.loads(out.read_text()) for out in outs]
    redis = (cpu1 - cpu0, script1 - script0, t1 - t0)
    return summarize(name, results, start, opts.duration, redis)


def max_in_window(times: list[float], width: float) -> tuple[int, int]:
    """Most events in any [t, t + width) with t at an event (times sorted), and that event."""
    counts = [bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)]
    return max(((n, i) for i, n in enumerate(counts)), default=(0, 0))


def summarize(
    name: str,
    results: list[dict[str, Any]],
    start: float,
    duration: float,
    redis: tuple[float, ...],
) -> dict[str, Any]:
    # (grant, call) pairs: the call -> grant lag of the busiest window's first grant
    pairs = sorted(p for r in results for p in zip(r["grants"], r["called"], strict=True))
    grants = [grant for grant, _ in pairs]
    outcomes: Counter[str] = Counter()
    for r in results:
        outcomes.update(r["outcomes"])
    total = len(grants)
    steady = sum(t >= start + STEADY_FROM for t in grants) / (duration - STEADY_FROM)
    window, first = max_in_window(grants, 1.0)
    steady_window, _ = max_in_window([t for t in grants if t >= start + STEADY_FROM], 1.0)
    calls = sum(r["acquire_calls"] for r in results)
    cpu_s = sum(r["cpu_s"] for r in results)
    responses = sum(len(r["responses"]) for r in results)
    return {
        "scenario": name,
        "requests": total,
        "rate": total / duration,
        "steady_rate": steady,
        "max_1s_window": window,
        "window_bound": RATE + BURST,
        "total_bound": RATE * duration + BURST,
        "steady_within_5pct": abs(steady - RATE) <= 0.05 * RATE,
        "window_ok": window <= RATE + BURST,
        "total_ok": total <= RATE * duration + BURST,
        "status_429": outcomes.get("429", 0),
        "other_errors": sum(n for k, n in outcomes.items() if k not in ("200", "429")),
        "outcomes": dict(outcomes),
        "per_worker": [len(r["grants"]) for r in results],
        "late_grants": sum(t >= start + duration for t in grants),
        "max_1s_window_steady": steady_window,
        "max_window_at_s": grants[first] - start if grants else 0.0,
        "max_window_first_lag_ms": (pairs[first][0] - pairs[first][1]) * 1e3 if grants else 0.0,
        "worker_cpu_us_per_request": cpu_s / max(responses, 1) * 1e6,
        "acquire_calls": calls,
        "redis_cpu_s": redis[0],
        "redis_script_s": redis[1],
        "redis_cpu_pct": redis[0] / redis[2] * 100,
        "redis_cpu_us_per_acquire": redis[0] / max(calls, 1) * 1e6,
        "redis_script_us_per_acquire": redis[1] / max(calls, 1) * 1e6,
    }


async def acquire_latency(limiter: Limiter, calls: int) -> dict[str, float]:
    """p50/p99 (µs) of `acquire()` when no wait is needed (after 50 warm-up calls)."""
    for _ in range(50):
        await limiter.acquire()
    samples: list[int] = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        await limiter.acquire()
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1e3,
        "p99_us": samples[len(samples) * 99 // 100] / 1e3,
    }


async def latencies(redis_url: str, calls: int) -> dict[str, dict[str, float]]:
    from finalpos_async import RateLimiter, RedisRateLimiter

    key = f"bench:latency:{time.time_ns()}"
    shared = RedisRateLimiter(redis_url, rate=1e9, key=key, redis_timeout=REDIS_TIMEOUT)
    try:
        remote = await acquire_latency(shared, calls)
    finally:
        await shared.aclose()
    return {"redis": remote, "local": await acquire_latency(RateLimiter(1e9), calls)}


def table(rows: list[dict[str, Any]], duration: float) -> str:
    yes = {True: "yes", False: "**no**"}
    lines = [
        f"| scenario | limiter per worker | requests | req/s over {duration:g} s (x cap) "
        "| steady req/s, t ≥ 1 s (x cap) | max in 1 s (bound) | steady within 5 % of 200 "
        "| no 1-s window > 200+burst | total ≤ 200·T+burst | 429s | other errors "
        "| worker CPU µs/req |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {SCENARIOS[r['scenario']]} | {r['requests']:,} "
            f"| {r['rate']:.1f} ({r['rate'] / RATE:.3f}x) "
            f"| {r['steady_rate']:.1f} ({r['steady_rate'] / RATE:.3f}x) "
            f"| {r['max_1s_window']} ({r['window_bound']:g}) | {yes[r['steady_within_5pct']]} "
            f"| {yes[r['window_ok']]} | {yes[r['total_ok']]} | {r['status_429']} "
            f"| {r['other_errors']} | {r['worker_cpu_us_per_request']:.0f} |"
        )
    return "\n".join(lines)


def report(rows: list[dict[str, Any]], lat: dict[str, dict[str, float]], duration: float) -> str:
    shared, idle = rows[0], rows[1]
    text = [table(rows, duration), ""]
    text.append(
        f"Redis CPU, shared run: {shared['redis_cpu_s'] * 1e3:.0f} ms = "
        f"{shared['redis_cpu_pct']:.1f} % of one core = "
        f"{shared['redis_cpu_us_per_acquire']:.0f} µs per acquire "
        f"({shared['acquire_calls']:,} script runs), of which "
        f"{shared['redis_script_us_per_acquire']:.1f} µs inside EVALSHA (INFO commandstats); "
        f"Redis idle (per-process run): {idle['redis_cpu_pct']:.1f} % of one core."
    )
    redis, local = lat["redis"], lat["local"]
    text.append(
        f"acquire() with no wait: Redis p50 {redis['p50_us']:.0f}, p99 {redis['p99_us']:.0f} µs; "
        f"local RateLimiter p50 {local['p50_us']:.1f}, p99 {local['p99_us']:.1f} µs."
    )
    counts = ", ".join(f"{r['scenario']} {r['per_worker']}" for r in rows)
    text.append(f"Grants per worker: {counts}.")
    text.append(
        f"Busiest 1-s window, shared: {shared['max_1s_window']} grants from "
        f"t = {shared['max_window_at_s']:.3f} s, whose first grant came "
        f"{shared['max_window_first_lag_ms']:.1f} ms after its acquire() call; "
        f"busiest from t = 1 s on: {shared['max_1s_window_steady']}."
    )
    return "\n".join(text)


def check(rows: list[dict[str, Any]], duration: float) -> list[str]:
    """What `--check` requires of a run: each failed requirement, said in one line."""
    scenarios = {row["scenario"]: row for row in rows}
    if set(scenarios) != set(SCENARIOS):
        return [f"scenarios {sorted(scenarios)}, expected {sorted(SCENARIOS)}"]
    failures = [
        f"{name}: no request was sent"
        for name in ("shared", "per-process")
        if scenarios[name]["requests"] <= 0
    ]
    shared = scenarios["shared"]
    # The cap: four processes, one bucket, at most rate * T + burst grants in the window.
    if shared["requests"] > RATE * duration + BURST:
        failures.append(
            f"shared: {shared['requests']} grants in {duration:g} s, above the cap "
            f"{RATE * duration + BURST:g} (rate * T + burst)"
        )
    if shared["status_429"] != 0:
        failures.append(f"shared: {shared['status_429']} answers were 429 (no faults were set)")
    return failures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=None, help="seconds (default 20)")
    parser.add_argument("--quick", action="store_true", help="3 s runs, 300 latency calls")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless the shared cap held with no 429s"
    )
    parser.add_argument("--worker", choices=SCENARIOS, help=argparse.SUPPRESS)
    for name in ("--sandbox", "--redis", "--key", "--customer", "--api-key", "--out"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.duration is None:
        opts.duration = 3.0 if opts.quick else 20.0
    if opts.duration <= STEADY_FROM:
        parser.error(f"--duration must be more than {STEADY_FROM:g} s")
    return opts


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanups (servers, workers)


def main() -> None:
    opts = parse_args()
    if opts.worker:
        result = asyncio.run(worker(opts))
        Path(opts.out).write_text(json.dumps(result))
        return
    from finalpos_async._constants import SANDBOX_API_KEY

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    opts.api_key = os.environ.get("FINALPOS_SANDBOX_API_KEY") or SANDBOX_API_KEY
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        opts.redis_url = stack.enter_context(redis_server())
        sandbox, opts.sandbox_url = start_sandbox()
        stack.callback(stop_process, sandbox)
        opts.customer = asyncio.run(seed_customer(opts.sandbox_url, opts.api_key))
        lat = asyncio.run(latencies(opts.redis_url, 300 if opts.quick else 2000))
        rows = [run_scenario(name, opts, Path(tmp)) for name in SCENARIOS]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"shared_limit.py, {when}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(report(rows, lat, opts.duration))
    if opts.json is not None:
        figures = {"date": when, "duration": opts.duration, "scenarios": rows, "acquire": lat}
        opts.json.write_text(json.dumps(figures, indent=2))
    if opts.check:
        failures = check(rows, opts.duration)
        for failure in failures:
            print(f"check failed: {failure}", file=sys.stderr)
        if failures:
            sys.exit(1)
        print(
            f"check passed: the shared cap held ({rows[0]['requests']} grants, at most "
            f"{RATE * opts.duration + BURST:g}) and no 429 came back"
        )


if __name__ == "__main__":
    main()
