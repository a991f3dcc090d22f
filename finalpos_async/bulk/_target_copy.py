"""The target's records as this run read them: one streamed pass, then only what was added.

A run may need to look items up in the target several times: before sending (a fresh journal
against a target that holds records), and after each settle round (answers lost again). Listing
a large target each time costs minutes, so the run reads it once, into a private on-disk SQLite
database (memory stays flat; the database is deleted when the run ends), and each later lookup
reads only the records listed after the last one it has: `lookup(skip=n - 1)`, whose first record
must be that last one.

That tail read is exact when the target lists records in the order they were made and none were
deleted since (the sandbox does; an API over a document store does by default). When the first
record of the tail is not the one expected, the listing has shifted (records deleted, or an order
that is not creation order): the copy is dropped and the target read again from the start,
logged and counted (`BulkReport.lookup_passes`), so nothing is ever missed because of the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import pickle
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import Any, Protocol

from ._items import KeySpec, read_field
from ._matching import Canonical, canonical_fields
from ._outcome import id_of
from ._results import BulkReport

__all__ = ["Lister", "TargetCopy", "check_lookup", "listing"]

log = logging.getLogger("finalpos.bulk")

_BATCH = 1000  # records written per statement, and read between two yields to the event loop
_Row = tuple[str | None, str | None, bytes | None]  # a record's id, key and fields (pickled)
_SCHEMA = (
    "CREATE TABLE record (seq INTEGER PRIMARY KEY, id TEXT, key TEXT, fields BLOB)",
    "CREATE INDEX record_key ON record (key)",
)


class Lister(Protocol):
    """Lists the target's records from the `skip`-th on (`client.customers.list` is one)."""

    def __call__(self, *, skip: int = 0) -> AsyncIterable[Any]: ...


def check_lookup(lookup: Callable[..., object]) -> None:
    """Raise `TypeError`, with the way on, unless `lookup` can be called with `skip=`."""
    try:
        inspect.signature(lookup).bind(skip=0)
    except ValueError:
        return  # no signature to read (a builtin): it is called as documented
    except TypeError:
        raise TypeError(
            f"lookup must take skip= (a list method such as client.customers.list does; a "
            f"function can pass it on: lambda skip=0: client.customers.list(limit=1000, "
            f"skip=skip)): the run reads the target once, then only the records added since; "
            f"got {lookup!r}"
        ) from None


@contextlib.asynccontextmanager
async def listing(lookup: Lister, skip: int = 0) -> AsyncGenerator[AsyncIterable[Any], None]:
    """The target's records from `skip` on, closed on leaving even when left early (an async
    generator left at a `break` would otherwise be finalized by the garbage collector)."""
    records = lookup(skip=skip)
    try:
        yield records
    finally:
        close = getattr(records, "aclose", None)
        if close is not None:
            await close()


