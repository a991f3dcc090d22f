"""The bulk journal: a SQLite file recording each item's outcome, so a re-run resumes a job.

Layout (two tables, WAL mode so another process can read progress while a run writes):

    meta(name PRIMARY KEY, value)   schema_version, job_id, and the binding: target,
                                    credentials (a fingerprint), operation, identity rule
    items(key PRIMARY KEY, status, digest, source_digest, created_id, idempotency_key,
          attempts, error, runs, updated_at)

A journal belongs to one target and one operation (`JournalBinding`): opening it for anything else
raises `JournalMismatchError` before a request is made, because its records say nothing about
another server, and resuming there would skip rows that were never created in it.

`digest` is a hash of the content last sent under `key`; `source_digest` is the content it first
failed with, when it was fixed (in a failed-rows file, say) and sent again: the file it came from
still holds that version, and it is the same row. A row whose key is journaled with neither digest
has changed since, and is never skipped or sent silently.

Writes are buffered and committed in batches (every `batch_size` records or `flush_interval`
seconds, and on close), because one commit per item would cap a run at the disk's fsync rate. A
crash loses at most the last uncommitted batch: those items are sent again under the same
idempotency key, and when the server may not honour it the bulk engine looks them up first (see
`BulkRunner.run`). One process at a time may write a journal: a second one gets
`JournalLockedError`.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import uuid
from types import TracebackType
from typing import IO, Any

import attrs

from .._constants import JOURNAL_BATCH_SIZE, JOURNAL_FLUSH_INTERVAL
from .._exceptions import FinalPOSError

# No fcntl on Windows: two writers are not detected there (SQLite still keeps the file intact).
if sys.platform != "win32":
    import fcntl

__all__ = [
    "Journal",
    "JournalBinding",
    "JournalEntry",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
]

_SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    digest TEXT NOT NULL,
    source_digest TEXT,
    created_id TEXT,
    idempotency_key TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT,
    runs INTEGER NOT NULL DEFAULT 1,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
"""

_UPSERT = """
INSERT INTO items (key, status, digest, source_digest, created_id, idempotency_key, attempts,
                   error, runs, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT(key) DO UPDATE SET
    status = excluded.status,
    digest = excluded.digest,
    source_digest = COALESCE(
        items.source_digest,
        CASE WHEN items.status = 'failed' AND items.digest != excluded.digest
             THEN items.digest END
    ),
    created_id = COALESCE(excluded.created_id, items.created_id),
    idempotency_key = excluded.idempotency_key,
    attempts = items.attempts + excluded.attempts,
    error = excluded.error,
    runs = items.runs + 1,
    updated_at = excluded.updated_at
"""

_BINDING_FIELDS = ("target", "credentials", "operation", "identity")


class JournalError(FinalPOSError):
    """A journal cannot be used as asked (see the subclasses); nothing was sent."""


class JournalLockedError(JournalError):
    """Another process is writing this journal right now."""


