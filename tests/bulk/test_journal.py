"""The journal's write-ahead promise and its typed faults, the job id that does not depend on the
journal file, a 2xx that does not fit the model, and the no-key lookup's matching rule."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from finalpos_async import (
    AsyncFinalPOS,
    MockTransport,
    Request,
    ResponseValidationError,
    TransportResponse,
)
from finalpos_async.bulk import (
    Intent,
    ItemStatus,
    Journal,
    JournalBinding,
    JournalDamagedError,
    JournalMismatchError,
    JournalWriteError,
    content_digest,
    idempotency_key_for,
)
from finalpos_async.bulk._matching import Canonical, ContentIndex, canonical_fields

BINDING = JournalBinding(
    target="https://api.example", credentials="fp-one", operation="customers.create", identity="c"
)


def people(count: int) -> list[dict[str, Any]]:
    return [
        {"email": f"p{n}@example.com", "first_name": "P", "last_name": str(n)} for n in range(count)
    ]


def statuses_on_disk(path: Path) -> dict[str, str]:
    """What another process reading the journal file sees now (committed rows only)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT idempotency_key, status FROM items").fetchall())


# -- write-ahead ------------------------------------------------------------------------------


async def test_every_request_leaves_only_after_its_intent_is_committed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    seen_at_send: list[str | None] = []

    def handler(request: Request) -> TransportResponse:
        key = request.headers["Idempotency-Key"]
        seen_at_send.append(statuses_on_disk(path).get(key))
        return TransportResponse(201, json={"id": key[-8:], "email": "x"})

    async with AsyncFinalPOS("k", transport=MockTransport(handler)) as client:
        report = await client.bulk.run(
            client.customers.create, people(150), journal=path, concurrency=8
        )
    assert report.succeeded == 150
    # Each of the 150 requests found its own row already on disk as `sending`, never missing.
    assert seen_at_send == ["sending"] * 150
    assert set(statuses_on_disk(path).values()) == {"succeeded"}