class TargetCopy:
    """The records of the target read so far in this run, by key (`lookup_key`) or, with
    `by_content`, by their fields in typed form (`_matching`)."""

    def __init__(
        self, lookup: Lister, lookup_key: KeySpec, report: BulkReport, *, by_content: bool
    ) -> None:
        self._lookup = lookup
        self._lookup_key = lookup_key
        self._report = report
        self._by_content = by_content
        self._db: sqlite3.Connection | None = None
        self._count = 0  # records kept, in listing order
        self._last_id: str | None = None
        self._passes = 0

    @property
    def count(self) -> int:
        """How many records the copy holds."""
        return self._count

    async def catch_up(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Read what the target lists beyond the copy: every record the first time, then the
        records added since. False when `stopping()` ended it early (the copy is then a prefix
        of the listing, and the next call goes on from there). Listing errors propagate."""
        report = self._report
        started = time.monotonic()
        try:
            if self._count > 0:
                # From the last record kept: it must still be there, else the listing shifted.
                read = await self._read(self._count - 1, stopping, anchor=self._last_id)
                if read is not None:
                    return read
                log.warning(
                    "bulk run: the target no longer lists record %s where it was (records were "
                    "deleted, or it lists them in another order): reading it again",
                    self._last_id,
                )
                self._reset()
                new_pass = True
            else:
                new_pass = self._passes == 0  # else the target was empty: all of it is new
            if new_pass:
                self._passes += 1
                report.lookup_passes += 1
            return bool(await self._read(0, stopping))
        finally:
            report.lookup_seconds += time.monotonic() - started

    async def _read(
        self, skip: int, stopping: Callable[[], bool], *, anchor: str | None = None
    ) -> bool | None:
        """Keep the records listed from `skip` on; True when the listing ended, False when
        `stopping()` cut it short, None when its first record is not `anchor` (when given)."""
        db = self._database()
        batch: list[_Row] = []
        complete = True
        expect_anchor = skip > 0
        async with listing(self._lookup, skip) as records:
            async for record in records:
                self._report.lookup_records += 1
                if expect_anchor:
                    expect_anchor = False
                    if anchor is None or id_of(record) != anchor:
                        return None
                    continue
                batch.append(self._row(record))
                if len(batch) >= _BATCH:
                    self._keep(db, batch)
                if stopping():
                    complete = False
                    break
        if expect_anchor:
            return None  # the listing ends before the last record kept
        self._keep(db, batch)
        return complete

    def _row(self, record: object) -> _Row:
        record_id = id_of(record)
        if self._by_content:
            fields = canonical_fields(record)
            blob = None if fields is None else pickle.dumps(fields, pickle.HIGHEST_PROTOCOL)
            return record_id, None, blob
        key = read_field(self._lookup_key, record, self._count + 1, "lookup_key")
        return record_id, None if key is None else str(key), None

    def _keep(self, db: sqlite3.Connection, batch: list[_Row]) -> None:
        if not batch:
            return
        db.executemany("INSERT INTO record (id, key, fields) VALUES (?, ?, ?)", batch)
        self._count += len(batch)
        self._last_id = batch[-1][0]
        batch.clear()

    def find_key(self, key: str) -> str | None:
        """The id of the first record kept with `key` ("" when it has none), None when none."""
        if self._db is None:
            return None
        row = self._db.execute(
            "SELECT id FROM record WHERE key = ? ORDER BY seq LIMIT 1", (key,)
        ).fetchone()
        return None if row is None else str(row[0] or "")

    async def records(self) -> AsyncGenerator[tuple[Canonical, str | None], None]:
        """The records kept (by content), in listing order, as (fields, id); the event loop
        gets a turn between batches (a large copy takes seconds to read)."""
        if self._db is None:
            return
        after = 0
        while True:
            rows = self._db.execute(
                "SELECT seq, id, fields FROM record WHERE seq > ? AND fields IS NOT NULL "
                "ORDER BY seq LIMIT ?",
                (after, _BATCH),
            ).fetchall()
            for seq, record_id, blob in rows:
                after = seq
                yield pickle.loads(blob), record_id
            if len(rows) < _BATCH:
                return
            await asyncio.sleep(0)

    def _database(self) -> sqlite3.Connection:
        if self._db is None:
            # "" is a private on-disk database, deleted when closed: the copy never holds the
            # target in memory, and nothing is left behind.
            db = sqlite3.connect("", isolation_level=None)
            db.execute("PRAGMA journal_mode=OFF")  # a scratch copy: nothing to roll back
            db.execute("PRAGMA synchronous=OFF")
            for statement in _SCHEMA:
                db.execute(statement)
            self._db = db
        return self._db

    def _reset(self) -> None:
        if self._db is not None:
            self._db.execute("DELETE FROM record")
        self._count = 0
        self._last_id = None

    def close(self) -> None:
        """Drop the copy (its database file goes with it)."""
        if self._db is not None:
            self._db.close()
            self._db = None
