"""The `JournalStore` contract, run against both stores: the SQLite file and PostgreSQL.

Each test gets a `Stores` for one kind: `make()` opens another handle on the same journal (the
same file; the same database, where the job is chosen by `bind`), `committed()` is what another
process reading it sees now, and `spec` is the `journal=` value naming it. The PostgreSQL kind
runs against a private cluster (`postgres_cluster` in conftest.py), each test in its own schema.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from finalpos_async import AsyncFinalPOS, MockTransport, Request, TransportResponse
from finalpos_async.bulk import (
    Intent,
    Journal,
    JournalBinding,
    JournalLockedError,
    JournalMismatchError,
    JournalStore,
    PostgresJournal,
    content_digest,
    idempotency_key_for,
    job_id_for,
    journal_store,
)

BINDING = JournalBinding(
    target="https://api.example", credentials="fp-one", operation="customers.create", identity="c"
)
OTHER_OPERATION = attrs.evolve(BINDING, operation="products.create")


@attrs.frozen
class Stores:
    """One kind of journal store, as a test uses it."""

    kind: str
    spec: str  # the `journal=` value
    committed: Callable[[], dict[str, str]]  # idempotency key -> status, as another reader sees

    def make(self, **options: Any) -> JournalStore:
        if self.kind == "postgres":
            return PostgresJournal(self.spec, **options)
        return Journal(self.spec, **options)


def _sqlite_committed(path: Path) -> Callable[[], dict[str, str]]:
    def read() -> dict[str, str]:
        if not path.exists():
            return {}
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return dict(conn.execute("SELECT idempotency_key, status FROM items").fetchall())

    return read


def _postgres_committed(url: str) -> Callable[[], dict[str, str]]:
    import psycopg

    def read() -> dict[str, str]:
        with psycopg.connect(url) as conn:
            found = conn.execute("SELECT to_regclass('finalpos_journal_items')").fetchone()
            if found is None or found[0] is None:
                return {}
            rows = conn.execute("SELECT idempotency_key, status FROM finalpos_journal_items")
            return dict(rows.fetchall())

    return read


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return Stores("postgres", url, _postgres_committed(url))
    path = tmp_path / "j.db"
    return Stores("sqlite", str(path), _sqlite_committed(path))


def people(count: int) -> list[dict[str, Any]]:
    return [
        {"email": f"p{n}@example.com", "first_name": "P", "last_name": str(n)} for n in range(count)
    ]


def created(request: Request) -> TransportResponse:
    return TransportResponse(
        201, json={"id": request.headers["Idempotency-Key"][-8:], "email": "x"}
    )


# -- the selection ---------------------------------------------------------------------------


def test_a_journal_url_names_a_postgres_store_and_anything_else_a_sqlite_file(
    tmp_path: Path,
) -> None:
    assert isinstance(journal_store("postgresql://u@db.example/jobs"), PostgresJournal)
    assert isinstance(journal_store("postgres://u@db.example/jobs"), PostgresJournal)
    assert isinstance(journal_store(str(tmp_path / "j.db")), Journal)
    assert isinstance(journal_store(tmp_path / "postgresql:"), Journal)  # a path, not a URL
    # Nothing is opened (nor psycopg imported) until the run opens it.
    store = journal_store("postgresql://u:pw@db.example:5433/jobs?sslmode=require&password=pw")
    assert store.path == "postgresql://u@db.example:5433/jobs?sslmode=require"


# -- write-ahead ------------------------------------------------------------------------------


async def test_every_request_leaves_only_after_its_intent_is_committed(stores: Stores) -> None:
    seen_at_send: list[str | None] = []

    def handler(request: Request) -> TransportResponse:
        seen_at_send.append(stores.committed().get(request.headers["Idempotency-Key"]))
        return created(request)

    async with AsyncFinalPOS("k", transport=MockTransport(handler)) as client:
        report = await client.bulk.run(
            client.customers.create, people(40), journal=stores.spec, concurrency=8
        )
    assert report.succeeded == 40
    # Each request found its own row already committed as `sending` by another reader.
    assert seen_at_send == ["sending"] * 40
    assert set(stores.committed().values()) == {"succeeded"}


def test_outcomes_are_buffered_until_a_batch_fills_or_flush(stores: Stores) -> None:
    with stores.make(batch_size=3, flush_interval=3600) as journal:
        journal.bind(BINDING)
        journal.record_intents(Intent(f"k{n}", "d", f"i{n}") for n in range(4))
        journal.record("k0", "succeeded", digest="d", idempotency_key="i0", created_id="c0")
        journal.record("k1", "failed", digest="d", idempotency_key="i1", error="422")
        assert stores.committed() == dict.fromkeys(["i0", "i1", "i2", "i3"], "sending")
        entry = journal.lookup("k0")  # the buffered outcome is what this run sees
        assert entry is not None
        assert (entry.status, entry.created_id) == ("succeeded", "c0")
        journal.record("k2", "unknown", digest="d", idempotency_key="i2")  # the third: a batch
        assert stores.committed() == {
            "i0": "succeeded",
            "i1": "failed",
            "i2": "unknown",
            "i3": "sending",
        }
        journal.record("k3", "succeeded", digest="d", idempotency_key="i3")
    # close() committed the last one.
    assert stores.committed()["i3"] == "succeeded"


async def test_a_row_sending_when_a_run_ended_is_unknown_to_the_next_never_new(
    stores: Stores,
) -> None:
    sent: list[str] = []

    def handler(request: Request) -> TransportResponse:
        sent.append(request.headers["Idempotency-Key"])
        return created(request)

    rows = people(3)
    async with AsyncFinalPOS("k", transport=MockTransport(handler)) as client:
        job = client.bulk.run(client.customers.create, rows, journal=stores.spec)
        journal = job.open_journal()
        assert journal is not None
        assert journal.job_id is not None
        # What a run killed while sending row 0 leaves: its intent, no outcome.
        key = content_digest(rows[0])
        journal.record_intents(
            [Intent(key, key, idempotency_key_for(journal.job_id, key, rows[0]))]
        )
        journal.close()
        report = await client.bulk.run(client.customers.create, rows, journal=stores.spec)
        again = await client.bulk.run(client.customers.create, rows, journal=stores.spec)
    assert (report.succeeded, report.unknown) == (2, 1)
    assert len(sent) == 2
    assert (again.skipped, again.unknown, len(sent)) == (2, 1, 2)  # still never sent blindly


# -- the job and its binding -------------------------------------------------------------------


def test_the_job_id_is_the_jobs_whatever_the_journal(stores: Stores) -> None:
    with stores.make() as one:
        assert one.bind(BINDING) == job_id_for(BINDING) == one.job_id
        assert one.binding == BINDING
    with stores.make() as two:
        assert two.bind(BINDING) == job_id_for(BINDING)
        assert two.binding == BINDING


def test_a_rotated_key_is_refused_with_its_way_on_and_accepted_when_said(stores: Stores) -> None:
    with stores.make() as journal:
        job_id = journal.bind(BINDING)
        journal.record("k", "succeeded", digest="d", idempotency_key="i")
    rotated = attrs.evolve(BINDING, credentials="fp-two")
    with stores.make() as journal:
        with pytest.raises(JournalMismatchError) as caught:
            journal.bind(rotated)
        assert caught.value.differs == ("credentials",)
        assert "rotated" in str(caught.value)
        assert caught.value.path == journal.path
        assert journal.bind(rotated, rotated_credentials=True) == job_id
        assert journal.binding == rotated
        entry = journal.lookup("k")
        assert entry is not None
        assert entry.status == "succeeded"


def test_a_job_with_records_refuses_another_operation_one_without_takes_it(
    stores: Stores,
) -> None:
    with stores.make() as journal:
        journal.bind(BINDING, job_id="job-a")
    with stores.make() as journal:  # no records yet: nothing to protect
        assert journal.bind(OTHER_OPERATION, job_id="job-a") == "job-a"
        journal.record("k", "succeeded", digest="d", idempotency_key="i")
    with stores.make() as journal:
        with pytest.raises(JournalMismatchError) as caught:
            journal.bind(BINDING, job_id="job-a")
        assert caught.value.differs == ("operation",)
        assert caught.value.recorded == OTHER_OPERATION
        assert "customers.create" in str(caught.value)


def test_one_writer_at_a_time_the_second_is_refused_until_the_first_closes(
    stores: Stores,
) -> None:
    first = stores.make().open()
    first.bind(BINDING)
    second = stores.make()
    with pytest.raises(JournalLockedError) as caught:
        second.open().bind(BINDING)  # SQLite refuses at open(), PostgreSQL at bind() (the job)
    assert "wait for it to finish" in str(caught.value)
    second.close()
    first.close()
    with stores.make() as third:
        assert third.bind(BINDING) == job_id_for(BINDING)


# -- items -----------------------------------------------------------------------------------


def test_count_seen_counts_names_and_bind_starts_a_new_count(stores: Stores) -> None:
    with stores.make() as journal:
        journal.bind(BINDING)
        assert [journal.count_seen(n) for n in ("a", "b", "a", "a", "b")] == [0, 0, 1, 2, 1]
        journal.bind(BINDING)
        assert journal.count_seen("a") == 0


def test_a_record_after_a_failure_keeps_the_failed_content_and_adds_attempts(
    stores: Stores,
) -> None:
    with stores.make() as journal:
        journal.bind(BINDING)
        journal.record("k", "failed", digest="v1", idempotency_key="i1", attempts=2, error="422")
        journal.flush()
        journal.record_intents([Intent("k", "v2", "i2")])
        journal.record("k", "succeeded", digest="v2", idempotency_key="i2", created_id="c9")
        journal.flush()
        journal.record("k", "succeeded", digest="v2", idempotency_key="i2", attempts=1)
        journal.flush()
        entry = journal.lookup("k")
    assert entry is not None
    assert (entry.status, entry.digest, entry.source_digest) == ("succeeded", "v2", "v1")
    assert (entry.created_id, entry.attempts, entry.error) == ("c9", 3, None)
    assert entry.matches("v1")
    assert entry.matches("v2")


def test_a_withdrawn_intent_is_forgotten_an_outcome_is_not(stores: Stores) -> None:
    with stores.make() as journal:
        journal.bind(BINDING)
        journal.record("done", "succeeded", digest="d", idempotency_key="i0")
        journal.record_intents([Intent("gone", "d", "i1"), Intent("done", "d", "i0")])
        journal.withdraw("gone")
        assert journal.lookup("gone") is None
        journal.record("done", "succeeded", digest="d", idempotency_key="i0")
        journal.flush()
        journal.withdraw("done")  # not `sending` once committed: an outcome stays
        journal.flush()
        assert journal.lookup("gone") is None
        assert journal.counts() == {"succeeded": 1}


def test_created_records_are_listed_newest_first_and_counted_by_content(stores: Stores) -> None:
    with stores.make() as journal:
        journal.bind(BINDING)
        assert not journal.has_items()
        for n, key in enumerate(["abc", "abc#1", "abc#2", "abd", "ab"]):
            journal.record(key, "succeeded", digest=key, idempotency_key=f"i{n}", created_id=key)
        journal.record("abc#3", "failed", digest="abc", idempotency_key="i9")
        assert journal.has_items()
        assert journal.created_ids(2) == ["ab", "abd"]
        assert journal.created_with_content("abc") == 3
        assert journal.counts() == {"succeeded": 5, "failed": 1}
    with stores.make() as journal:
        journal.bind(BINDING)
        assert journal.has_items()
        assert journal.created_ids(1) == ["ab"]


def test_counts_match_a_counter_over_many_names_with_repeats(stores: Stores) -> None:
    names = [f"name-{n % 1000}" for n in range(0, 7000, 3)] + [f"x{n}" for n in range(1500)]
    before: collections.Counter[str] = collections.Counter()
    expected = []
    for name in names:
        expected.append(before[name])
        before[name] += 1
    with stores.make() as journal:
        journal.bind(BINDING)
        assert [journal.count_seen(name) for name in names] == expected
        assert max(expected) == 2  # repeats were counted, not only first mentions


def test_a_record_written_before_its_name_is_counted_is_found(stores: Stores) -> None:
    # `finalpos import` of a failed-rows file records the user's answers (`"exists": true`)
    # before the engine names those rows: the first count of such a name must still find it.
    with stores.make(batch_size=1) as journal:
        journal.bind(BINDING)
        journal.count_seen("a")
        journal.record_intents([Intent("a", "d", "ia")])
        journal.record("b", "succeeded", digest="d", idempotency_key="ib", created_id="cb")
        assert journal.count_seen("b") == 0
        entry = journal.lookup("b")
        assert entry is not None
        assert (entry.status, entry.created_id) == ("succeeded", "cb")
        assert journal.count_seen("c") == 0
        assert journal.lookup("c") is None


def test_the_readme_says_how_to_put_the_journal_on_postgres_and_what_it_keeps() -> None:
    readme = Path(__file__).parents[2] / "README.md"
    text = " ".join(readme.read_text(encoding="utf-8").split())
    section = text.split("### The journal on PostgreSQL", 1)[1].split("## Sandbox", 1)[0]
    for words in (
        "pip install 'finalpos[postgres]'",
        "--journal postgresql://importer@db.internal/finalpos",
        'journal="postgresql://importer@db.internal/finalpos"',
        "starts with `postgresql://` or `postgres://` opens a `PostgresJournal`",
        "committed (with `synchronous_commit` on, so on the server's disk) before any of those "
        "requests leaves",
        "Many jobs in one database",
        "One writer per job",
        "`JournalLockedError` naming the job",
        "names the URL without its password",
        "PGPASSWORD",
    ):
        assert words in section, words
