"""An import run by Celery workers (`finalpos_async.celery`) at scale, and what a lease costs.

    python benchmarks/celery_workers.py                          # 200,000 rows, 8 workers, 1,000/s
    python benchmarks/celery_workers.py --rows 20000 --workers 4 --rate 200 --kill 2

Starts a throwaway PostgreSQL cluster (the journal), a redis-server (the broker and the shared
cap) and a sandbox process (a file database; it ignores Idempotency-Key and limits the API key
to --rate requests/s with a burst of a tenth of a second's worth), writes a CSV of --rows
customers, starts --workers Celery worker processes (solo pool) and enqueues the import with
--workers + 2 tasks (`--key email`, `--rate` shared through Redis with half the sandbox's
burst). `--kill K` kills K workers with SIGKILL while the job runs (at even steps of its rows)
and starts a fresh one for each. Measured: the wall time from enqueue to the last chunk done
against rows / rate, rows created and duplicated (read from the sandbox's file), the busiest
second of requests the sandbox received and its 429s, and the workers' CPU per row (user + system
of every worker process, from /proc).

Then the lease itself (`ChunkBoard` on the same cluster, --lease-rounds times): a claim, a
renewal and a finish, and a 64-row intent window committed with and without the lease's fence.
The table is printed and written to `--output` (default benchmarks/results/celery_workers.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _postgres_process import fresh_schema, postgres_cluster
from _redis_process import redis_server
from _sandbox_process import ROOT, cpu_seconds, start_sandbox, stop_process

from finalpos_async.bulk import ChunkBoard, Intent, JournalBinding, PostgresJournal, Work

API_KEY = "sk_sandbox_benchmark"
APP = """
import os
from celery import Celery
import finalpos_async.celery
app = Celery("bench", broker=os.environ["BENCH_BROKER"])
app.conf.update(worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True)
"""


def write_rows(path: Path, rows: int) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "firstName", "lastName"])
        writer.writerows([f"b{n}@example.com", "B", str(n)] for n in range(rows))


def done(journal: str) -> tuple[int, int]:
    """(chunks done, chunks) of the only job."""
    import psycopg

    with psycopg.connect(journal) as conn:
        if conn.execute("SELECT to_regclass('finalpos_work_chunks')").fetchone() == (None,):
            return 0, -1
        row = conn.execute(
            "SELECT COUNT(*) FILTER (WHERE state = 'done'), COUNT(*) FROM finalpos_work_chunks"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def created(journal: str) -> int:
    import psycopg

    with psycopg.connect(journal) as conn:
        if conn.execute("SELECT to_regclass('finalpos_journal_items')").fetchone() == (None,):
            return 0
        row = conn.execute(
            "SELECT COUNT(*) FROM finalpos_journal_items WHERE status = 'succeeded'"
        ).fetchone()
    return int(row[0]) if row else 0


def busiest(log: Path) -> tuple[int, int]:
    """(the most requests within one second, 429s) in the sandbox's request log."""
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    times = sorted(e["t"] for e in entries)
    most, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most, sum(1 for e in entries if e["status"] == 429)


def run_import(
    options: argparse.Namespace, work: Path, journal: str, redis: str
) -> dict[str, float]:
    source = work / "customers.csv"
    write_rows(source, options.rows)
    (work / "bench_app.py").write_text(APP)
    log, db = work / "requests.jsonl", work / "sandbox.db"
    burst = max(1.0, options.rate / 10)
    sandbox, url = start_sandbox(
        "--db", str(db), "--ignore-idempotency", "--request-log", str(log),
        "--faults", f"rate-limit={options.rate:g},burst={burst:g}", "--api-key", API_KEY,
    )  # fmt: skip
    base = redis.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(work)]),
        "BENCH_BROKER": f"{base}/1",
        "FINALPOS_JOURNAL": journal,
        "FINALPOS_REDIS_URL": f"{base}/0",
        "FINALPOS_API_KEY": API_KEY,
    }
    workers: list[subprocess.Popen[bytes]] = []
    cpu = 0.0

    def start(n: int) -> None:
        home = work / f"worker{n}"
        home.mkdir()
        command = [sys.executable, "-m", "celery", "-A", "bench_app", "worker", "-P", "solo"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
        out = subprocess.DEVNULL
        workers.append(subprocess.Popen(command, cwd=home, env=env, stdout=out, stderr=out))

    try:
        for n in range(options.workers):
            start(n)
        time.sleep(3)  # the workers connect to the broker; tasks wait in the queue meanwhile
        from celery import Celery

        from finalpos_async.celery import enqueue_import

        app = Celery(broker=f"{base}/1")
        started = time.monotonic()
        enqueue_import(
            "customers", source, tasks=options.workers + 2, key="email", base_url=url,
            rate=options.rate, burst=burst / 2, chunks=options.chunks, lease=options.lease, app=app,
        )  # fmt: skip
        kills = [options.rows * (k + 1) // (options.kill + 1) for k in range(options.kill)]
        while True:
            finished, total = done(journal)
            if total > 0 and finished == total:
                break
            if kills and created(journal) >= kills[0]:
                kills.pop(0)
                victim = next(w for w in workers if w.poll() is None)
                cpu += cpu_seconds(victim.pid)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                start(len(workers))
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        cpu += sum(cpu_seconds(w.pid) for w in workers if w.poll() is None)
        app.close()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
        stop_process(sandbox)
    with sqlite3.connect(db) as conn:
        made, distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT json_extract(data, '$.email')) FROM records "
            "WHERE collection = 'CustomerDto'"
        ).fetchone()
    most, throttled = busiest(log)
    return {
        "elapsed": elapsed,
        "ideal": options.rows / options.rate,
        "created": made,
        "duplicates": made - distinct,
        "busiest": most,
        "bound": options.rate + burst,
        "429s": throttled,
        "cpu_per_row_us": cpu / options.rows * 1e6,
    }


