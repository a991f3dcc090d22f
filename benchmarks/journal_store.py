"""What a journal store costs per row: the SQLite file against PostgreSQL, as the engine calls it.

    python benchmarks/journal_store.py                     # 20,000 rows x 3 repetitions, ~1 min
    python benchmarks/journal_store.py --quick             # 2,000 rows x 1
    python benchmarks/journal_store.py --url postgresql://user@host/db   # a server of your own

Without `--url`, a throwaway PostgreSQL cluster is started with the Debian package's initdb and
pg_ctl (`/usr/lib/postgresql/*/bin`; as `nobody` when run as root) in a temporary directory on a
free port of 127.0.0.1, with the server's default durability (fsync on, synchronous_commit on),
and stopped at the end. The SQLite file goes to a temporary directory on the same filesystem.

Each store gets a fresh journal (a new file; a new schema) and a job of `--rows` rows, called as
the bulk engine calls it (`_job.py`, `_intake.py`):

- **write path**: `record_intents` per window of 64 rows (BULK_INTENT_WINDOW: one commit, synced,
  before the window's requests leave), `record` per row (outcomes buffered, a commit per 500),
  and `flush` at the end: the figure the issue asks for;
- **intake**: `count_seen` + `lookup` per row (naming each item and checking the journal),
  which the engine also makes for every row: in the new job, then again in a re-run of it
  (**resume intake**: every row has a record to read).

Figures per row: wall time (the engine waits for it: the calls are made inline on its event
loop) and the client's CPU time (`time.process_time`); for PostgreSQL also the server backend's
CPU (from /proc, when the server runs on this machine). The median over `--reps` interleaved
repetitions (SQLite, PostgreSQL, SQLite, ...) is printed as a markdown table, and written to
`--output` (default benchmarks/results/journal_store.md; not with --quick).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _postgres_process import fresh_schema, postgres_cluster  # noqa: E402

from finalpos_async.bulk import (  # noqa: E402 - after the path is set
    Intent,
    Journal,
    JournalBinding,
    JournalStore,
    PostgresJournal,
)

WINDOW = 64  # BULK_INTENT_WINDOW
BINDING = JournalBinding(
    target="https://api.example", credentials="fp", operation="customers.create", identity="c"
)


def _backend_cpu(store: JournalStore, url: str | None) -> Callable[[], float | None]:
    """A reader of the server backend's CPU seconds so far (None: not a local process)."""
    if url is None:
        return lambda: None
    import psycopg

    with psycopg.connect(url) as conn:  # the store's own session, by the name it gives itself
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'finalpos journal'"
        ).fetchone()
    stat = Path(f"/proc/{row[0]}/stat") if row else None

    def read() -> float | None:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split() if stat else None
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else None

    return read


def measure(store: JournalStore, rows: int, url: str | None = None) -> dict[str, float | None]:
    """µs per row for the write path and the intake, wall and CPU (and server CPU: `url`)."""
    store.open()
    store.bind(BINDING)
    server = _backend_cpu(store, url)
    keys = [f"{n:032x}" for n in range(rows)]
    out: dict[str, float | None] = {}

    server0 = server()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for key in keys:
        store.count_seen(key)
        store.lookup(key)
    wall1, cpu1 = time.perf_counter(), time.process_time()
    server1 = server()
    out["intake wall"] = (wall1 - wall0) / rows * 1e6
    out["intake cpu"] = (cpu1 - cpu0) / rows * 1e6
    out["intake server cpu"] = (
        (server1 - server0) / rows * 1e6 if server0 is not None and server1 is not None else None
    )

    wall0, cpu0 = time.perf_counter(), time.process_time()
    for start in range(0, rows, WINDOW):
        window = keys[start : start + WINDOW]
        store.record_intents(Intent(k, k, "i" + k) for k in window)
        for key in window:
            store.record(key, "succeeded", digest=key, idempotency_key="i" + key, created_id=key)
    store.flush()
    wall1, cpu1 = time.perf_counter(), time.process_time()
    server2 = server()
    out["write wall"] = (wall1 - wall0) / rows * 1e6
    out["write cpu"] = (cpu1 - cpu0) / rows * 1e6
    out["write server cpu"] = (
        (server2 - server1) / rows * 1e6 if server1 is not None and server2 is not None else None
    )
    assert store.counts() == {"succeeded": rows}

    store.bind(BINDING)  # a re-run of the job: every row's record is read (all succeeded)
    server2 = server()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for key in keys:
        store.count_seen(key)
        entry = store.lookup(key)
        assert entry is not None
    wall1, cpu1 = time.perf_counter(), time.process_time()
    server3 = server()
    out["resume intake wall"] = (wall1 - wall0) / rows * 1e6
    out["resume intake cpu"] = (cpu1 - cpu0) / rows * 1e6
    out["resume intake server cpu"] = (
        (server3 - server2) / rows * 1e6 if server2 is not None and server3 is not None else None
    )
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 rows, 1 repetition")
    parser.add_argument("--url", help="a PostgreSQL server of your own (a schema is made per run)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/journal_store.md"))
    opts = parser.parse_args()
    if opts.quick:
        opts.rows, opts.reps = 2_000, 1
    samples: dict[str, list[dict[str, float | None]]] = {"SQLite": [], "PostgreSQL": []}
    with contextlib.ExitStack() as stack:
        url = opts.url or stack.enter_context(postgres_cluster())
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-journal-")))
        import psycopg

        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        server = f"PostgreSQL {version[0] if version else '?'}"
        for rep in range(opts.reps):
            samples["SQLite"].append(measure(Journal(scratch / f"j{rep}.db"), opts.rows))
            store = PostgresJournal(fresh_schema(url))
            samples["PostgreSQL"].append(measure(store, opts.rows, None if opts.url else url))
            print(f"repetition {rep + 1}/{opts.reps} done", file=sys.stderr)
    columns = [
        f"{part} {figure}"
        for part in ("write", "intake", "resume intake")
        for figure in ("wall", "cpu", "server cpu")
    ]
    lines = [
        f"# Journal store cost per row ({opts.rows:,} rows, median of {opts.reps})",
        "",
        f"`python benchmarks/journal_store.py{' --quick' if opts.quick else ''}` on "
        f"{platform.node() or 'this machine'} ({os.cpu_count()} cores), Python "
        f"{platform.python_version()}; {server} {'at --url' if opts.url else 'local, 127.0.0.1'}"
        ", default durability (fsync, synchronous_commit on); SQLite synchronous=FULL, WAL.",
        "Write path: `record_intents` per 64-row window + `record` per row + `flush`; intake: "
        "`count_seen` + `lookup` per row in a new job; resume intake: the same in a re-run "
        "(every row journaled). µs per row; server CPU is the PostgreSQL backend's.",
        "",
        "| store | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, runs in samples.items():
        cells = []
        for column in columns:
            values = [run[column] for run in runs if run[column] is not None]
            cells.append(
                f"{statistics.median(v for v in values if v is not None):.1f}" if values else "-"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not opts.quick:
        Path(opts.output).write_text(text)


if __name__ == "__main__":
    main()