async def test_a_row_sending_when_a_run_ended_is_unknown_to_the_next_never_new(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    sent: list[str] = []

    def handler(request: Request) -> TransportResponse:
        sent.append(request.headers["Idempotency-Key"])
        return TransportResponse(201, json={"id": "c1", "email": "x"})

    rows = people(3)
    async with AsyncFinalPOS("k", transport=MockTransport(handler)) as client:
        job = client.bulk.run(client.customers.create, rows, journal=path)
        journal = job.open_journal()
        assert journal is not None
        assert journal.job_id is not None
        # What a run killed while sending row 0 leaves: its intent, no outcome.
        key = content_digest(rows[0])
        idem = idempotency_key_for(journal.job_id, key, rows[0])
        journal.record_intents([Intent(key, key, idem)])
        journal.close()
        report = await client.bulk.run(client.customers.create, rows, journal=path)
    # No lookup given: the killed row is reported unknown and not sent; the others are.
    assert (report.succeeded, report.unknown) == (2, 1)
    assert len(sent) == 2


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty (0 bytes)"),
        (b"this is not a database, just text" * 100, "not a database"),
    ],
)
def test_a_damaged_journal_is_a_typed_error_naming_the_file(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(content)
    with pytest.raises(JournalDamagedError) as caught:
        Journal(path).open()
    assert str(path) in str(caught.value)
    assert why in str(caught.value)
    assert "new journal file" in str(caught.value)
    assert caught.value.path == str(path)


def test_a_truncated_journal_is_damaged_not_new(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as journal:
        journal.bind(BINDING)
        journal.record_intents(Intent(f"k{n}", "d" * 32, f"i{n}") for n in range(3000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(JournalDamagedError, match="damaged"):
        Journal(path).open()


def test_a_journal_in_a_missing_directory_is_a_write_error(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "j.db"
    with pytest.raises(JournalWriteError) as caught:
        Journal(path).open()
    assert str(path) in str(caught.value)
    assert not isinstance(caught.value, OSError)


# -- identity --------------------------------------------------------------------------------


def test_a_new_journal_for_the_same_job_has_the_same_job_id(tmp_path: Path) -> None:
    with Journal(tmp_path / "a.db") as one, Journal(tmp_path / "b.db") as two:
        assert one.bind(BINDING) == two.bind(BINDING)
        other = JournalBinding(
            target="https://api.example",
            credentials="fp-one",
            operation="products.create",
            identity="c",
        )
        with Journal(tmp_path / "c.db") as three:
            assert three.bind(other) != one.job_id


def test_a_rotated_key_is_refused_with_its_way_on_and_accepted_when_said(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as journal:
        job_id = journal.bind(BINDING)
        journal.record("k", "succeeded", digest="d", idempotency_key="i")
    rotated = JournalBinding(
        target=BINDING.target, credentials="fp-two", operation=BINDING.operation, identity="c"
    )
    with Journal(path) as journal:
        with pytest.raises(JournalMismatchError) as caught:
            journal.bind(rotated)
        assert caught.value.differs == ("credentials",)
        assert "rotated" in str(caught.value)
        assert journal.bind(rotated, rotated_credentials=True) == job_id
        assert journal.binding == rotated
        entry = journal.lookup("k")
        assert entry is not None
        assert entry.status == "succeeded"


# -- a 2xx that does not fit -----------------------------------------------------------------


async def test_a_2xx_without_an_id_is_the_rows_outcome_not_the_runs(tmp_path: Path) -> None:
    calls = 0

    def handler(request: Request) -> TransportResponse:
        nonlocal calls
        calls += 1
        if calls == 3:
            return TransportResponse(201, json={"email": "no id here"})
        return TransportResponse(201, json={"id": f"c{calls}", "email": "x"})

    path = tmp_path / "j.db"
    async with AsyncFinalPOS("k", transport=MockTransport(handler)) as client:
        results = [
            r
            async for r in client.bulk.run(
                client.customers.create, people(10), journal=path, concurrency=1
            )
        ]
        report = await client.bulk.run(client.customers.create, people(10), journal=path)
    assert [r.status for r in results] == [ItemStatus.SUCCEEDED] * 10
    misfit = [r for r in results if r.error is not None]
    assert len(misfit) == 1
    assert isinstance(misfit[0].error, ResponseValidationError)
    assert "does not fit the model" in misfit[0].reason
    assert calls == 10  # and the second run sent nothing: every row is journaled as created
    assert report.skipped == 10


# -- the no-key matching rule ----------------------------------------------------------------


def test_fields_match_in_their_typed_form() -> None:
    index = ContentIndex()
    sent = {
        "firstName": "Ann",
        "balance": "12.50",
        "birthday": "2024-01-01T10:00:00Z",
        "tags": ["a", "b"],
        "note": None,
    }
    assert index.add("d", "d", sent)
    stored = {
        "id": "c1",
        "first_name": "Ann",
        "balance": decimal.Decimal("12.5"),
        "birthday": dt.datetime(2024, 1, 1, 11, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        "tags": ["a", "b"],
        "createdAt": "2026-12-06T00:00:00Z",
    }
    fields = canonical_fields(stored)
    assert fields is not None
    assert index.see(fields, "c1")
    assert index.verdicts({}) == {"d": ("found", "c1")}


def _canonical(record: dict[str, Any]) -> Canonical:
    fields = canonical_fields(record)
    assert fields is not None
    return fields


def test_identical_rows_are_counted_and_a_near_match_is_reported() -> None:
    index = ContentIndex()
    for key in ("d", "d#1", "d#2"):
        index.add(key, "d", {"email": "ann@example.com", "name": "Ann"})
    index.add("e", "e", {"email": "bob@example.com", "name": "Bob"})
    index.see(_canonical({"email": "ann@example.com", "name": "Ann", "id": "1"}), "1")
    index.see(_canonical({"email": "ann@example.com", "name": "Ann", "id": "2"}), "2")
    index.see(_canonical({"email": "BOB@example.com ", "name": "Bob", "id": "3"}), "3")
    # Two records with that content, one of its rows known to be created already: one of the
    # three held rows is there, the others are not; Bob's record differs only in case.
    verdicts = index.verdicts({"d": 1})
    assert sorted(v for v, _ in verdicts.values()) == ["absent", "absent", "found", "nearly"]
    assert verdicts["e"] == ("nearly", "3")
    assert not index.complete({"d": 1})


# -- a fresh journal against a target that holds records -------------------------------------


async def test_a_fresh_journal_looks_rows_up_first_and_stops_reading_when_it_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("finalpos_async.bulk._job.BULK_LOOKUP_FIRST_CHUNK", 10)
    listings = 0

    async def lookup(*, skip: int = 0) -> Any:
        nonlocal listings
        listings += 1
        if listings > 1:  # the target holds records, then its listing breaks
            raise ConnectionResetError("listing broke")
        yield {"id": "c0", "email": "someone@example.com"}

    pulled = 0

    def rows() -> Any:
        nonlocal pulled
        for row in people(100):
            pulled += 1
            yield row

    sent: list[Request] = []

    def handler(request: Request) -> TransportResponse:
        sent.append(request)
        return TransportResponse(201, json={"id": "x"})

    async with AsyncFinalPOS("k", transport=MockTransport(handler)) as client:
        job = client.bulk.run(
            client.customers.create, rows(), journal=tmp_path / "j.db", lookup=lookup
        )
        report = await job
    # Without a key, the target was read once, then one chunk of rows held for the lookup by
    # content; reading what the target added since failed, so nothing was sent and the rest of
    # the input was never read (memory stays bounded).
    assert sent == []
    assert pulled == 10
    assert report.cancelled == 10
    assert report.stop_reason is not None
    assert "cannot be listed" in report.stop_reason


async def test_a_fresh_journal_with_a_key_lists_the_target_once_and_sends_only_the_new_rows(
    tmp_path: Path,
) -> None:
    listings = 0

    async def lookup(*, skip: int = 0) -> Any:
        nonlocal listings
        listings += 1
        for n in range(2 * skip, 100, 2):  # an earlier run (its journal lost) made the even rows
            yield {"id": f"c{n}", "email": f"p{n}@example.com"}

    sent: list[str] = []

    def handler(request: Request) -> TransportResponse:
        sent.append(request.headers["Idempotency-Key"])
        return TransportResponse(201, json={"id": "new"})

    async with AsyncFinalPOS("k", transport=MockTransport(handler)) as client:
        results = [
            r
            async for r in client.bulk.run(
                client.customers.create,
                people(100),
                journal=tmp_path / "j.db",
                key="email",
                lookup=lookup,
            )
        ]
    found = sorted(int(r.key[1:].split("@")[0]) for r in results if r.found)
    assert found == list(range(0, 100, 2))
    assert {r.created_id for r in results if r.found} == {f"c{n}" for n in range(0, 100, 2)}
    assert len(sent) == 50
    # One streamed pass over the target for all rows.
    assert listings == 1