def lease_costs(journal: str, rounds: int) -> dict[str, float]:
    """µs per claim, renewal and finish, and per 64-row intent window without and with the fence."""
    url = fresh_schema(journal)
    with ChunkBoard(url) as board:
        board.publish(Work(work_id="bench", chunks=rounds))
        leases, spent = [], {"claim": 0.0, "renew": 0.0, "finish": 0.0}
        for _ in range(rounds):
            t = time.perf_counter()
            lease = board.claim(seconds=30)
            spent["claim"] += time.perf_counter() - t
            assert lease is not None
            leases.append(lease)
        for lease in leases:
            t = time.perf_counter()
            board.renew(lease)
            spent["renew"] += time.perf_counter() - t
        binding = JournalBinding(target="t", credentials="c", operation="o", identity="i")
        windows: dict[str, list[float]] = {"intents": [], "fenced intents": []}
        for name, lease in (("intents", None), ("fenced intents", leases[0])):
            with PostgresJournal(url, lease=lease) as store:
                store.bind(binding, job_id=f"bench-{name}")
                for w in range(rounds):
                    batch = [Intent(f"{name}{w}.{i}", "d", f"k{w}.{i}") for i in range(64)]
                    t = time.perf_counter()
                    store.record_intents(batch)
                    windows[name].append(time.perf_counter() - t)
        for lease in leases:
            t = time.perf_counter()
            board.finish(lease, {"rows": 1})
            spent["finish"] += time.perf_counter() - t
    result = {name: seconds / rounds * 1e6 for name, seconds in spent.items()}
    result.update({name: statistics.median(v) * 1e6 for name, v in windows.items()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--kill", type=int, default=0)
    parser.add_argument("--lease-rounds", type=int, default=500)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks/results/celery_workers.md"
    )
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    with (
        postgres_cluster() as cluster,
        redis_server() as redis,
        tempfile.TemporaryDirectory() as tmp,
    ):
        run = run_import(options, Path(tmp), fresh_schema(cluster), redis)
        lease = lease_costs(cluster, options.lease_rounds)
    lines = [
        f"`python benchmarks/celery_workers.py --rows {options.rows} --workers {options.workers} "
        f"--rate {options.rate:g} --chunks {options.chunks} --lease {options.lease:g} --kill "
        f"{options.kill}` on {platform.node()} ({os.cpu_count()} cores), Python "
        f"{platform.python_version()}; load {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after.",
        "",
        "| rows | workers (killed) | wall | rows / rate | wall / ideal | created | duplicates "
        "| busiest second | rate + burst | 429s | worker CPU per row |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {options.rows:,} | {options.workers} ({options.kill}) | {run['elapsed']:.1f} s "
        f"| {run['ideal']:.1f} s | {run['elapsed'] / run['ideal']:.3f} | {run['created']:,.0f} "
        f"| {run['duplicates']:.0f} | {run['busiest']:.0f} | {run['bound']:.0f} "
        f"| {run['429s']:.0f} | {run['cpu_per_row_us']:.0f} µs |",
        "",
        f"Lease costs on the same cluster ({options.lease_rounds} rounds, µs each):",
        "",
        "| claim | renew | finish | 64 intents | 64 intents, fenced by a lease |",
        "|---:|---:|---:|---:|---:|",
        f"| {lease['claim']:.0f} | {lease['renew']:.0f} | {lease['finish']:.0f} "
        f"| {lease['intents']:.0f} | {lease['fenced intents']:.0f} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    options.output.write_text(text)


if __name__ == "__main__":
    main()
