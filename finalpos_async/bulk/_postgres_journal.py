"""`PostgresJournal`: the bulk journal (`_journal.JournalStore`) kept in a PostgreSQL database.

Many jobs share one database, each under its job id. Three tables, made on first use in the
first schema of the connection's search_path (`?options=-csearch_path%3Dname` picks another):

    finalpos_journal_meta(name PRIMARY KEY, value)          schema_version
    finalpos_journal_jobs(job_id PRIMARY KEY, target, credentials, operation, identity,
                          created_at, updated_at)            what each job is bound to
    finalpos_journal_items(job_id, key, status, digest, source_digest, created_id,
                           idempotency_key, attempts, error, runs, updated_at,
                           PRIMARY KEY (job_id, key))        each job's items, as in SQLite

The guarantees are the SQLite journal's: an intent window is one transaction, committed (with
`synchronous_commit` on, so on the server's disk) before its requests leave; outcomes are
buffered and committed in batches. One process at a time writes a job: `bind` takes a session
advisory lock on the job id (released when the connection closes, or by the server when the
process dies), so a second writer gets `JournalLockedError`. `count_seen` counts in a temporary
table of the session (memory does not grow with the input); the same round trip reads the
item's record, so naming an item and looking it up cost one.

The store is synchronous, like the SQLite one: the engine calls the `JournalStore` methods
inline from its event loop, and a call waits for its commit before any request it guards can
leave, whichever API made it. psycopg is imported on first use (the `postgres` extra).
Every psycopg failure is a `JournalError` naming the URL without its password, and the fix.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
    job_id_for,
)
from ._leases import Lease, LeaseLostError
from ._name_filter import NameFilter
from ._postgres_text import (
    COUNT_SEEN,
    CREATE_LOCK,
    ENTRY_FIELDS,
    FENCED_UPSERT,
    NEW_NAMES_BATCH,
    SCHEMA_VERSION,
    SEEN,
    TABLES,
    UPSERT,
    WITHDRAW,
    connect,
    is_postgres_url,
    lock_key,
    mismatch_error,
    postgres_error,
    public_url,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresJournal"]

# An outcome buffered for a key: status, digest, created_id, idempotency_key, attempts, error,
# time; None for a withdrawn intent.
_Outcome = tuple[str, str, str | None, str, int, str | None, float]
_Pending = _Outcome | None


class PostgresJournal:
    """A resumable record of bulk jobs, kept in the PostgreSQL database at `url`.

    Its tables are created on first use. `bind` picks the job (the given job id, else the one
    this store is bound to, else `job_id_for(binding)`), takes its writer lock, and ties it to
    the binding. Not thread-safe: use it from one event loop (the bulk engine does).

    With a `lease` (a chunk of the job, see `ChunkBoard`), it is one of the job's many writers:
    it takes the job's lock shared (a run without a lease takes it alone, so the two never mix),
    and commits intents only while the lease holds (`LeaseLostError` otherwise: nothing of that
    window may be sent).
    """

    def __init__(
        self,
        url: str,
        *,
        batch_size: int = JOURNAL_BATCH_SIZE,
        flush_interval: float = JOURNAL_FLUSH_INTERVAL,
        lease: Lease | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        if not is_postgres_url(url):
            raise ValueError(f"a PostgreSQL journal URL starts with postgresql://, got {url!r}")
        self._url = url
        self.path = public_url(url)
        self._password = urlsplit(url).password or ""
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._lease = lease
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._job: str | None = None
        self._binding: JournalBinding | None = None
        self._pending: dict[str, _Pending] = {}
        self._last_flush = time.monotonic()
        self._had_items = True
        self._flushed = False
        # What `count_seen` just read under a name, until the next commit: (name, entry).
        self._counted: tuple[str, JournalEntry | None] | None = None
        # The names this run met (`count_seen`): a fixed-size filter (made on first use: a store
        # made only to be named costs nothing), and those met once and not yet written to the
        # session's table (at most NEW_NAMES_BATCH).
        self._names: NameFilter | None = None
        self._new_names: list[str] = []
        # This run committed a record under a name `count_seen` had not met (a caller's own
        # `record`, a `digest#n` repeat): a name met for the first time may have one then.
        self._uncounted_writes = False

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> PostgresJournal:
        """Connect, and create the tables if missing; idempotent. Returns self.

        Raises `JournalWriteError` when the database cannot be reached or written,
        `JournalDamagedError` when its journal tables are not a finalpos journal's.
        """
        if self._conn is None:
            self._conn = connect(self._url, self._prepare)
        return self

    def _prepare(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        row = conn.execute("SELECT to_regclass('finalpos_journal_items') IS NOT NULL").fetchone()
        if not (row and row[0]):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK,))
                for statement in filter(str.strip, TABLES.split(";")):
                    conn.execute(statement)  # pyright: ignore[reportArgumentType]  # a constant
        found = conn.execute(
            "SELECT value FROM finalpos_journal_meta WHERE name = 'schema_version'"
        ).fetchone()
        if found is None:
            raise JournalDamagedError.naming(self.path, "its tables hold no schema version")
        if found[0] != SCHEMA_VERSION:
            raise JournalError(
                f"journal {self.path!r} was written by another finalpos version (schema "
                f"{found[0]}, this one writes {SCHEMA_VERSION}); give this run another "
                "database (or schema: ?options=-csearch_path%3Dname)",
                path=self.path,
            )
        # The write-ahead promise needs each commit on the server's disk before it returns.
        if conn.execute("SHOW synchronous_commit").fetchone() == ("off",):
            conn.execute("SET synchronous_commit = on")
        conn.execute(SEEN)

    def close(self) -> None:
        """Commit what is buffered, close the connection (releasing the job's writer lock);
        idempotent. Raises `JournalWriteError` when the buffered outcomes cannot be written (the
        connection is closed all the same; those items stay `sending`, resolved next run)."""
        if self._conn is None:
            return
        try:
            self.flush()
        finally:
            self._pending.clear()
            self._conn.close()
            self._conn = None
            self._job = None
            self._binding = None
            self._counted = None
            self._names = None  # the session's count table went with its connection
            self._new_names.clear()

    def __enter__(self) -> PostgresJournal:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        self.open()
        assert self._conn is not None
        return self._conn

    @property
    def job_id(self) -> str | None:
        """The job this store writes (None until `bind`)."""
        return self._job

    @property
    def binding(self) -> JournalBinding | None:
        """What the job belongs to (None until `bind`)."""
        return self._binding

    # -- the job -----------------------------------------------------------------------------

    def bind(
        self,
        binding: JournalBinding,
        *,
        job_id: str | None = None,
        rotated_credentials: bool = False,
    ) -> str:
        """Pick the job (`job_id`, else the one bound already, else `job_id_for(binding)`), take
        its writer lock, and tie it to `binding` (first use) or check that it is; returns the id.

        Raises `JournalLockedError` when another process writes that job, and
        `JournalMismatchError`, before anything is sent, when the job holds records for another
        target, credentials, operation or identity rule (`rotated_credentials` accepts other
        credentials, as `Journal.bind` does). A job without records takes the new binding.
        """
        chosen = job_id or self._job or job_id_for(binding)
        conn = self._connection()
        if chosen != self._job:
            self._switch_to(conn, chosen)
        try:
            row = conn.execute(
                f"SELECT {', '.join(BINDING_FIELDS)} FROM finalpos_journal_jobs WHERE job_id = %s",
                (chosen,),
            ).fetchone()
            recorded = (
                JournalBinding(**dict(zip(BINDING_FIELDS, row, strict=True)))
                if row is not None
                else None
            )
            self._had_items = self._job_has_items(conn)
            if recorded is not None and recorded != binding and self._had_items:
                differs = recorded.differences(binding, rotated_credentials=rotated_credentials)
                if differs:
                    raise mismatch_error(self.path, chosen, recorded, binding, differs)
            if recorded != binding:
                conn.execute(
                    "INSERT INTO finalpos_journal_jobs (job_id, target, credentials, operation, "
                    "identity) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job_id) DO UPDATE SET "
                    "target = excluded.target, credentials = excluded.credentials, operation = "
                    "excluded.operation, identity = excluded.identity, updated_at = now()",
                    (chosen, *(getattr(binding, name) for name in BINDING_FIELDS)),
                )
            conn.execute("TRUNCATE pg_temp.finalpos_seen")  # a new run counts from nothing
            self._names = None
            self._new_names.clear()
            self._uncounted_writes = False
        except self._psycopg_error() as exc:
            raise postgres_error(exc, self.path, self._password, "write") from None
        self._binding = binding
        self._counted = None
        return chosen

    def _switch_to(self, conn: psycopg.Connection[tuple[Any, ...]], job: str) -> None:
        """Write `job` from now on: its lock taken (the previous job's released)."""
        self.flush()
        try:
            if self._job is not None:
                unlock = "pg_advisory_unlock_shared" if self._lease else "pg_advisory_unlock"
                conn.execute(f"SELECT {unlock}(%s)", (lock_key(self._job),))
                self._job = self._binding = None
            take = "pg_try_advisory_lock_shared" if self._lease else "pg_try_advisory_lock"
            row = conn.execute(f"SELECT {take}(%s)", (lock_key(job),)).fetchone()
            holder = None if row and row[0] else self._holder(conn, job)
        except self._psycopg_error() as exc:
            raise postgres_error(exc, self.path, self._password, "lock") from None
        if holder is not None:
            raise JournalLockedError(
                f"job {job} in journal {self.path!r} is being written by another running "
                f"import ({holder}); wait for it to finish (or stop it) before starting this "
                "one. A process that was killed releases it as its connection drops",
                path=self.path,
            )
        self._job = job

    @staticmethod
    def _holder(conn: psycopg.Connection[tuple[Any, ...]], job: str) -> str:
        """Who holds the job's lock, for the message: its backend and client, if visible."""
        key = lock_key(job)
        row = conn.execute(
            "SELECT a.pid, host(a.client_addr), a.application_name FROM pg_locks l "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 LIMIT 1",
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
        ).fetchone()
        if row is None:
            return "its holder is not visible to this user"
        pid, client, application = row
        return f"server process {pid}, client {client or 'local'}, {application or 'no name'}"

    def _job_has_items(self, conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM finalpos_journal_items WHERE job_id = %s)", (self._job,)
        ).fetchone()
        return bool(row and row[0])

    @staticmethod
    def _psycopg_error() -> type[Exception]:
        import psycopg  # loaded: a connection exists

        return psycopg.Error

    # -- items -----------------------------------------------------------------------------------

    def has_items(self) -> bool:
        """True when the job holds any item (committed or buffered)."""
        if self._pending:
            return True
        if self._job is None:
            return False
        return bool(
            self._rows(
                "SELECT EXISTS (SELECT 1 FROM finalpos_journal_items WHERE job_id = %s)",
                (self._job,),
            )[0][0]
        )

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        conn = self._connection()
        try:
            return conn.execute(sql, args).fetchall()  # pyright: ignore[reportArgumentType]  # our SQL, from constants
        except self._psycopg_error() as exc:
            raise postgres_error(exc, self.path, self._password, "read") from None

    def lookup(self, key: str) -> JournalEntry | None:
        """What an earlier run (or this one) recorded for `key` in this job, or None."""
        if key in self._pending:
            pending = self._pending[key]
            if pending is None:
                return None
            status, digest, created_id, idem, attempts, error, _ = pending
            return JournalEntry(
                key=key,
                status=status,
                digest=digest,
                source_digest=None,
                created_id=created_id,
                idempotency_key=idem,
                attempts=attempts,
                error=error,
            )
        if self._job is None or (not self._had_items and not self._flushed):
            return None
        if self._counted is not None and self._counted[0] == key:
            return self._counted[1]
        return self._read_entry(key)

    def created_ids(self, limit: int) -> list[str]:
        """Up to `limit` ids of records this job says were created, the most recent first."""
        self.flush()
        return [
            row[0]
            for row in self._rows(
                "SELECT created_id FROM finalpos_journal_items WHERE job_id = %s AND status = "
                "'succeeded' AND created_id IS NOT NULL ORDER BY updated_at DESC LIMIT %s",
                (self._job, limit),
            )
        ]

    def created_with_content(self, digest: str) -> int:
        """How many items named by their content `digest` (`digest`, `digest#2`, ...) were
        created, as far as the job's records know."""
        self.flush()
        # '#' < '$' in the "C" collation of `key`: the digest itself and its `#n` repeats.
        rows = self._rows(
            "SELECT COUNT(*) FROM finalpos_journal_items WHERE job_id = %s AND status = "
            "'succeeded' AND key >= %s AND key < %s",
            (self._job, digest, digest + "$"),
        )
        return int(rows[0][0])

    def count_seen(self, name: str) -> int:
        """How often this run named an item `name` before (0 the first time), counted in a
        temporary table of the session (memory does not grow with the input); `bind` starts a
        new count.

        A name the run's `NameFilter` has certainly not met is counted without a round trip
        (written to the table with the next batch of such names), and when the job held no
        records before this run (and this run wrote none under a name it had not counted),
        nothing can be recorded under it: `lookup` right after answers without one too.
        Otherwise one statement counts it and reads its record for `lookup`.
        """
        if self._names is None:
            self._names = NameFilter()
        if not self._names.add(name):
            self._new_names.append(name)
            if len(self._new_names) >= NEW_NAMES_BATCH:
                self._write_new_names()
            # Nothing recorded before this run, nor by it under a name it did not count first.
            fresh = not (self._had_items or self._uncounted_writes)
            self._counted = (name, None) if fresh else None
            return 0
        self._write_new_names()  # the table must hold every name met before this one
        conn = self._connection()
        try:
            row = conn.execute(COUNT_SEEN, {"name": name, "job": self._job}).fetchone()
        except self._psycopg_error() as exc:
            raise postgres_error(exc, self.path, self._password, "write") from None
        assert row is not None
        self._counted = (name, None if row[1] is None else _entry(name, row[1:]))
        return int(row[0])

    def _write_new_names(self) -> None:
        if not self._new_names:
            return
        conn = self._connection()
        try:
            conn.execute(
                "INSERT INTO pg_temp.finalpos_seen (name, n) SELECT unnest(%s::text[]), 0",
                (self._new_names,),
            )
        except self._psycopg_error() as exc:
            raise postgres_error(exc, self.path, self._password, "write") from None
        self._new_names.clear()

    def _read_entry(self, key: str) -> JournalEntry | None:
        rows = self._rows(
            f"SELECT {ENTRY_FIELDS} FROM finalpos_journal_items WHERE job_id = %s AND key = %s",
            (self._job, key),
        )
        return _entry(key, rows[0]) if rows else None

    def record_intents(self, intents: Iterable[Intent]) -> None:
        """Commit that these items are about to be sent, durably, before any of them is.

        One transaction, which also commits the outcomes buffered so far (first: an intent is
        never overwritten by an older outcome). Raises `JournalWriteError`: then none of them
        may be sent.
        """
        now = time.time()
        window = {
            i.key: (SENDING, i.digest, None, i.idempotency_key, 0, None, now) for i in intents
        }
        self._commit(window)
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
        """Forget the intent of an item that was not sent after all (buffered like an outcome)."""
        self._pending[key] = None
        if len(self._pending) >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        """Commit every buffered outcome now (one transaction).

        Raises `JournalWriteError` when they cannot be written; they are dropped then (their
        items stay `sending` in the database: unknown to the next run, never new).
        """
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        try:
            self._commit({})
        finally:
            self._pending.clear()

    def _commit(self, intents: Mapping[str, _Outcome]) -> None:
        self._last_flush = time.monotonic()
        outcomes = {k: v for k, v in self._pending.items() if v is not None}
        withdrawn = [k for k, v in self._pending.items() if v is None]
        if not (outcomes or withdrawn or intents):
            return
        if self._job is None:
            raise JournalError(
                f"journal {self.path!r}: bind() it to a job before recording items", path=self.path
            )
        conn = self._connection()
        self._counted = None  # what `count_seen` read may change now
        if not self._uncounted_writes:
            names = self._names  # None: no name counted yet, so none of these keys was
            self._uncounted_writes = names is None or any(
                key not in names for batch in (outcomes, withdrawn, intents) for key in batch
            )
        written = None
        try:
            # One round trip: BEGIN, the statements and COMMIT go out together (pipeline mode),
            # and the commit's answer (the server has it on disk) is awaited before returning.
            with conn.pipeline(), conn.transaction():
                if outcomes:
                    conn.execute(UPSERT, _columns(self._job, outcomes))
                if withdrawn:
                    conn.execute(WITHDRAW, {"job": self._job, "k": withdrawn})
                if intents:
                    sql, args = self._intents(self._job, intents)
                    written = conn.execute(sql, args)  # pyright: ignore[reportArgumentType]  # our SQL, from constants
        except self._psycopg_error() as exc:
            raise postgres_error(exc, self.path, self._password, "write") from None
        self._flushed = True
        if written is not None and self._lease is not None and written.rowcount != len(intents):
            raise LeaseLostError(
                f"{self._lease.label} in journal {self.path!r} is no longer this worker's (its "
                "lease ran out or is about to): its rows are not sent from here",
                path=self.path,
            )

    def _intents(self, job: str, intents: Mapping[str, _Outcome]) -> tuple[str, dict[str, Any]]:
        """The statement that writes `intents`: fenced by the lease, if there is one."""
        args = _columns(job, intents)
        lease = self._lease
        if lease is None:
            return UPSERT, args
        fence = {"work": lease.work_id, "chunk": lease.chunk, "token": lease.token}
        return FENCED_UPSERT, {**args, **fence, "margin": lease.margin}

    def counts(self) -> dict[str, int]:
        """How many keys the job holds per status (committed and buffered)."""
        self.flush()
        if self._job is None:
            return {}
        rows = self._rows(
            "SELECT status, COUNT(*) FROM finalpos_journal_items WHERE job_id = %s GROUP BY status",
            (self._job,),
        )
        return {status: int(n) for status, n in rows}

    def __repr__(self) -> str:
        return f"PostgresJournal({self.path!r})"


def _columns(job: str, rows: Mapping[str, _Outcome]) -> dict[str, Any]:
    """The upsert's parameters: one array per column (one statement for the whole window)."""
    columns: Iterator[list[Any]] = (list(column) for column in zip(*rows.values(), strict=True))
    s, d, c, i, a, e, u = columns
    return {"job": job, "k": list(rows), "s": s, "d": d, "c": c, "i": i, "a": a, "e": e, "u": u}


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
