"""`Journal`: the bulk journal (`_journal.JournalStore`) kept in a SQLite file.

Layout (two tables, WAL mode so another process can read progress while a run writes):

    meta(name PRIMARY KEY, value)   schema_version, job_id, and the binding: target,
                                    credentials (a fingerprint), operation, identity rule
    items(key PRIMARY KEY, status, digest, source_digest, created_id, idempotency_key,
          attempts, error, runs, updated_at)

Every commit is synced to disk (`synchronous=FULL`): an intent window before its requests
leave, and each batch of outcomes (every `batch_size` records or `flush_interval` seconds, and
on close; one commit per item would cap a run at the disk's fsync rate).

`digest` is a hash of the content last sent under `key`; `source_digest` is the content it first
failed with, when it was fixed (in a failed-rows file, say) and sent again: the file it came from
still holds that version, and it is the same row. A row whose key is journaled with neither digest
has changed since, and is never skipped or sent silently.

A full disk or a read-only location is a `JournalWriteError`; a file that is empty, cut short or
not a journal a `JournalDamagedError`; each names the file and the fix. One process at a time may
write a journal: a second one gets `JournalLockedError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from collections.abc import Generator, Iterable
from types import TracebackType
from typing import IO, Any

from .._constants import JOURNAL_BATCH_SIZE, JOURNAL_FLUSH_INTERVAL
from ._journal import (
    BINDING_FIELDS,
    SENDING,
    Intent,
    JournalBinding,
    JournalDamagedError,
    JournalEntry,
    JournalError,
    JournalLockedError,
    JournalMismatchError,
    JournalWriteError,
    job_id_for,
)
from ._journal_file import create_whole, lock_writer

__all__ = ["Journal"]

_SCHEMA_VERSION = "3"
# Version 2 journals have no intents (no `sending` rows): they are read as they are and
# upgraded in place.
_UPGRADABLE = ("2",)

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
    runs = items.runs + (excluded.status != 'sending'),
    updated_at = excluded.updated_at
"""

_SEEN = "CREATE TEMP TABLE IF NOT EXISTS seen (name TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID"
# The count, and whether the file holds a record under that name: the same statement tells
# `lookup` that a name met for the first time has nothing to read (no SELECT per new item).
_COUNT_SEEN = """
INSERT INTO temp.seen (name, n) VALUES (:name, 0)
ON CONFLICT(name) DO UPDATE SET n = n + 1
RETURNING n, EXISTS (SELECT 1 FROM main.items WHERE key = :name)
"""


def _initialize(conn: sqlite3.Connection) -> None:
    """The tables (if missing) and this schema version, inside the caller's transaction."""
    for statement in filter(str.strip, _SCHEMA.split(";")):
        conn.execute(statement)
    conn.execute(
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('schema_version', ?)",
        (_SCHEMA_VERSION,),
    )


_Pending = tuple[str, str, str | None, str | None, str, int, str | None, float]
# A buffered withdrawal (`Journal.withdraw`): the row goes when the buffer is committed.
_WITHDRAWN: _Pending = ("", "", None, None, "", 0, None, 0.0)


