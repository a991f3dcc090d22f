"""The bulk journal: a SQLite file recording each item's outcome, so a re-run resumes a job.

Layout (two tables, WAL mode so another process can read progress while a run writes):

    meta(name PRIMARY KEY, value)        job_id, job label, schema version
    items(key PRIMARY KEY, status, created_id, idempotency_key, attempts, error, runs, updated_at)

Writes are buffered and committed in batches (every `batch_size` records or `flush_interval`
seconds, and on close), because one commit per item would cap a run at the disk's fsync rate. A
crash can lose at most the last uncommitted batch, and that loses nothing on the API side: those
items are sent again under the same idempotency key and the server replays its first answer.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from types import TracebackType

import attrs

from .._constants import JOURNAL_BATCH_SIZE, JOURNAL_FLUSH_INTERVAL

__all__ = ["Journal", "JournalEntry"]

_SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_id TEXT,
    idempotency_key TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT,
    runs INTEGER NOT NULL DEFAULT 1,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
"""

_UPSERT = """
INSERT INTO items (key, status, created_id, idempotency_key, attempts, error, runs, updated_at)
VALUES (?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT(key) DO UPDATE SET
    status = excluded.status,
    created_id = COALESCE(excluded.created_id, items.created_id),
    idempotency_key = excluded.idempotency_key,
    attempts = items.attempts + excluded.attempts,
    error = excluded.error,
    runs = items.runs + 1,
    updated_at = excluded.updated_at
"""


@attrs.frozen(kw_only=True)
class JournalEntry:
    """What the journal knows about one item key."""

    key: str
    status: str
    created_id: str | None
    idempotency_key: str
    attempts: int
    error: str | None


class Journal:
    """A resumable record of one bulk job, kept in the SQLite file at `path`.

    The file is created on first use. Its `job_id` (made once, stored in the file) is part of every
    item's idempotency key, so a re-run of the same job with the same journal sends the same keys:
    items the server already created are replayed, not duplicated. `job` is an optional label (the
    CLI uses e.g. `"customers.create"`); opening a journal written under another label raises
    `ValueError`, so one file cannot silently resume a different job.

    Not thread-safe: use it from one event loop (the bulk engine does).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        job: str | None = None,
        batch_size: int = JOURNAL_BATCH_SIZE,
        flush_interval: float = JOURNAL_FLUSH_INTERVAL,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        self.path = os.fspath(path)
        self.job = job
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._conn: sqlite3.Connection | None = None
        self._job_id: str | None = None
        self._pending: dict[str, tuple[str, str | None, str, int, str | None, float]] = {}
        self._last_flush = time.monotonic()
        self._had_items = True
        self._flushed_this_run = False

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> Journal:
        """Open (creating if needed) the file; idempotent. Returns self."""
        if self._conn is not None:
            return self
        # check_same_thread=False: the journal may be built in one thread and used in the loop
        # thread of the sync facade; it is still only ever used by one thread at a time.
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode syncs at checkpoints only: a power cut may lose the last batches,
            # which the idempotency keys make harmless (see the module docstring).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SCHEMA)
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            version = meta.get("schema_version")
            if version is not None and version != _SCHEMA_VERSION:
                raise ValueError(
                    f"journal {self.path!r} has schema version {version}, "
                    f"this finalpos writes version {_SCHEMA_VERSION}"
                )
            stored_job = meta.get("job")
            if self.job is not None and stored_job is not None and stored_job != self.job:
                raise ValueError(
                    f"journal {self.path!r} belongs to job {stored_job!r}, not {self.job!r}; "
                    "use another journal file for this job"
                )
            job_id = meta.get("job_id") or uuid.uuid4().hex
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
                [
                    ("schema_version", _SCHEMA_VERSION),
                    ("job_id", job_id),
                    *([("job", self.job)] if self.job is not None else []),
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        # A journal that held nothing when opened needs no per-item lookups on disk: only the
        # records of this run (still buffered, or committed by it) can answer.
        self._had_items = conn.execute("SELECT EXISTS (SELECT 1 FROM items)").fetchone()[0] == 1
        self._conn = conn
        self._job_id = job_id
        return self

    def close(self) -> None:
        """Commit what is buffered and close the file; idempotent."""
        if self._conn is None:
            return
        try:
            self.flush()
        finally:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Journal:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def job_id(self) -> str:
        """The job's stable identity, made when the file was created."""
        self.open()
        assert self._job_id is not None
        return self._job_id

    def _connection(self) -> sqlite3.Connection:
        self.open()
        assert self._conn is not None
        return self._conn

    # -- items -----------------------------------------------------------------------------------

    def lookup(self, key: str) -> JournalEntry | None:
        """What an earlier run (or this one) recorded for `key`, or None."""
        pending = self._pending.get(key)
        if pending is not None:
            status, created_id, idem, attempts, error, _ = pending
            return JournalEntry(
                key=key,
                status=status,
                created_id=created_id,
                idempotency_key=idem,
                attempts=attempts,
                error=error,
            )
        self.open()
        if not self._had_items and not self._flushed_this_run:
            return None
        row = (
            self._connection()
            .execute(
                "SELECT status, created_id, idempotency_key, attempts, error "
                "FROM items WHERE key = ?",
                (key,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return JournalEntry(
            key=key,
            status=row[0],
            created_id=row[1],
            idempotency_key=row[2],
            attempts=row[3],
            error=row[4],
        )

    def record(
        self,
        key: str,
        status: str,
        *,
        idempotency_key: str,
        created_id: str | None = None,
        attempts: int = 0,
        error: str | None = None,
    ) -> None:
        """Buffer one item's outcome; committed with the next batch."""
        self._pending[key] = (status, created_id, idempotency_key, attempts, error, time.time())
        if (
            len(self._pending) >= self._batch_size
            or time.monotonic() - self._last_flush >= self._flush_interval
        ):
            self.flush()

    def flush(self) -> None:
        """Commit every buffered record now (one transaction)."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        conn = self._connection()
        rows = [(key, *values) for key, values in self._pending.items()]
        conn.execute("BEGIN")
        try:
            conn.executemany(_UPSERT, rows)
            conn.execute("COMMIT")
            self._flushed_this_run = True
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._pending.clear()

    def counts(self) -> dict[str, int]:
        """How many keys the journal holds per status (committed and buffered)."""
        self.flush()
        return dict(
            self._connection().execute("SELECT status, COUNT(*) FROM items GROUP BY status")
        )

    def __repr__(self) -> str:
        return f"Journal({self.path!r}, job={self.job!r})"
