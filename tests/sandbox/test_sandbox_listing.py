"""The SQLite store lists a page far into a collection as cheaply as the first page.

The cost is counted in SQLite virtual-machine steps (a progress handler), not in seconds, so a
loaded machine cannot make it flaky; the same lists come out of the memory store, deletes included.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finalpos_async.sandbox._storage import MemoryStorage, SQLiteStorage

COUNT = 20_000


def _customers(start: int, stop: int) -> list[tuple[str, dict[str, Any]]]:
    return [(f"c{n}", {"id": f"c{n}", "email": f"c{n}@example.com"}) for n in range(start, stop)]


@contextmanager
def _counted(db: sqlite3.Connection) -> Iterator[list[int]]:
    """Count the virtual-machine steps (in units of 10) and keep the statements run meanwhile."""
    steps = [0]
    statements: list[str] = []

    def step() -> int:
        steps[0] += 1
        return 0

    db.set_progress_handler(step, 10)
    db.set_trace_callback(statements.append)
    try:
        yield steps
    finally:
        db.set_progress_handler(None, 0)
        db.set_trace_callback(None)
    plans = [
        row[3] for sql in statements for row in db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
    ]
    # read through the (collection, pos) index, never sorted (a sort reads the whole collection)
    assert any("records_position" in plan for plan in plans), plans
    assert not any("TEMP B-TREE" in plan for plan in plans), plans


def test_a_page_at_skip_19000_visits_no_more_than_the_first_page(tmp_path: Path) -> None:
    storage = SQLiteStorage(str(tmp_path / "sandbox.db"))
    storage.insert_many("CustomerDto", _customers(0, COUNT))
    storage.insert_many("OutletDto", _customers(0, 10))  # another collection in the same table
    with _counted(storage.connection) as first:
        page = storage.list("CustomerDto", 0, 100)
    assert [r["id"] for r in page] == [f"c{n}" for n in range(100)]
    with _counted(storage.connection) as far:
        page = storage.list("CustomerDto", COUNT - 1000, 100)
    assert [r["id"] for r in page] == [f"c{n}" for n in range(COUNT - 1000, COUNT - 900)]
    assert far[0] <= 2 * first[0] + 50, (first[0], far[0])
    # fewer steps than the collection has records: neither page visited the collection (before
    # positions, each page sorted all 20,000 records and OFFSET stepped over `skip` of them, about
    # 160,000 steps for the first page and 220,000 for this one; now about 600 each)
    assert far[0] * 10 < COUNT / 4, far[0]
    assert first[0] * 10 < COUNT / 4, first[0]
    storage.close()


def test_pages_match_the_memory_store_through_deletes_inserts_and_a_reopen(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "sandbox.db")
    stored, memory = SQLiteStorage(path), MemoryStorage()
    rng = random.Random(24)
    for store in (stored, memory):
        store.insert_many("CustomerDto", _customers(0, 300))
    for n in [*rng.sample(range(300), 120), 299, 0]:
        assert stored.delete("CustomerDto", f"c{n}") == memory.delete("CustomerDto", f"c{n}")
    for store in (stored, memory):
        store.insert_many("CustomerDto", _customers(300, 340))
        store.insert("CustomerDto", "c299", {"id": "c299", "again": True})  # a deleted id again
        store.replace("CustomerDto", "c310", {"id": "c310", "replaced": True})
    stored.close()
    stored = SQLiteStorage(path)
    assert stored.list("CustomerDto", 0, None) == memory.list("CustomerDto", 0, None)
    for skip in range(0, 240, 7):
        for limit in (None, 1, 13, 100):
            assert stored.list("CustomerDto", skip, limit) == memory.list(
                "CustomerDto", skip, limit
            ), (skip, limit)
    assert stored.list("CustomerDto", 10_000, 5) == []
    assert stored.list("NobodyDto", 0, None) == []
    stored.clear()
    stored.insert("CustomerDto", "fresh", {"id": "fresh"})
    assert stored.list("CustomerDto", 0, None) == [{"id": "fresh"}]
    stored.close()


def test_a_file_written_before_positions_lists_in_creation_order(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL,"
        " id TEXT NOT NULL, data TEXT NOT NULL, UNIQUE (collection, id));"
    )
    for n in range(6):  # two collections, interleaved
        collection = "CustomerDto" if n % 2 else "OutletDto"
        db.execute(
            "INSERT INTO records (collection, id, data) VALUES (?, ?, ?)",
            (collection, f"r{n}", f'{{"id": "r{n}"}}'),
        )
    db.commit()
    db.close()
    storage = SQLiteStorage(str(path))
    assert [r["id"] for r in storage.list("CustomerDto", 0, None)] == ["r1", "r3", "r5"]
    assert storage.delete("CustomerDto", "r1")
    storage.insert("CustomerDto", "r6", {"id": "r6"})
    assert [r["id"] for r in storage.list("CustomerDto", 1, None)] == ["r5", "r6"]
    assert [r["id"] for r in storage.list("OutletDto", 1, 1)] == ["r2"]
    storage.close()
