"""The per-item shortcuts of a bulk run (issue 23): results taken from a completion queue in the
order they finish, no journal read for a key first named in this run (and still every record
found that is there), and a digest made by the caller taken instead of hashing again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from finalpos_async.bulk import (
    BulkRunner,
    Intent,
    ItemStatus,
    Journal,
    JournalBinding,
    content_digest,
    idempotency_key_for,
)

BINDING = JournalBinding(
    target="https://api.example", credentials="fp-one", operation="customers.create", identity="c"
)


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until `condition` holds (a poll with a deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not condition():
        assert loop.time() < deadline, "the run did not get there"
        await asyncio.sleep(0)


# -- completion queue ----------------------------------------------------------------------------


async def test_results_come_in_the_order_the_items_finish() -> None:
    gates = {n: asyncio.Event() for n in range(3)}

    async def create(*, n: int, idempotency_key: str, **_: Any) -> dict[str, Any]:
        await gates[n].wait()
        return {"id": f"id-{n}"}

    job = BulkRunner().run(create, [{"n": n} for n in range(3)], concurrency=3)
    order: list[int] = []

    async def consume() -> None:
        async for result in job:
            order.append(result.index)
            if len(order) < 3:
                gates[(2, 0)[len(order) - 1]].set()

    consumer = asyncio.ensure_future(consume())
    await until(lambda: job.report.submitted == 3)  # all started: release the middle one first
    gates[1].set()
    await asyncio.wait_for(consumer, 30)
    assert order == [1, 2, 0]
    assert job.report.succeeded == 3


async def test_a_stop_wakes_a_run_waiting_for_its_items() -> None:
    release = asyncio.Event()

    async def create(*, n: int, idempotency_key: str, **_: Any) -> dict[str, Any]:
        await release.wait()
        return {"id": f"id-{n}"}

    job = BulkRunner().run(create, [{"n": n} for n in range(4)], concurrency=2, drain_timeout=60)
    results: list[Any] = []

    async def consume() -> None:
        results.extend([r async for r in job])

    consumer = asyncio.ensure_future(consume())
    await until(lambda: job.report.submitted == 2)
    job.stop(drain_timeout=0)  # the run waits on its two items: the stop must wake it
    await asyncio.wait_for(consumer, 30)
    assert sorted(r.index for r in results) == [0, 1]
    assert all(r.status is ItemStatus.UNKNOWN for r in results)
    assert job.report.outcome == "stopped"


# -- the journal: no read for a new key, every recorded key found ------------------------------


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL of every read the journal makes from now on."""
    reads: list[str] = []
    original = Journal._read  # our own journal: its reads, counted

    def counting(self: Journal, sql: str, args: tuple[Any, ...] = ()) -> Any:
        reads.append(sql)
        return original(self, sql, args)

    monkeypatch.setattr(Journal, "_read", counting)
    return reads


def test_a_key_first_named_in_this_run_is_not_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Journal(tmp_path / "j.db") as journal:
        journal.bind(BINDING)
        journal.record_intents([Intent("old", "d-old", "k-old")])  # the file now holds rows
        reads = _reads(monkeypatch)
        for n in range(50):
            assert journal.count_seen(f"new-{n}") == 0
            assert journal.lookup(f"new-{n}") is None
        assert not [sql for sql in reads if "WHERE key" in sql]
        assert journal.count_seen("old") == 0  # first named in this run, but recorded: read
        entry = journal.lookup("old")
        assert entry is not None
        assert entry.idempotency_key == "k-old"


def test_a_key_recorded_before_it_is_named_is_still_found(tmp_path: Path) -> None:
    # The import records the user's answer for a row of unknown outcome before the engine
    # names that row: the journal must not take the name for a new one.
    with Journal(tmp_path / "j.db", batch_size=1) as journal:
        journal.bind(BINDING)
        journal.record_intents([Intent("a", "d-a", "k-a")])
        journal.record("b", "succeeded", digest="d-b", idempotency_key="k-b")  # committed
        assert journal.count_seen("b") == 0
        entry = journal.lookup("b")
        assert entry is not None
        assert entry.status == "succeeded"
        # Named while absent, then committed before it was looked up: read again.
        assert journal.count_seen("c") == 0
        journal.record_intents([Intent("c", "d-c", "k-c")])
        entry = journal.lookup("c")
        assert entry is not None
        assert entry.status == "sending"


def test_a_new_key_is_not_found_after_the_file_was_reopened(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path)
    journal.bind(BINDING)
    journal.record_intents([Intent("a", "d-a", "k-a")])
    assert journal.count_seen("b") == 0
    journal.close()
    with Journal(path) as other:  # another writer while it was closed
        other.bind(BINDING)
        other.record_intents([Intent("b", "d-b", "k-b")])
    entry = journal.lookup("b")
    assert entry is not None
    assert entry.status == "sending"
    journal.close()


# -- a digest the caller made -------------------------------------------------------------------


async def test_a_run_takes_the_digest_its_items_carry(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def create(
        *, body: dict[str, Any], made: str, idempotency_key: str, **_: Any
    ) -> dict[str, Any]:
        seen.append({"made": made, "key": idempotency_key})
        return {"id": body["email"]}

    bodies = [{"email": f"p{n}@example.com"} for n in range(3)]
    items = [{"body": b, "made": content_digest(b)} for b in bodies]
    job = BulkRunner().run(
        create, items, key=lambda item: item["body"]["email"], content="body", digest="made"
    )
    results = [r async for r in job]
    assert [r.status for r in results] == [ItemStatus.SUCCEEDED] * 3
    assert {r.digest for r in results} == {content_digest(b) for b in bodies}
    # The same keys as when the engine hashes the content itself.
    plain = BulkRunner().run(create, items, key=lambda item: item["body"]["email"], content="body")
    assert {r.idempotency_key async for r in plain} == {r.idempotency_key for r in results}
    assert job.job_id is not None
    assert results[0].idempotency_key == idempotency_key_for(
        job.job_id, results[0].key, bodies[results[0].index]
    )


async def test_a_digest_that_is_not_text_fails_its_item() -> None:
    async def create(**_: Any) -> dict[str, Any]:
        return {"id": "x"}

    job = BulkRunner().run(create, [{"body": {"a": 1}, "made": 7}], content="body", digest="made")
    (result,) = [r async for r in job]
    assert result.status is ItemStatus.FAILED
    assert "digest= field is not a str" in result.reason
