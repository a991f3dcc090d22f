"""Leased chunks: any number of workers share one import job through its PostgreSQL journal.

A job's rows are split into `chunks` by a hash of each row's identity (`chunk_of`, the rule
`--shard` uses): every worker agrees on the rows of a chunk without reading the whole input
first, without a coordinator, and whether it reads the one shared file or its own copy. (Row
ranges would need one shared file and a first pass that finds where its rows begin; a worker
would then trust byte offsets in a file that may have changed.) The price: a worker reads the
whole input to pick its chunk's rows, a cheap pass next to sending them.

`ChunkBoard` keeps one row per chunk beside the journal's tables: `open`, `leased` (owner,
fencing token, lease end) or `done`. A worker `claim`s a chunk (an open one, or one whose lease
ran out: its worker died or hangs), `renew`s the lease while it works (`keep_lease`) and
`finish`es it. Each claim raises the chunk's token; the journal of a leased chunk
(`PostgresJournal(url, lease=...)`) commits intents only while that token holds the lease with
at least `Lease.margin` seconds left, so a worker that lost its lease cannot send anything new,
and `keep_lease` cancels what it has in flight before its lease can run out. A worker that
takes a chunk over finds the rows sent under the old lease as intents with no outcome: unknown,
resolved as after any crash (looked up before anything is sent again).

Among several jobs, `claim` serves the one with the fewest live leases first (then the oldest):
a big job does not starve a small one that joins later.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .._constants import DEFAULT_LEASE
from ._journal import JournalError
from ._postgres_text import (
    connect,
    is_postgres_url,
    postgres_error,
    public_url,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "ChunkBoard",
    "ChunkStatus",
    "Lease",
    "LeaseLostError",
    "Work",
    "WorkStatus",
    "chunk_of",
    "worker_name",
]

TABLES = """
CREATE TABLE IF NOT EXISTS finalpos_work_jobs (
    work_id text PRIMARY KEY,
    chunks integer NOT NULL,
    tenant text NOT NULL,
    description jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS finalpos_work_chunks (
    work_id text NOT NULL REFERENCES finalpos_work_jobs ON DELETE CASCADE,
    chunk integer NOT NULL,
    state text NOT NULL DEFAULT 'open',
    owner text,
    token bigint NOT NULL DEFAULT 0,
    lease_until timestamptz,
    claims integer NOT NULL DEFAULT 0,
    started_at timestamptz,
    done_at timestamptz,
    outcomes jsonb,
    PRIMARY KEY (work_id, chunk)
)
"""
_CREATE_LOCK = 0x66696E616C776B73  # "finalwks": two workers creating the tables at once

# The claimable chunk of the job with the fewest live leases (then the oldest job), locked so
# that two claimers never take the same one (SKIP LOCKED: the second takes the next).
_CLAIM = """
WITH busy AS (
    SELECT work_id, count(*) FILTER (WHERE state = 'leased' AND lease_until > now()) AS n
    FROM finalpos_work_chunks WHERE %(all)s OR work_id = ANY(%(ids)s::text[])
    GROUP BY work_id
), pick AS (
    SELECT c.work_id, c.chunk FROM finalpos_work_chunks c
    JOIN busy b ON b.work_id = c.work_id JOIN finalpos_work_jobs j ON j.work_id = c.work_id
    WHERE c.state = 'open' OR (c.state = 'leased' AND c.lease_until <= now())
    ORDER BY b.n, j.created_at, c.work_id, c.chunk
    LIMIT 1 FOR UPDATE OF c SKIP LOCKED
)
UPDATE finalpos_work_chunks c SET state = 'leased', owner = %(owner)s, token = c.token + 1,
    lease_until = now() + make_interval(secs => %(secs)s), claims = c.claims + 1,
    started_at = COALESCE(c.started_at, now())
FROM pick, finalpos_work_jobs j
WHERE c.work_id = pick.work_id AND c.chunk = pick.chunk AND j.work_id = c.work_id
RETURNING c.work_id, c.chunk, j.chunks, c.token, c.claims, j.tenant, j.description
"""
_RENEW = """
UPDATE finalpos_work_chunks SET lease_until = now() + make_interval(secs => %(secs)s)
WHERE work_id = %(id)s AND chunk = %(chunk)s AND token = %(token)s AND state = 'leased'
    AND lease_until > now()
"""
_FINISH = """
UPDATE finalpos_work_chunks SET state = 'done', done_at = now(), lease_until = NULL,
    outcomes = %(outcomes)s::jsonb
WHERE work_id = %(id)s AND chunk = %(chunk)s AND token = %(token)s AND state = 'leased'
"""
_RELEASE = """
UPDATE finalpos_work_chunks SET state = 'open', owner = NULL, lease_until = NULL
WHERE work_id = %(id)s AND chunk = %(chunk)s AND token = %(token)s AND state = 'leased'
"""
# Only a job whose chunks are all done, in one statement (two workers may try at once).
_REOPEN = """
WITH job AS (
    UPDATE finalpos_work_jobs SET description = %(description)s::jsonb
    WHERE work_id = %(id)s AND NOT EXISTS (
        SELECT 1 FROM finalpos_work_chunks WHERE work_id = %(id)s AND state <> 'done')
    RETURNING work_id
)
UPDATE finalpos_work_chunks c SET state = 'open', owner = NULL, lease_until = NULL,
    outcomes = NULL, started_at = NULL, done_at = NULL
FROM job WHERE c.work_id = job.work_id
"""
_CHUNKS = """
SELECT chunk, state, owner, EXTRACT(EPOCH FROM lease_until - now()), claims,
    EXTRACT(EPOCH FROM started_at), EXTRACT(EPOCH FROM done_at), outcomes
FROM finalpos_work_chunks WHERE work_id = %s ORDER BY chunk
"""


def chunk_of(identity: str, chunks: int) -> int:
    """The chunk (1 to `chunks`) of the row with this identity: the first 8 bytes of its
    SHA-256, modulo `chunks` (the same on every machine, Python version and run)."""
    digest = hashlib.sha256(identity.encode()).digest()
    return 1 + int.from_bytes(digest[:8], "big") % chunks


def worker_name() -> str:
    """`host:pid:random`: who holds a lease, as `finalpos jobs` shows it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseLostError(JournalError):
    """This worker no longer holds its chunk (its lease ran out, and another worker may have
    taken it over): nothing more of the chunk is sent from here; its new owner finishes it."""


def _check_chunks(_work: object, _attribute: object, value: int) -> None:
    if not 1 <= value <= 100_000:
        raise ValueError(f"chunks must be between 1 and 100000, got {value!r}")


@attrs.frozen(kw_only=True)
class Work:
    """A job as its workers share it: its id, how many chunks its rows fall into, whose it is
    (`tenant`: a name, never a key) and what a worker needs to run it (`description`, JSON,
    no secrets)."""

    work_id: str
    chunks: int = attrs.field(validator=_check_chunks)
    tenant: str = ""
    description: Mapping[str, Any] = attrs.field(factory=lambda: dict[str, Any]())


@attrs.frozen(kw_only=True)
class Lease:
    """One worker's hold on one chunk.

    `token` rises with every claim of the chunk (the journal writes intents only under the
    current one); `expires` is this process's `time.monotonic()` by which the lease has run out
    (measured from before the claim or renewal was asked, so never later than the database's
    end); nothing may be in flight after `expires - margin`.
    """

    work_id: str
    chunk: int
    chunks: int
    owner: str
    token: int
    seconds: float
    margin: float
    expires: float
    claims: int
    tenant: str = ""
    description: Mapping[str, Any] = attrs.field(factory=lambda: dict[str, Any]())

    def owns(self, identity: str) -> bool:
        """The row with this identity is in this lease's chunk."""
        return chunk_of(identity, self.chunks) == self.chunk

    @property
    def taken_over(self) -> bool:
        """The chunk was claimed before (a worker died or gave it back): its rows may have
        intents with no outcome, which the run resolves first."""
        return self.claims > 1

    @property
    def label(self) -> str:
        """`chunk 3/16 of job 1f2e…`, for messages."""
        return f"chunk {self.chunk}/{self.chunks} of job {self.work_id[:12]}"


@attrs.frozen(kw_only=True)
class ChunkStatus:
    """One chunk as `ChunkBoard.status` reads it: `owner` is the worker that holds it (or
    finished it); `lease_left` is negative once expired."""

    chunk: int
    state: str
    owner: str | None
    lease_left: float | None
    claims: int
    started_at: float | None
    done_at: float | None
    outcomes: Mapping[str, int]

    @property
    def expired(self) -> bool:
        """Leased, but its lease ran out: the next claim takes it over."""
        return self.state == "leased" and (self.lease_left is None or self.lease_left <= 0)


@attrs.frozen(kw_only=True)
class WorkStatus:
    """A job's chunks, as `ChunkBoard.status` reads them."""

    work: Work
    created_at: float
    chunks: tuple[ChunkStatus, ...]

    @property
    def done(self) -> bool:
        """Every chunk is done."""
        return all(c.state == "done" for c in self.chunks)

    def outcomes(self) -> dict[str, int]:
        """Rows per outcome over the done chunks."""
        total: dict[str, int] = {}
        for chunk in self.chunks:
            for name, n in chunk.outcomes.items():
                total[name] = total.get(name, 0) + n
        return total

    def next_expiry(self) -> float | None:
        """Seconds until the first live lease of another worker runs out (None: none is live)."""
        left = [
            c.lease_left for c in self.chunks if c.state == "leased" and c.lease_left is not None
        ]
        return min((max(0.0, s) for s in left), default=None)


class ChunkBoard:
    """The chunks of the jobs in the PostgreSQL database at `url` (see the module).

    Synchronous, with a connection of its own (not the journal's); `keep_lease` calls `renew`
    from a thread, so a slow database does not hold up the event loop. Tables are created on
    first use.
    """

    def __init__(self, url: str, *, owner: str | None = None) -> None:
        if not is_postgres_url(url):
            raise ValueError(f"leased chunks need a postgresql:// journal URL, got {url!r}")
        self._url = url
        self.path = public_url(url)
        self.owner = owner or worker_name()
        """Who this board claims as (`host:pid:random` unless given)."""
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def open(self) -> ChunkBoard:
        """Connect and create the tables if missing (idempotent); returns self."""
        if self._conn is None:
            self._conn = connect(self._url, _create_tables)
        return self

    def close(self) -> None:
        """Close the connection (idempotent); leases held stay until they run out."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ChunkBoard:
        return self.open()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _error(self, exc: BaseException, doing: str) -> JournalError:
        from urllib.parse import urlsplit

        return postgres_error(exc, self.path, urlsplit(self._url).password or "", doing)

    def _run(self, sql: str, args: Mapping[str, Any] | Sequence[Any], doing: str) -> Any:
        import psycopg

        self.open()
        assert self._conn is not None
        try:
            return self._conn.execute(sql, args)  # pyright: ignore[reportArgumentType]  # constants
        except psycopg.Error as exc:
            raise self._error(exc, doing) from None

    def publish(self, work: Work) -> Work:
        """Make `work` known (its chunks open) unless it is already; returns the job as
        recorded. Raises `JournalError` when it is recorded with another number of chunks."""
        self._run(
            "INSERT INTO finalpos_work_jobs (work_id, chunks, tenant, description) "
            "VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (work_id) DO NOTHING",
            (work.work_id, work.chunks, work.tenant, json.dumps(dict(work.description))),
            "write",
        )
        self._run(
            "INSERT INTO finalpos_work_chunks (work_id, chunk) SELECT %s, generate_series(1, %s) "
            "ON CONFLICT DO NOTHING",
            (work.work_id, work.chunks),
            "write",
        )
        recorded = self.status(work.work_id).work
        if recorded.chunks != work.chunks:
            raise JournalError(
                f"job {work.work_id} in journal {self.path!r} is split into {recorded.chunks} "
                f"chunks, not {work.chunks}: give the same number (--chunks {recorded.chunks}) "
                "to every worker of a job",
                path=self.path,
            )
        return recorded

    def reopen(self, work: Work) -> bool:
        """Open every chunk of a job that is done again, now described as `work` says (its
        input changed: rows added since are imported, those imported before are skipped by the
        journal); False (nothing changed) when a chunk is not done."""
        reopened = self._run(
            _REOPEN,
            {"id": work.work_id, "description": json.dumps(dict(work.description))},
            "write",
        ).rowcount
        return bool(reopened)

    def claim(
        self,
        *,
        work_ids: Sequence[str] | None = None,
        seconds: float = DEFAULT_LEASE,
        margin: float | None = None,
    ) -> Lease | None:
        """Lease a chunk of one of `work_ids` (None: of any job) for `seconds`, or None when
        none is open or expired. `margin` (default a third of `seconds`) is how long before
        the lease ends its worker stops having anything in flight."""
        if seconds <= 0:
            raise ValueError(f"a lease lasts more than 0 seconds, got {seconds!r}")
        margin = seconds / 3 if margin is None else margin
        asked = time.monotonic()
        row = self._run(
            _CLAIM,
            {
                "all": work_ids is None,
                "ids": list(work_ids or ()),
                "owner": self.owner,
                "secs": seconds,
            },
            "claim a chunk in",
        ).fetchone()
        if row is None:
            return None
        work_id, chunk, chunks, token, claims, tenant, description = row
        return Lease(
            work_id=work_id,
            chunk=chunk,
            chunks=chunks,
            owner=self.owner,
            token=token,
            seconds=seconds,
            margin=margin,
            expires=asked + seconds,
            claims=claims,
            tenant=tenant,
            description=description,
        )

    def renew(self, lease: Lease) -> Lease:
        """The lease for another `lease.seconds`; `LeaseLostError` when it is no longer this
        worker's (it ran out, and the chunk may have been taken over)."""
        asked = time.monotonic()
        args = {
            "id": lease.work_id,
            "chunk": lease.chunk,
            "token": lease.token,
            "secs": lease.seconds,
        }
        if self._run(_RENEW, args, "renew a lease in").rowcount != 1:
            raise self._lost(lease)
        return attrs.evolve(lease, expires=asked + lease.seconds)

    def finish(self, lease: Lease, outcomes: Mapping[str, int]) -> None:
        """Mark the chunk done, with its rows per outcome; `LeaseLostError` when it is no
        longer this worker's (its new owner finishes it)."""
        args = {
            "id": lease.work_id,
            "chunk": lease.chunk,
            "token": lease.token,
            "outcomes": json.dumps(dict(outcomes)),
        }
        if self._run(_FINISH, args, "write").rowcount != 1:
            raise self._lost(lease)

    def release(self, lease: Lease) -> None:
        """Give the chunk back (open again at once), if it is still this worker's."""
        args = {"id": lease.work_id, "chunk": lease.chunk, "token": lease.token}
        self._run(_RELEASE, args, "write")

    def _lost(self, lease: Lease) -> LeaseLostError:
        return LeaseLostError(
            f"{lease.label} in journal {self.path!r} is no longer this worker's: its lease ran "
            "out, and another worker takes it over (rows sent from here are looked up there "
            "before anything is sent again)",
            path=self.path,
        )

    def status(self, work_id: str) -> WorkStatus:
        """The job and its chunks; `JournalError` when there is no such job."""
        job = self._run(
            "SELECT chunks, tenant, description, EXTRACT(EPOCH FROM created_at) "
            "FROM finalpos_work_jobs WHERE work_id = %s",
            (work_id,),
            "read",
        ).fetchone()
        if job is None:
            raise JournalError(
                f"journal {self.path!r} has no job {work_id!r}: `finalpos jobs --journal URL` "
                "lists the jobs it has",
                path=self.path,
            )
        chunks, tenant, description, created = job
        rows = self._run(_CHUNKS, (work_id,), "read").fetchall()
        return WorkStatus(
            work=Work(work_id=work_id, chunks=chunks, tenant=tenant, description=description),
            created_at=float(created),
            chunks=tuple(_chunk_status(row) for row in rows),
        )

    def jobs(self) -> list[str]:
        """The ids of every job, the newest first."""
        rows = self._run(
            "SELECT work_id FROM finalpos_work_jobs ORDER BY created_at DESC", (), "read"
        ).fetchall()
        return [row[0] for row in rows]

    def __repr__(self) -> str:
        return f"ChunkBoard({self.path!r}, owner={self.owner!r})"


def _create_tables(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
        for statement in filter(str.strip, TABLES.split(";")):
            conn.execute(statement)  # pyright: ignore[reportArgumentType]  # a constant


def _chunk_status(row: tuple[Any, ...]) -> ChunkStatus:
    chunk, state, owner, left, claims, started, done, outcomes = row
    return ChunkStatus(
        chunk=chunk,
        state=state,
        owner=owner,
        lease_left=None if left is None else float(left),
        claims=claims,
        started_at=None if started is None else float(started),
        done_at=None if done is None else float(done),
        outcomes=dict(outcomes or {}),
    )
