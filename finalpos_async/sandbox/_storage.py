"""Where the sandbox keeps its records: in memory (default) or in a SQLite file (`db=`).

Both stores keep records per collection in creation order (lists answer in that order), a named
counter per auto-generated sequence (outlet `sequenceNumber`) and the idempotency replays.
The SQLite store uses the standard library's `sqlite3` synchronously on the event loop: each
statement is a local call well under a millisecond, so a thread hop would cost more than it saves.

A page of the SQLite store costs the same at any `skip`: every record has a position in its
collection (0, 1, 2, ... in creation order, never reused) and a deleted record leaves its position
in a table of gaps, so the record at `skip` is found from the gaps before it and read through the
(collection, pos) index, instead of OFFSET stepping over `skip` records. A filtered page
(`_filters.FieldsEqual`) reads only the rows whose stored field has the wanted value, through an
expression index on that field that the first such list builds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Generator, Iterable
from contextlib import contextmanager
from typing import Any, Protocol

import attrs

from . import _json
from ._filters import FieldsEqual

__all__ = ["MemoryStorage", "SQLiteStorage", "Storage", "StoredResponse", "open_storage"]

Record = dict[str, Any]
Predicate = Callable[[Record], bool]


@attrs.frozen
class StoredResponse:
    """A response kept for an idempotency key: replayed byte for byte."""

    fingerprint: str
    status: int
    body: bytes


class Storage(Protocol):
    """The operations the generic handlers need."""

    # A method answering a value has `...` after its docstring: pyright takes a docstring alone
    # for a body that returns None.

    def insert(self, collection: str, record_id: str, record: Record) -> None:
        """Store a new record at the end of its collection."""

    def insert_many(self, collection: str, records: Iterable[tuple[str, Record]]) -> None:
        """Store (id, record) pairs at the end of their collection, in order, all at once."""

    def get(self, collection: str, record_id: str) -> Record | None:
        """The record, or None."""

    def replace(self, collection: str, record_id: str, record: Record) -> None:
        """Overwrite an existing record, keeping its place in the creation order."""

    def delete(self, collection: str, record_id: str) -> bool:
        """Remove a record; False if it did not exist."""
        ...

    def list(
        self, collection: str, skip: int, limit: int | None, where: Predicate | None = None
    ) -> list[Record]:
        """Records in creation order, after `skip` matching ones, at most `limit` (None: all)."""
        ...

    def next_sequence(self, name: str) -> int:
        """The next value (1, 2, ...) of a named counter."""
        ...

    def get_response(self, key: str) -> StoredResponse | None:
        """The response stored for an idempotency key."""

    def put_response(self, key: str, response: StoredResponse) -> None:
        """Keep a response for an idempotency key."""

    def clear(self) -> None:
        """Forget everything (records, counters, idempotency keys)."""

    def close(self) -> None:
        """Release the store's resources."""