class Journal:
    """A resumable record of one bulk job, kept in the SQLite file at `path`.

    The file is created on first use. Its `job_id` (stored in the file by the first `bind`) is
    part of every item's idempotency key, so a re-run of the same job sends the same keys.
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
        self._meta: dict[str, str] = {}
        self._pending: dict[str, _Pending] = {}
        self._last_flush = time.monotonic()
        self._had_items = True
        self._flushed_this_run = False
        self._absent: str | None = None  # a name `count_seen` just found no record under

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> Journal:
        """Open (creating if needed) the file and take its writer lock; idempotent. Returns self.

        Raises `JournalDamagedError` for a file that is empty, cut short or not a journal,
        `JournalWriteError` when it cannot be created or written, `JournalLockedError` when
        another process writes it.
        """
        if self._conn is not None:
            return self
        if os.path.isdir(self.path):
            raise JournalError(
                f"journal {self.path!r} is a directory; give a file path", path=self.path
            )
        existed = os.path.exists(self.path)
        if existed and os.path.getsize(self.path) == 0:
            raise self._damaged("it is empty (0 bytes)")
        try:
            if not existed:
                create_whole(self.path, _initialize)
            lock = lock_writer(self.path)
        except BlockingIOError as exc:
            raise JournalLockedError(
                f"journal {self.path!r} is in use by another running import; wait for it to "
                "finish (or stop it) before starting this one",
                path=self.path,
            ) from exc
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc, "create") from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=5000")
            meta = self._read_meta(conn)
            if not meta:
                raise self._damaged("it is an SQLite database, but not a finalpos journal")
            version = meta.get("schema_version")
            if version is not None and version != _SCHEMA_VERSION and version not in _UPGRADABLE:
                raise JournalError(
                    f"journal {self.path!r} was written by another finalpos version (schema "
                    f"{version}, this one writes {_SCHEMA_VERSION}); give this run a new journal "
                    "file",
                    path=self.path,
                )
            problem = conn.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise self._damaged(f"SQLite finds it damaged: {problem}")
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: every commit (an intent window, an outcome batch) is synced to disk before
            # the request it guards leaves, so even a power cut cannot lose an intent.
            conn.execute("PRAGMA synchronous=FULL")
            with self._transaction(conn):
                _initialize(conn)  # upgrades a schema 2 file in place
            meta = self._read_meta(conn)
            self._had_items = conn.execute("SELECT EXISTS (SELECT 1 FROM items)").fetchone()[0] == 1
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            self._release_lock(lock)
            raise self._error(exc, "open") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            self._release_lock(lock)
            raise
        self._conn = conn
        self._lock_file = lock
        self._meta = meta
        return self

    def _damaged(self, why: str) -> JournalDamagedError:
        return JournalDamagedError.naming(self.path, why)

    def _error(self, exc: BaseException, doing: str) -> JournalError:
        """A SQLite or OS failure as a typed error naming the file and the fix."""
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text
        ):
            return self._damaged(text)
        full = exc.errno == errno.ENOSPC if isinstance(exc, OSError) else "disk is full" in text
        readonly = (
            exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT)
            if isinstance(exc, OSError)
            else any(word in text for word in ("readonly", "read-only", "unable to open"))
        )
        return JournalWriteError.naming(self.path, doing, text, full=full, readonly=readonly)

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection) -> Generator[None, None, None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (a full disk does): a second rollback would
            # raise "no transaction is active" and hide the real cause.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _read_meta(conn: sqlite3.Connection) -> dict[str, str]:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if exists is None:
            return {}
        return dict(conn.execute("SELECT name, value FROM meta").fetchall())

    @staticmethod
    def _release_lock(handle: IO[bytes] | None) -> None:
        if handle is not None:
            handle.close()  # closing the descriptor releases the flock

    def close(self) -> None:
        """Commit what is buffered, close the file and release its lock; idempotent.

        Raises `JournalWriteError` when the buffered outcomes cannot be written (the file is
        closed all the same; those items stay `sending` in it and are resolved next run).
        """
        if self._conn is None:
            return
        try:
            self.flush()
        finally:
            self._pending.clear()
            self._conn.close()
            self._conn = None
            self._absent = None  # another process may write the file before it is reopened
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
    def job_id(self) -> str | None:
        """The job's identity (None until the first `bind`)."""
        self.open()
        return self._meta.get("job_id")

    @property
    def binding(self) -> JournalBinding | None:
        """What the journal belongs to (None until the first `bind`)."""
        self.open()
        if not all(name in self._meta for name in BINDING_FIELDS):
            return None
        return JournalBinding(**{name: self._meta[name] for name in BINDING_FIELDS})

    def bind(
        self,
        binding: JournalBinding,
        *,
        job_id: str | None = None,
        rotated_credentials: bool = False,
    ) -> str:
        """Tie the journal to `binding` (first use), or check that it already is; returns the
        job id (`job_id`, else the one recorded, else `job_id_for(binding)`).

        Raises `JournalMismatchError`, before anything is sent, when the file holds records for
        another target, credentials, operation or identity rule, or (with `job_id`) another job.
        `rotated_credentials` accepts other credentials for the same target (the API key was
        rotated): the file then records the new fingerprint. A journal without records takes the
        new binding.
        """
        self._new_count()
        recorded = self.binding
        if recorded is not None and recorded != binding and not self.has_items():
            # Nothing recorded yet (a first run that could not reach the target, or was refused
            # for its credentials): there is nothing to protect, so the file follows this run.
            recorded = None
        if recorded is not None:
            differs = recorded.differences(binding, rotated_credentials=rotated_credentials)
            if job_id is not None and job_id != self.job_id:
                differs += ("job_id",)
            if differs:
                raise self._mismatch(recorded, binding, differs)
            if recorded == binding:
                assert self.job_id is not None
                return self.job_id
        elif job_id is not None and self.job_id not in (None, job_id) and self.has_items():
            raise self._mismatch(binding, binding, ("job_id",))
        chosen = job_id or self._meta.get("job_id") or job_id_for(binding)
        conn = self._connection()
        try:
            with self._transaction(conn):
                conn.executemany(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                    [
                        *((name, getattr(binding, name)) for name in BINDING_FIELDS),
                        ("job_id", chosen),
                    ],
                )
        except sqlite3.Error as exc:
            raise self._error(exc, "write") from exc
        self._meta = self._read_meta(conn)
        return chosen

    def _new_count(self) -> None:
        """A new run: `count_seen` starts from nothing."""
        conn = self._connection()
        try:
            conn.execute(_SEEN)
            conn.execute("DELETE FROM temp.seen")
        except sqlite3.Error as exc:
            raise self._error(exc, "write") from exc

    def _mismatch(
        self, recorded: JournalBinding, requested: JournalBinding, differs: tuple[str, ...]
    ) -> JournalMismatchError:
        if differs == ("job_id",):
            message = (
                f"journal {self.path!r} belongs to job {self.job_id}, not to the job this run "
                "continues; use the journal that job wrote, or another file"
            )
        elif differs == ("credentials",):
            message = (
                f"journal {self.path!r} was written for {recorded.describe()}; this run uses "
                f"another API key (…{requested.credentials[:8]}) for the same target. If the key "
                "was rotated (the same account), continue this journal with the new key "
                "(--rotated-key; rotated_credentials=True); if it is another account, give this "
                "run its own journal file"
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
        row = self._read("SELECT EXISTS (SELECT 1 FROM items)").fetchone()
        return bool(row[0])

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._connection().execute(sql, args)
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from exc

    def lookup(self, key: str) -> JournalEntry | None:
        """What an earlier run (or this one) recorded for `key`, or None."""
        pending = self._pending.get(key)
        if pending is _WITHDRAWN:
            return None
        if pending is not None:
            return _entry(key, pending[:-1])
        self.open()
        if not self._had_items and not self._flushed_this_run:
            return None
        if key == self._absent:
            return None  # not in the file when it was just counted (nothing committed since)
        row = self._read(f"SELECT {_ENTRY_FIELDS} FROM items WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return _entry(key, row)

    def created_ids(self, limit: int) -> list[str]:
        """Up to `limit` ids of records this journal says were created, the most recent first."""
        self.flush()
        rows = self._read(
            "SELECT created_id FROM items WHERE status = 'succeeded' AND created_id IS NOT NULL "
            "ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )
        return [row[0] for row in rows]

    def created_with_content(self, digest: str) -> int:
        """How many items named by their content `digest` (`digest`, `digest#2`, ...) were
        created, as far as the journal knows."""
        self.flush()
        # '#' < '$': the range holds the digest itself and its `#n` repeats, nothing else.
        row = self._read(
            "SELECT COUNT(*) FROM items WHERE status = 'succeeded' AND key >= ? AND key < ?",
            (digest, digest + "$"),
        ).fetchone()
        return int(row[0])

    def count_seen(self, name: str) -> int:
        """How often this run named an item `name` before (0 the first time).

        Kept in a temporary table of this connection (on disk past SQLite's page cache, never
        synced), so memory does not grow with the input; `bind` starts a new count. The same
        statement notes whether the file holds a record under `name`: a `lookup` of it right
        after (the engine's, for an item it has just named) has nothing to read when not.
        """
        try:
            count, recorded = self._connection().execute(_COUNT_SEEN, {"name": name}).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, "write") from exc
        self._absent = None if recorded else name
        return int(count)

    def record_intents(self, intents: Iterable[Intent]) -> None:
        """Commit that these items are about to be sent, durably, before any of them is.

        One transaction (group commit), which also commits the outcomes buffered so far, so an
        intent is never overwritten by an older outcome. Raises `JournalWriteError`: then none
        of them may be sent.
        """
        now = time.time()
        rows = [(key, *values) for key, values in self._pending.items()]
        rows += [
            (i.key, SENDING, i.digest, None, None, i.idempotency_key, 0, None, now) for i in intents
        ]
        self._commit(rows)
        self._pending.clear()

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
        """Buffer one item's outcome; committed with the next batch (or the next intents)."""
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

    def withdraw(self, key: str) -> None:
        """Forget the intent of an item that was not sent after all (buffered like an outcome):
        the journal says nothing about it again, as before its intent."""
        self._pending[key] = _WITHDRAWN
        if len(self._pending) >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        """Commit every buffered outcome now (one transaction).

        Raises `JournalWriteError` when they cannot be written; they are dropped then (their
        items stay `sending` in the file: unknown to the next run, never new).
        """
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        rows = [(key, *values) for key, values in self._pending.items()]
        try:
            self._commit(rows)
        finally:
            self._pending.clear()

    def _commit(self, rows: list[tuple[Any, ...]]) -> None:
        self._last_flush = time.monotonic()
        if not rows:
            return
        conn = self._connection()
        self._absent = None  # what `count_seen` found may change now
        try:
            with self._transaction(conn):
                conn.executemany(_UPSERT, (row for row in rows if row[1] != _WITHDRAWN[0]))
                conn.executemany(
                    f"DELETE FROM items WHERE key = ? AND status = '{SENDING}'",
                    ((row[0],) for row in rows if row[1] == _WITHDRAWN[0]),
                )
        except sqlite3.Error as exc:
            raise self._error(exc, "write") from exc
        self._flushed_this_run = True

    def counts(self) -> dict[str, int]:
        """How many keys the journal holds per status (committed and buffered)."""
        self.flush()
        return dict(self._read("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall())

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"


# JournalEntry's fields after its key, in the order `_entry` reads them.
_ENTRY_FIELDS = "status, digest, source_digest, created_id, idempotency_key, attempts, error"


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