class JournalMismatchError(JournalError):
    """The journal was written for another target, credentials, operation or identity rule.

    `recorded` is what the file says, `requested` what this run is; `differs` names the fields
    that differ (`"target"`, `"credentials"`, `"operation"`, `"identity"`, `"job_id"`).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        recorded: JournalBinding,
        requested: JournalBinding,
        differs: tuple[str, ...],
    ) -> None:
        super().__init__(message)
        self.path = path
        self.recorded = recorded
        self.requested = requested
        self.differs = differs


@attrs.frozen(kw_only=True)
class JournalBinding:
    """What a journal belongs to; two runs may share a journal only if every field is equal.

    - `target`: where the records go: the API base URL, or `sandbox:/abs/path.db` for a sandbox
      database (the URL of a local sandbox changes with its port; its file does not).
    - `credentials`: a one-way fingerprint of the API key (never the key).
    - `operation`: e.g. `customers.create`.
    - `identity`: the rule that names a row across runs, e.g. `key=email` or `content`.
    """

    target: str
    credentials: str
    operation: str
    identity: str

    def describe(self) -> str:
        """For messages: `customers.create into URL (API key 3fa2c1d0…)`."""
        return f"{self.operation} into {self.target} (API key {self.credentials[:8]}…)"


@attrs.frozen(kw_only=True)
class JournalEntry:
    """What the journal knows about one item key.

    `status` is `succeeded`, `failed` (the API refused it: certainly not created) or `unknown`
    (it may have been created: its answer was lost).
    """

    key: str
    status: str
    digest: str
    source_digest: str | None
    created_id: str | None
    idempotency_key: str
    attempts: int
    error: str | None

    def matches(self, digest: str) -> bool:
        """True when `digest` is the content recorded for this key (sent, or its source)."""
        return digest in (self.digest, self.source_digest)


_Pending = tuple[str, str, str | None, str | None, str, int, str | None, float]


class Journal:
    """A resumable record of one bulk job, kept in the SQLite file at `path`.

    The file is created on first use. Its `job_id` (made once, stored in the file) is part of every
    item's idempotency key, so a re-run of the same job with the same journal sends the same keys.
    `bind()` ties the file to one target and operation (the bulk engine calls it before sending).

    Not thread-safe: use it from one event loop (the bulk engine does).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = JOURNAL_BATCH_SIZE,
        flush_interval: float = JOURNAL_FLUSH_INTERVAL,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        self.path = os.fspath(path)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._conn: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None
        self._job_id: str | None = None
        self._meta: dict[str, str] = {}
        self._pending: dict[str, _Pending] = {}
        self._last_flush = time.monotonic()
        self._had_items = True
        self._flushed_this_run = False

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> Journal:
        """Open (creating if needed) the file and take its writer lock; idempotent. Returns self."""
        if self._conn is not None:
            return self
        if os.path.isdir(self.path):
            raise JournalError(f"journal {self.path!r} is a directory; give a file path")
        lock = self._take_lock()
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            self._release_lock(lock)
            raise JournalError(f"cannot open journal {self.path!r}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode syncs at checkpoints only: a power cut may lose the last batches,
            # which costs a resend or a lookup, never a duplicate (see the module docstring).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            meta = self._read_meta(conn)
            version = meta.get("schema_version")
            if version is not None and version != _SCHEMA_VERSION:
                raise JournalError(
                    f"journal {self.path!r} was written by another finalpos version (schema "
                    f"{version}, this one writes {_SCHEMA_VERSION}) and does not record which "
                    "target it belongs to; give this run a new journal file"
                )
            conn.executescript(_SCHEMA)
            job_id = meta.get("job_id") or uuid.uuid4().hex
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
                [("schema_version", _SCHEMA_VERSION), ("job_id", job_id)],
            )
            conn.execute("COMMIT")
            meta = self._read_meta(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._release_lock(lock)
            raise JournalError(
                f"{self.path!r} is not a finalpos journal ({exc}); give a new file path"
            ) from exc
        except BaseException:
            conn.close()
            self._release_lock(lock)
            raise
        # A journal that held nothing when opened needs no per-item lookups on disk: only the
        # records of this run (still buffered, or committed by it) can answer.
        self._had_items = conn.execute("SELECT EXISTS (SELECT 1 FROM items)").fetchone()[0] == 1
        self._conn = conn
        self._lock_file = lock
        self._job_id = job_id
        self._meta = meta
        return self

    @staticmethod
    def _read_meta(conn: sqlite3.Connection) -> dict[str, str]:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if exists is None:
            return {}
        return dict(conn.execute("SELECT name, value FROM meta").fetchall())

    def _take_lock(self) -> IO[bytes] | None:
        if sys.platform == "win32":  # pragma: no cover - no fcntl on Windows
            return None
        # flock on the database file itself: independent of SQLite's own (fcntl) locks on Linux
        # and macOS, and released by the kernel when the process dies, even on SIGKILL.
        handle = open(self.path, "ab")  # noqa: SIM115 - held open for the journal's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise JournalLockedError(
                f"journal {self.path!r} is in use by another running import; wait for it to "
                "finish (or stop it) before starting this one"
            ) from exc
        return handle

    @staticmethod
    def _release_lock(handle: IO[bytes] | None) -> None:
        if handle is not None:
            handle.close()  # closing the descriptor releases the flock

    def close(self) -> None:
        """Commit what is buffered, close the file and release its lock; idempotent."""
        if self._conn is None:
            return
        try:
            self.flush()
        finally:
            self._conn.close()
            self._conn = None
            self._release_lock(self._lock_file)
            self._lock_file = None

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

    @property
    def binding(self) -> JournalBinding | None:
        """What the journal belongs to (None until the first `bind`)."""
        self.open()
        if not all(name in self._meta for name in _BINDING_FIELDS):
            return None
        return JournalBinding(**{name: self._meta[name] for name in _BINDING_FIELDS})

    def bind(self, binding: JournalBinding, *, job_id: str | None = None) -> None:
        """Tie the journal to `binding` (first use), or check that it already is.

        Raises `JournalMismatchError`, before anything is sent, when the file holds records for
        another target, credentials, operation or identity rule, or (with `job_id`) another job.
        A journal without records takes the new binding.
        """
        recorded = self.binding
        if recorded is not None and recorded != binding and not self.has_items():
            # Nothing recorded yet (a first run that could not reach the target, or was refused
            # for its credentials): there is nothing to protect, so the file follows this run.
            recorded = None
        if recorded is None:
            if job_id is not None and job_id != self.job_id and self.has_items():
                raise self._mismatch(binding, binding, ("job_id",))
            conn = self._connection()
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                [
                    *((name, getattr(binding, name)) for name in _BINDING_FIELDS),
                    *([("job_id", job_id)] if job_id is not None else []),
                ],
            )
            conn.execute("COMMIT")
            self._meta = self._read_meta(conn)
            self._job_id = self._meta["job_id"]
            return
        differs = tuple(
            name for name in _BINDING_FIELDS if getattr(recorded, name) != getattr(binding, name)
        )
        if job_id is not None and job_id != self.job_id:
            differs += ("job_id",)
        if differs:
            raise self._mismatch(recorded, binding, differs)

    def _mismatch(
        self, recorded: JournalBinding, requested: JournalBinding, differs: tuple[str, ...]
    ) -> JournalMismatchError:
        if differs == ("job_id",):
            message = (
                f"journal {self.path!r} belongs to job {self.job_id}, not to the job this run "
                "continues; use the journal that job wrote, or another file"
            )
        else:
            names = {"credentials": "API key", "identity": "identity rule"}
            what = " and ".join(names.get(name, name) for name in differs)
            message = (
                f"journal {self.path!r} was written for {recorded.describe()}; this run is "
                f"{requested.describe()}: the {what} {'differs' if len(differs) == 1 else 'differ'}"
                + (
                    f" ({recorded.identity} vs {requested.identity})"
                    if "identity" in differs
                    else ""
                )
                + ". Its records say nothing about this run: give this run its own journal file"
            )
        return JournalMismatchError(
            message, path=self.path, recorded=recorded, requested=requested, differs=differs
        )

    def _connection(self) -> sqlite3.Connection:
        self.open()
        assert self._conn is not None
        return self._conn

    # -- items -----------------------------------------------------------------------------------

    def has_items(self) -> bool:
        """True when any item has been recorded (committed or buffered)."""
        if self._pending:
            return True
        row = self._connection().execute("SELECT EXISTS (SELECT 1 FROM items)").fetchone()
        return bool(row[0])

    def lookup(self, key: str) -> JournalEntry | None:
        """What an earlier run (or this one) recorded for `key`, or None."""
        pending = self._pending.get(key)
        if pending is not None:
            return _entry(key, pending[:-1])
        self.open()
        if not self._had_items and not self._flushed_this_run:
            return None
        row = (
            self._connection()
            .execute(f"SELECT {', '.join(_ENTRY_FIELDS)} FROM items WHERE key = ?", (key,))
            .fetchone()
        )
        if row is None:
            return None
        return _entry(key, row)

    def created_ids(self, limit: int) -> list[str]:
        """Up to `limit` ids of records this journal says were created, the most recent first."""
        self.flush()
        rows = self._connection().execute(
            "SELECT created_id FROM items WHERE status = 'succeeded' AND created_id IS NOT NULL "
            "ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )
        return [row[0] for row in rows]

    def record(
        self,
        key: str,
        status: str,
        *,
        digest: str,
        idempotency_key: str,
        created_id: str | None = None,
        attempts: int = 0,
        error: str | None = None,
    ) -> None:
        """Buffer one item's outcome; committed with the next batch."""
        self._pending[key] = (
            status,
            digest,
            None,  # source_digest: derived from the previous record when committed
            created_id,
            idempotency_key,
            attempts,
            error,
            time.time(),
        )
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
        return f"Journal({self.path!r})"


_ENTRY_FIELDS = (
    "status",
    "digest",
    "source_digest",
    "created_id",
    "idempotency_key",
    "attempts",
    "error",
)


def _entry(key: str, row: tuple[Any, ...]) -> JournalEntry:
    status, digest, source_digest, created_id, idempotency_key, attempts, error = row
    return JournalEntry(
        key=key,
        status=status,
        digest=digest,
        source_digest=source_digest,
        created_id=created_id,
        idempotency_key=idempotency_key,
        attempts=attempts,
        error=error,
    )
