"""The PostgreSQL journal's tables and statements, its URLs, its connections and its errors'
words (for `_postgres_journal` and `_leases`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .._constants import JOURNAL_CONNECT_TIMEOUT
from ._journal import (
    SENDING,
    JournalBinding,
    JournalDamagedError,
    JournalError,
    JournalMismatchError,
    JournalWriteError,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "COUNT_SEEN",
    "CREATE_LOCK",
    "ENTRY_FIELDS",
    "FENCED_UPSERT",
    "INSTALL_HINT",
    "NEW_NAMES_BATCH",
    "SCHEMA_VERSION",
    "SEEN",
    "TABLES",
    "UPSERT",
    "WITHDRAW",
    "connect",
    "connect_defaults",
    "is_postgres_url",
    "lock_key",
    "mismatch_error",
    "postgres_error",
    "public_url",
]

INSTALL_HINT = "pip install 'finalpos[postgres]'"
# Names met once are written to the session's count table this many at a time (one statement).
NEW_NAMES_BATCH = 1000
_SCHEMES = ("postgresql://", "postgres://")
SCHEMA_VERSION = "1"

TABLES = """
CREATE TABLE IF NOT EXISTS finalpos_journal_meta (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS finalpos_journal_jobs (
    job_id text PRIMARY KEY,
    target text NOT NULL,
    credentials text NOT NULL,
    operation text NOT NULL,
    identity text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS finalpos_journal_items (
    job_id text NOT NULL,
    key text COLLATE "C" NOT NULL,
    status text NOT NULL,
    digest text NOT NULL,
    source_digest text,
    created_id text,
    idempotency_key text NOT NULL,
    attempts integer NOT NULL,
    error text,
    runs integer NOT NULL DEFAULT 1,
    updated_at double precision NOT NULL,
    PRIMARY KEY (job_id, key)
);
INSERT INTO finalpos_journal_meta (name, value) VALUES ('schema_version', '1')
ON CONFLICT (name) DO NOTHING
"""
# Two processes creating the tables at once would collide in the catalog: the first one to
# take this transaction lock creates them, the other finds them made.
CREATE_LOCK = 0x66696E616C706F73  # "finalpos"

_INSERT = """
INSERT INTO finalpos_journal_items AS items (job_id, key, status, digest, created_id,
    idempotency_key, attempts, error, runs, updated_at)
SELECT %(job)s, k, s, d, c, i, a, e, 1, u
FROM unnest(%(k)s::text[], %(s)s::text[], %(d)s::text[], %(c)s::text[], %(i)s::text[],
            %(a)s::integer[], %(e)s::text[], %(u)s::double precision[]) AS t(k, s, d, c, i, a, e, u)
"""
_ON_CONFLICT = """
ON CONFLICT (job_id, key) DO UPDATE SET
    status = excluded.status,
    digest = excluded.digest,
    source_digest = COALESCE(
        items.source_digest,
        CASE WHEN items.status = 'failed' AND items.digest <> excluded.digest
             THEN items.digest END
    ),
    created_id = COALESCE(excluded.created_id, items.created_id),
    idempotency_key = excluded.idempotency_key,
    attempts = items.attempts + excluded.attempts,
    error = excluded.error,
    runs = items.runs + (excluded.status <> 'sending')::integer,
    updated_at = excluded.updated_at
"""
UPSERT = _INSERT + _ON_CONFLICT
# Intents of a leased chunk: written only while its lease is this token's with at least
# `margin` seconds left (the chunk's row locked against a takeover until the commit); the
# statement then writes no row at all.
FENCED_UPSERT = (
    "WITH fence AS (SELECT 1 FROM finalpos_work_chunks WHERE work_id = %(work)s AND chunk = "
    "%(chunk)s AND token = %(token)s AND state = 'leased' AND lease_until > now() + "
    "make_interval(secs => %(margin)s) FOR SHARE)"
    + _INSERT
    + "WHERE EXISTS (SELECT 1 FROM fence)"
    + _ON_CONFLICT
)
WITHDRAW = (
    "DELETE FROM finalpos_journal_items WHERE job_id = %(job)s AND key = ANY(%(k)s::text[]) "
    f"AND status = '{SENDING}'"
)
ENTRY_FIELDS = "status, digest, source_digest, created_id, idempotency_key, attempts, error"
SEEN = "CREATE TEMP TABLE IF NOT EXISTS finalpos_seen (name text PRIMARY KEY, n integer NOT NULL)"
# The count, and the item's record under that name (if any): `lookup` right after has it.
COUNT_SEEN = f"""
WITH c AS (
    INSERT INTO pg_temp.finalpos_seen AS s (name, n) VALUES (%(name)s, 0)
    ON CONFLICT (name) DO UPDATE SET n = s.n + 1
    RETURNING n
)
SELECT c.n, {", ".join("i." + f for f in ENTRY_FIELDS.split(", "))}
FROM c LEFT JOIN finalpos_journal_items i ON i.job_id = %(job)s AND i.key = %(name)s
"""


def is_postgres_url(spec: str) -> bool:
    """True when a `journal=` string names a PostgreSQL database (`postgresql://`, `postgres://`)."""
    return spec.startswith(_SCHEMES)


def public_url(url: str) -> str:
    """`url` without its password (nor any query parameter naming one), to show and to record."""
    try:
        parts = urlsplit(url)
        host, port, user = parts.hostname, parts.port, parts.username
    except ValueError:  # a malformed netloc or port: show nothing of it
        return "<a PostgreSQL URL that cannot be parsed>"
    netloc = parts.netloc.rpartition("@")[2]
    if parts.password is not None or user is not None:
        where = (f"[{host}]" if host and ":" in host else host or "") + (
            f":{port}" if port is not None else ""
        )
        netloc = f"{user}@{where}" if user else where
    # Piece by piece, as written: re-encoding would change what libpq reads.
    query = "&".join(
        piece
        for piece in parts.query.split("&")
        if piece and "password" not in piece.partition("=")[0].lower()
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def lock_key(job_id: str) -> int:
    """The advisory lock of one job: 64 bits of a hash of its id, as PostgreSQL's signed bigint."""
    digest = hashlib.sha256(b"finalpos journal\0" + job_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def postgres_error(exc: BaseException, path: str, password: str, doing: str) -> JournalError:
    """A psycopg failure as a typed error naming the URL (no password) and the fix."""
    import psycopg  # loaded: `exc` is one of its errors
    from psycopg import errors

    text = str(exc).strip() or type(exc).__name__
    if password:
        text = text.replace(password, "***")
    where = f"cannot {doing} journal {path!r} ({text})"
    if isinstance(exc, (errors.UndefinedTable, errors.UndefinedColumn)):
        return JournalDamagedError.naming(path, f"its tables are not a journal's ({text})")
    if isinstance(exc, (errors.DiskFull, errors.InsufficientResources)):
        fix = (
            "the database server is out of disk space. Free some there, then run the same "
            "command again: rows whose outcome could not be written are looked up first"
        )
    elif isinstance(exc, errors.ReadOnlySqlTransaction):
        fix = "the server is read-only (a standby?). Give --journal (journal=) the primary's URL"
    elif isinstance(exc, errors.InsufficientPrivilege):
        fix = (
            "this user may not create or write the journal tables. Grant it CREATE on the "
            "schema (or give it a schema of its own: ?options=-csearch_path%3Dname)"
        )
    elif (
        isinstance(exc, errors.InvalidPassword | errors.InvalidAuthorizationSpecification)
        or "authentication failed" in text
    ):
        fix = (
            "check the user and password (PGPASSWORD or ~/.pgpass keep the password off the "
            "command line and out of the failed-rows file)"
        )
    elif isinstance(exc, psycopg.OperationalError) and doing.startswith("connect"):
        fix = "check that the server is up and the URL is right; nothing was sent"
    elif isinstance(exc, psycopg.OperationalError):
        fix = (
            "check that the server is up, then run the same command again: rows whose outcome "
            "could not be written are looked up first"
        )
    else:
        return JournalError(f"{where}: see the PostgreSQL server's log", path=path)
    return JournalWriteError(f"{where}: {fix}", path=path)


def mismatch_error(
    path: str,
    job: str,
    recorded: JournalBinding,
    requested: JournalBinding,
    differs: tuple[str, ...],
) -> JournalMismatchError:
    """The refusal of a job bound to `recorded` for a run that is `requested`."""
    where = f"job {job} in journal {path!r} was written for {recorded.describe()}"
    other_job = "give this run its own job (job_id=) or another database"
    if differs == ("credentials",):
        message = (
            f"{where}; this run uses another API key (…{requested.credentials[:8]}) for the "
            "same target. If the key was rotated (the same account), continue the job with "
            "the new key (--rotated-key; rotated_credentials=True); if it is another "
            f"account, {other_job}"
        )
    else:
        names = {"credentials": "API key", "identity": "identity rule"}
        what = " and ".join(names.get(name, name) for name in differs)
        message = (
            f"{where}; this run is {requested.describe()}: the {what} "
            f"{'differs' if len(differs) == 1 else 'differ'}. Its records say nothing about "
            f"this run: {other_job}"
        )
    return JournalMismatchError(
        message, path=path, recorded=recorded, requested=requested, differs=differs
    )


def connect_defaults(url: str) -> dict[str, Any]:
    """What the connection gets unless the URL says otherwise: a bounded connect wait, and a
    name that shows in pg_stat_activity (and in another writer's `JournalLockedError`)."""
    given = {name for name, _ in parse_qsl(urlsplit(url).query)}
    defaults: dict[str, Any] = {}
    if "connect_timeout" not in given:
        defaults["connect_timeout"] = JOURNAL_CONNECT_TIMEOUT
    if "application_name" not in given:
        defaults["application_name"] = "finalpos journal"
    return defaults


def connect(
    url: str, prepare: Callable[[psycopg.Connection[tuple[Any, ...]]], None]
) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to the database at `url` (`connect_defaults`), `prepare`d
    (tables made, settings checked) before it is returned, or closed. Every failure is a
    `JournalError` naming the URL without its password, and the fix (the extra to install, the
    server to check)."""
    path = public_url(url)
    try:
        import psycopg  # the `postgres` extra: only a PostgreSQL journal needs it
    except ImportError:
        raise JournalError(
            f"journal {path!r} is a PostgreSQL database, which needs psycopg 3: {INSTALL_HINT}",
            path=path,
        ) from None
    password = urlsplit(url).password or ""
    try:
        conn = psycopg.connect(url, autocommit=True, **connect_defaults(url))
    except psycopg.Error as exc:
        raise postgres_error(exc, path, password, "connect to") from None
    try:
        prepare(conn)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, psycopg.Error):
            raise postgres_error(exc, path, password, "open") from None
        raise
    return conn
