"""Where the sandbox keeps its records: in memory (default) or in a SQLite file (`db=`).

Both stores keep records per collection in creation order (lists answer in that order), a named
counter per auto-generated sequence (outlet `sequenceNumber`) and the idempotency replays.
The SQLite store uses the standard library's `sqlite3` synchronously on the event loop: each
statement is a local call well under a millisecond, so a thread hop would cost more than it saves.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from . import _json

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
    UNIQUE (collection, id)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL
);
"""


class SQLiteStorage:
    """SQLite-backed store: a restarted sandbox on the same file sees every record."""

    def __init__(self, path: str) -> None:
        self.path = path
        # autocommit (isolation_level=None): every write is durable once the call returns
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def insert(self, collection: str, record_id: str, record: Record) -> None:
        """Store a new record at the end of its collection."""
        self._db.execute(
            "INSERT INTO records (collection, id, data) VALUES (?, ?, ?)",
            (collection, record_id, _json.dumps(record).decode()),
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
        cursor = self._db.execute(
            "DELETE FROM records WHERE collection = ? AND id = ?", (collection, record_id)
        )
        return cursor.rowcount > 0

    def list(
        self, collection: str, skip: int, limit: int | None, where: Predicate | None = None
    ) -> list[Record]:
        """Records in creation order; filters run in Python (the data column is JSON text)."""
        if where is None:
            rows = self._db.execute(
                "SELECT data FROM records WHERE collection = ? ORDER BY seq LIMIT ? OFFSET ?",
                (collection, -1 if limit is None else limit, skip),
            ).fetchall()
            return [_record(row[0]) for row in rows]
        rows = self._db.execute(
            "SELECT data FROM records WHERE collection = ? ORDER BY seq", (collection,)
        ).fetchall()
        matching = [r for r in (_record(row[0]) for row in rows) if where(r)]
        end = None if limit is None else skip + limit
        return matching[skip:end]

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
            "DELETE FROM records; DELETE FROM counters; DELETE FROM idempotency;"
        )

    def close(self) -> None:
        """Close the connection (the file stays)."""
        self._db.close()


def _record(text: str) -> Record:
    value: Record = _json.loads(text)
    return value


def open_storage(db: str | None) -> Storage:
    """A SQLite store on `db`, or a memory store when `db` is None."""
    return MemoryStorage() if db is None else SQLiteStorage(db)
