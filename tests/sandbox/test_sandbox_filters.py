"""Filtered lists in the SQLite store: the same records as the rule run in Python, read through an
index on the field (counted in SQLite virtual-machine steps, never in seconds)."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from finalpos_async.sandbox import Sandbox
from finalpos_async.sandbox._filters import FieldsEqual, matches
from finalpos_async.sandbox._storage import MemoryStorage, SQLiteStorage

COUNT = 20_000
# values of every JSON type, and strings that look like the others' `str`
VALUES: list[Any] = [
    "x",
    "X",
    "",
    "1",
    "1.0",
    "True",
    "None",
    "[1]",
    "ü é",
    '{"$oid": "x"}',
    1,
    1.0,
    1.5,
    0,
    True,
    False,
    None,
    [1],
    ["x"],
    {"$oid": "x"},
    {"$oid": "1"},
    {"$oid": 1},
    {"a": 1},
    {"$oid": None},
]
MISSING = object()
WANTED = ["x", "X", "", "1", "1.0", "1.5", "0", "True", "False", "None", "[1]", "['x']", "ü é"]
WANTED += ['{"$oid": "x"}', '{"a":1}', "{'a': 1}", "[]", "nope"]


def _records() -> list[tuple[str, dict[str, Any]]]:
    """Every value (and a missing field) under `f`, each with every value under `g`."""
    made: list[tuple[str, dict[str, Any]]] = []
    for n, (f, g) in enumerate(itertools.product([*VALUES, MISSING], [*VALUES[:12], MISSING])):
        record: dict[str, Any] = {"id": f"r{n}"}
        if f is not MISSING:
            record["f"] = f
        if g is not MISSING:
            record["g"] = g
        made.append((f"r{n}", record))
    return made


def test_sql_filters_give_the_python_rule_s_records_in_order(tmp_path: Path) -> None:
    stored, memory = SQLiteStorage(str(tmp_path / "sandbox.db")), MemoryStorage()
    for store in (stored, memory):
        store.insert_many("Things", _records())
        store.insert_many("Others", [("o1", {"id": "o1", "f": "x"})])  # never in a "Things" page
    stored.delete("Things", "r3")
    memory.delete("Things", "r3")
    checked = 0
    for wanted in WANTED:
        for filters in ({"f": wanted}, {"f": wanted, "g": "1"}, {"g": wanted, "f": "x"}):
            where = FieldsEqual.of(filters)
            everything = memory.list("Things", 0, None, where)
            for skip, limit in [(0, None), (0, 1), (1, 2), (3, None), (0, 0), (50, 10)]:
                page = stored.list("Things", skip, limit, where)
                assert page == memory.list("Things", skip, limit, where), (filters, skip, limit)
                end = None if limit is None else skip + limit
                assert page == everything[skip:end]
            checked += len(everything)
    assert checked > 100  # the values did match: not a comparison of empty lists
    stored.close()


def test_the_rule_reads_values_as_the_query_string_does() -> None:
    assert matches("1", "1")
    assert matches(1, "1")
    assert not matches(1, "1.0")
    assert matches(1.0, "1.0")
    assert matches(True, "True")
    assert matches(None, "None")
    assert matches({"$oid": "ab"}, "ab")
    assert not matches({"$oid": 1}, "1")
    assert not matches({"a": 1}, "{'a': 1}")
    assert matches([1], "[1]")


def test_a_field_name_sql_cannot_take_is_filtered_in_python(tmp_path: Path) -> None:
    stored = SQLiteStorage(str(tmp_path / "sandbox.db"))
    stored.insert_many("Things", [("a", {"a.b": "1", "x'y": 2}), ("b", {"a.b": "2"})])
    assert FieldsEqual.of({"a.b": "1"}).sql() is None
    assert [r["a.b"] for r in stored.list("Things", 0, None, FieldsEqual.of({"a.b": "1"}))] == ["1"]
    assert len(stored.list("Things", 0, None, FieldsEqual.of({"x'y": "2"}))) == 1
    stored.close()


@contextmanager
def _counted(db: sqlite3.Connection) -> Iterator[tuple[list[int], list[str]]]:
    """Count the virtual-machine steps (in units of 10) and keep the statements run meanwhile."""
    steps = [0]
    statements: list[str] = []

    def step() -> int:
        steps[0] += 1
        return 0

    db.set_progress_handler(step, 10)
    db.set_trace_callback(statements.append)
    try:
        yield steps, statements
    finally:
        db.set_progress_handler(None, 0)
        db.set_trace_callback(None)


def _customers(count: int) -> list[tuple[str, dict[str, Any]]]:
    return [(f"c{n}", {"id": f"c{n}", "email": f"c{n}@example.com"}) for n in range(count)]


def test_a_filtered_page_reads_the_matching_rows_not_the_collection(tmp_path: Path) -> None:
    storage = SQLiteStorage(str(tmp_path / "sandbox.db"))
    storage.insert_many("CustomerDto", _customers(COUNT))
    storage.insert_many("CustomerDto", [("dup", {"id": "dup", "email": "c19000@example.com"})])
    db = storage.connection
    first = storage.list("CustomerDto", 0, 10, FieldsEqual.of({"email": "c5@example.com"}))
    assert [r["id"] for r in first] == ["c5"]  # this one builds the index
    with _counted(db) as (steps, statements):
        page = storage.list("CustomerDto", 0, 10, FieldsEqual.of({"email": "c19000@example.com"}))
    assert [r["id"] for r in page] == ["c19000", "dup"]
    # a few hundred steps; reading the collection (decoding it in Python, or json_extract on
    # every row in SQLite) visits all 20,000 records, over 200,000 steps
    assert steps[0] * 10 < COUNT / 20, steps[0]
    plans = [
        row[3] for sql in statements for row in db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
    ]
    assert any("records_by_email" in plan for plan in plans), plans
    # a later insert is found through the index too
    storage.insert("CustomerDto", "late", {"id": "late", "email": "late@example.com"})
    found = storage.list("CustomerDto", 0, None, FieldsEqual.of({"email": "late@example.com"}))
    assert [r["id"] for r in found] == ["late"]
    storage.close()
    # the index is kept in the file: a reopened store uses it from its first list
    again = SQLiteStorage(str(tmp_path / "sandbox.db"))
    with _counted(again.connection) as (steps, _):
        page = again.list("CustomerDto", 0, 10, FieldsEqual.of({"email": "c7@example.com"}))
    assert [r["id"] for r in page] == ["c7"]
    assert steps[0] * 10 < COUNT / 20, steps[0]
    again.close()


async def test_a_filtered_list_over_http_answers_the_matching_rows(tmp_path: Path) -> None:
    async with (
        Sandbox(db=tmp_path / "sandbox.db") as sandbox,
        aiohttp.ClientSession(sandbox.url, headers={"x-api-key": sandbox.api_key}) as http,
    ):
        sandbox.storage.insert_many(
            "CustomTableRowDto",
            [(f"r{n}", {"id": f"r{n}", "tableId": f"t{n % 3}"}) for n in range(30)],
        )
        async with http.get("/v1/api/custom-table-rows", params={"tableId": "t1"}) as response:
            assert response.status == 200, await response.text()
            rows = await response.json()
    assert [r["id"] for r in rows] == [f"r{n}" for n in range(1, 30, 3)]