class MemoryStorage:
    """Dict-backed store; dicts keep insertion order, which is the creation order lists need."""

    def __init__(self) -> None:
        self._collections: dict[str, dict[str, Record]] = {}
        self._counters: dict[str, int] = {}
        self._responses: dict[str, StoredResponse] = {}

    def insert(self, collection: str, record_id: str, record: Record) -> None:
        """Store a new record at the end of its collection."""
        self._collections.setdefault(collection, {})[record_id] = record

    def insert_many(self, collection: str, records: Iterable[tuple[str, Record]]) -> None:
        """Store (id, record) pairs at the end of their collection, in order."""
        self._collections.setdefault(collection, {}).update(records)

    def get(self, collection: str, record_id: str) -> Record | None:
        """The record, or None."""
        return self._collections.get(collection, {}).get(record_id)

    def replace(self, collection: str, record_id: str, record: Record) -> None:
        """Overwrite an existing record (assigning an existing key keeps its position)."""
        self._collections.setdefault(collection, {})[record_id] = record

    def delete(self, collection: str, record_id: str) -> bool:
        """Remove a record; False if it did not exist."""
        return self._collections.get(collection, {}).pop(record_id, None) is not None

    def list(
        self, collection: str, skip: int, limit: int | None, where: Predicate | None = None
    ) -> list[Record]:
        """Records in creation order, after `skip` matching ones, at most `limit`."""
        records: Any = self._collections.get(collection, {}).values()
        records = [r for r in records if where(r)] if where is not None else list(records)
        end = None if limit is None else skip + limit
        return list(records[skip:end])

    def next_sequence(self, name: str) -> int:
        """The next value of a named counter."""
        value = self._counters.get(name, 0) + 1
        self._counters[name] = value
        return value

    def get_response(self, key: str) -> StoredResponse | None:
        """The response stored for an idempotency key."""
        return self._responses.get(key)

    def put_response(self, key: str, response: StoredResponse) -> None:
        """Keep a response for an idempotency key."""
        self._responses[key] = response

    def clear(self) -> None:
        """Forget everything."""
        self._collections.clear()
        self._counters.clear()
        self._responses.clear()

    def close(self) -> None:
        """Nothing to release."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    pos INTEGER NOT NULL,
    UNIQUE (collection, id)
);
CREATE TABLE IF NOT EXISTS gaps (
    collection TEXT NOT NULL,
    pos INTEGER NOT NULL,
    PRIMARY KEY (collection, pos)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL
);
"""
_POSITION_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS records_position ON records (collection, pos)"

# One statement, so a record never gets a position without being stored: the next position is one
# past the largest one used, by a record or by a gap (positions of deleted records are not reused).
_INSERT = """
INSERT INTO records (collection, id, data, pos) VALUES (:collection, :id, :data, (
    SELECT COALESCE(MAX(used), -1) + 1 FROM (
        SELECT MAX(pos) AS used FROM records WHERE collection = :collection
        UNION ALL SELECT MAX(pos) FROM gaps WHERE collection = :collection
    )
))
"""
# What `list` asks for: the (collection, pos) index gives the first record and the ones after it.
_LIST = "SELECT data FROM records WHERE collection = ? AND pos >= ? ORDER BY pos LIMIT ?"


class SQLiteStorage:
    """SQLite-backed store: a restarted sandbox on the same file sees every record."""

    def __init__(self, path: str) -> None:
        self.path = path
        # autocommit (isolation_level=None): every write is durable once the call returns
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        _add_positions(self._db)
        self._db.execute(_POSITION_INDEX)
        self._indexed: set[str] = set()  # the filter indexes known to exist

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection, for inspection (query plans, progress handlers); do not write."""
        return self._db

    def insert(self, collection: str, record_id: str, record: Record) -> None:
        """Store a new record at the end of its collection."""
        data = _json.dumps(record).decode()
        self._db.execute(_INSERT, {"collection": collection, "id": record_id, "data": data})

    def insert_many(self, collection: str, records: Iterable[tuple[str, Record]]) -> None:
        """Store (id, record) pairs at the end of their collection in one transaction."""
        with _transaction(self._db):
            self._db.executemany(
                _INSERT,
                (
                    {"collection": collection, "id": i, "data": _json.dumps(r).decode()}
                    for i, r in records
                ),
            )

    def get(self, collection: str, record_id: str) -> Record | None:
        """The record, or None."""
        row = self._db.execute(
            "SELECT data FROM records WHERE collection = ? AND id = ?", (collection, record_id)
        ).fetchone()
        return None if row is None else _record(row[0])

    def replace(self, collection: str, record_id: str, record: Record) -> None:
        """Overwrite an existing record; its `seq` (creation order) is kept."""
        self._db.execute(
            "UPDATE records SET data = ? WHERE collection = ? AND id = ?",
            (_json.dumps(record).decode(), collection, record_id),
        )

    def delete(self, collection: str, record_id: str) -> bool:
        """Remove a record; False if it did not exist."""
        with _transaction(self._db):
            # the position stays taken (a gap), so later positions keep their place in `list`
            self._db.execute(
                "INSERT INTO gaps (collection, pos) "
                "SELECT collection, pos FROM records WHERE collection = ? AND id = ?",
                (collection, record_id),
            )
            cursor = self._db.execute(
                "DELETE FROM records WHERE collection = ? AND id = ?", (collection, record_id)
            )
        return cursor.rowcount > 0

    def list(
        self, collection: str, skip: int, limit: int | None, where: Predicate | None = None
    ) -> list[Record]:
        """Records in creation order; a `FieldsEqual` filter reads only the rows it may match,
        any other predicate reads the whole collection (and runs in Python)."""
        if where is None:
            start = self._position(collection, skip)
            rows = self._db.execute(
                _LIST, (collection, start, -1 if limit is None else limit)
            ).fetchall()
            return [_record(row[0]) for row in rows]
        condition = where.sql() if isinstance(where, FieldsEqual) else None
        sql = "SELECT data FROM records WHERE collection = ?"
        params: tuple[str, ...] = (collection,)
        if condition is not None:
            for statement in condition.indexes:
                if statement not in self._indexed:
                    self._db.execute(statement)
                    self._indexed.add(statement)
            if condition.index is not None:
                sql = f"SELECT data FROM records INDEXED BY {condition.index} WHERE collection = ?"
            sql += f" AND {condition.where}"
            params += condition.params
        matching: list[Record] = []
        if limit == 0:
            return matching
        # the rule itself decides (the SQL condition lets a few non-matching rows through);
        # `skip` and `limit` count the records it keeps
        for (text,) in self._db.execute(sql + " ORDER BY pos", params):
            record = _record(text)
            if not where(record):
                continue
            if skip > 0:
                skip -= 1
                continue
            matching.append(record)
            if limit is not None and len(matching) >= limit:
                break
        return matching

    def _position(self, collection: str, skip: int) -> int:
        """The position of the record `skip` records into the collection (past its end: beyond)."""
        gaps = self._db.execute(
            "SELECT pos FROM gaps WHERE collection = ? ORDER BY pos", (collection,)
        )
        # a gap at or before the candidate position is a record fewer before it: one further on
        position = skip
        for (gap,) in gaps:
            if gap > position:
                break
            position += 1
        return position

    def next_sequence(self, name: str) -> int:
        """The next value of a named counter, kept in the file."""
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1",
            (name,),
        )
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0])

    def get_response(self, key: str) -> StoredResponse | None:
        """The response stored for an idempotency key."""
        row = self._db.execute(
            "SELECT fingerprint, status, body FROM idempotency WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return StoredResponse(fingerprint=row[0], status=int(row[1]), body=bytes(row[2]))

    def put_response(self, key: str, response: StoredResponse) -> None:
        """Keep a response for an idempotency key."""
        self._db.execute(
            "INSERT OR REPLACE INTO idempotency (key, fingerprint, status, body, created) "
            "VALUES (?, ?, ?, ?, ?)",
            (key, response.fingerprint, response.status, response.body, time.time()),
        )

    def clear(self) -> None:
        """Forget everything in the file."""
        self._db.executescript(
            "DELETE FROM records; DELETE FROM gaps; DELETE FROM counters; DELETE FROM idempotency;"
        )

    def close(self) -> None:
        """Close the connection (the file stays)."""
        self._db.close()


@contextmanager
def _transaction(db: sqlite3.Connection) -> Generator[None, None, None]:
    """Statements that land together or not at all (the connection autocommits otherwise)."""
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _add_positions(db: sqlite3.Connection) -> None:
    """Give the records of a file written before positions existed theirs, in creation order."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    if "pos" in columns:
        return
    with _transaction(db):
        db.execute("ALTER TABLE records ADD COLUMN pos INTEGER")
        counts: dict[str, int] = {}
        updates: list[tuple[int, int]] = []
        for seq, collection in db.execute("SELECT seq, collection FROM records ORDER BY seq"):
            position = counts.get(collection, 0)
            counts[collection] = position + 1
            updates.append((position, seq))
        db.executemany("UPDATE records SET pos = ? WHERE seq = ?", updates)


def _record(text: str) -> Record:
    value: Record = _json.loads(text)
    return value


def open_storage(db: str | None) -> Storage:
    """A SQLite store on `db`, or a memory store when `db` is None."""
    return MemoryStorage() if db is None else SQLiteStorage(db)
