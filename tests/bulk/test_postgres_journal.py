"""What only the PostgreSQL journal has: many jobs in one database, a writer lock per job, and
errors that name the URL without its password (the shared contract: test_journal_contract.py)."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import psycopg
import pytest
from postgres_server import PASSWORD, PostgresServer
from redis_server import free_port

from finalpos_async import AsyncFinalPOS, MockTransport, Request, TransportResponse
from finalpos_async.bulk import (
    JournalBinding,
    JournalDamagedError,
    JournalError,
    JournalLockedError,
    JournalWriteError,
    PostgresJournal,
)
from finalpos_async.sandbox import Sandbox
from finalpos_sync import FinalPOS

BINDING = JournalBinding(
    target="https://api.example", credentials="fp-one", operation="customers.create", identity="c"
)


def people(count: int, prefix: str = "p") -> list[dict[str, Any]]:
    return [
        {"email": f"{prefix}{n}@example.com", "first_name": "P", "last_name": str(n)}
        for n in range(count)
    ]


def created(request: Request) -> TransportResponse:
    return TransportResponse(
        201, json={"id": request.headers["Idempotency-Key"][-8:], "email": "x"}
    )


def items_per_job(url: str) -> dict[str, dict[str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT job_id, status, COUNT(*) FROM finalpos_journal_items GROUP BY 1, 2"
        ).fetchall()
    found: dict[str, dict[str, int]] = {}
    for job, status, n in rows:
        found.setdefault(job, {})[status] = n
    return found


async def test_two_jobs_run_side_by_side_in_one_database(postgres_url: str) -> None:
    async def importing(request: Request) -> TransportResponse:
        await asyncio.sleep(0)  # both runs interleave on the loop
        return created(request)

    async with AsyncFinalPOS("k", transport=MockTransport(importing)) as client:
        one, two = await asyncio.gather(
            client.bulk.run(
                client.customers.create, people(60, "a"), journal=postgres_url, job_id="job-a"
            ),
            client.bulk.run(
                client.customers.create,
                people(40, "b"),
                journal=postgres_url,
                job_id="job-b",
                target="https://second.example",
            ),
        )
        assert (one.succeeded, two.succeeded) == (60, 40)
        assert items_per_job(postgres_url) == {
            "job-a": {"succeeded": 60},
            "job-b": {"succeeded": 40},
        }
        # Each job resumes on its own: a re-run of one skips its rows and nothing of the other.
        again = await client.bulk.run(
            client.customers.create, people(60, "a"), journal=postgres_url, job_id="job-a"
        )
    assert (again.skipped, again.succeeded) == (60, 0)
    with psycopg.connect(postgres_url) as conn:
        jobs = conn.execute("SELECT job_id, target FROM finalpos_journal_jobs ORDER BY 1")
        assert jobs.fetchall() == [
            ("job-a", "https://api.finalpos.com"),
            ("job-b", "https://second.example"),
        ]


async def test_a_second_writer_of_a_job_is_refused_before_anything_is_sent(
    postgres_url: str,
) -> None:
    sent: list[str] = []

    def handler(request: Request) -> TransportResponse:
        sent.append(request.headers["Idempotency-Key"])
        return created(request)

    with PostgresJournal(postgres_url) as holder:
        job = holder.bind(BINDING, job_id="shared")
        async with AsyncFinalPOS("k", transport=MockTransport(handler)) as client:
            with pytest.raises(JournalLockedError) as caught:
                await client.bulk.run(
                    client.customers.create, people(5), journal=postgres_url, job_id="shared"
                )
            # Another job in the same database is not held back.
            other = await client.bulk.run(
                client.customers.create, people(5), journal=postgres_url, job_id="other"
            )
    assert len(sent) == other.succeeded == 5
    message = str(caught.value)
    assert f"job {job}" in message
    assert "wait for it to finish" in message
    assert "finalpos journal" in message  # the holder, as pg_stat_activity names it
    assert PASSWORD not in message
    assert caught.value.path == holder.path


def test_errors_name_the_url_without_its_password(postgres_cluster: PostgresServer) -> None:
    wrong = postgres_cluster.url(password="not-" + PASSWORD)
    with pytest.raises(JournalWriteError) as caught:
        PostgresJournal(wrong).open()
    assert "password" in str(caught.value)
    assert "not-" + PASSWORD not in str(caught.value)
    assert caught.value.path == f"postgresql://finalpos@127.0.0.1:{postgres_cluster.port}/postgres"
    assert caught.value.__cause__ is None  # psycopg's error (and its locals) are not chained

    closed = f"postgresql://finalpos:{PASSWORD}@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(JournalWriteError) as caught:
        PostgresJournal(closed).open()
    assert "nothing was sent" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(PostgresJournal(closed))


def test_tables_that_are_not_a_journals_are_damaged(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE finalpos_journal_items (job_id text)")
    with pytest.raises(JournalDamagedError) as caught:
        PostgresJournal(postgres_url).open()
    assert "damaged" in str(caught.value)
    assert PASSWORD not in str(caught.value)


ROWS = 200  # more than one intent window (BULK_INTENT_WINDOW)


async def test_a_lost_connection_mid_run_stops_it_and_the_rerun_resolves_its_rows(
    postgres_url: str,
) -> None:
    sent: list[str] = []

    def handler(request: Request) -> TransportResponse:
        sent.append(request.headers["Idempotency-Key"])
        if len(sent) == 10:
            # The database drops the journal's connection (a failover, a restart, an admin).
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'finalpos journal'"
                )
        return created(request)

    async with AsyncFinalPOS("k", transport=MockTransport(handler)) as client:
        with pytest.raises(JournalWriteError) as caught:
            await client.bulk.run(
                client.customers.create, people(ROWS), journal=postgres_url, concurrency=1
            )
        assert "run the same command again" in str(caught.value)
        assert PASSWORD not in str(caught.value)
        first = len(sent)
        report = await client.bulk.run(client.customers.create, people(ROWS), journal=postgres_url)
    # The run stopped at its next commit (the next intent window): rows sent before the drop
    # whose outcome was not committed stay `sending`, unknown to the re-run (no lookup given),
    # never sent again blindly; the rest are sent once.
    assert 10 <= first < ROWS
    assert report.skipped + report.unknown == first
    assert report.unknown >= 1
    assert len(sent) == ROWS
    assert len(set(sent)) == ROWS


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    with pytest.raises(JournalError) as caught:
        PostgresJournal("postgresql://u:secret@db.example/jobs").open()
    assert "pip install 'finalpos[postgres]'" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_the_sync_client_takes_the_same_url(postgres_url: str) -> None:
    with Sandbox().run_in_thread() as sb, FinalPOS(api_key=sb.api_key, base_url=sb.url) as client:
        first = client.bulk.run(
            client.customers.create, people(20), journal=postgres_url, key="email"
        ).wait()
        second = client.bulk.run(
            client.customers.create, people(25), journal=postgres_url, key="email"
        ).wait()
        stored = [c.email for c in client.customers.list()]
    assert (first.succeeded, second.skipped, second.succeeded) == (20, 20, 5)
    assert sorted(stored) == sorted(p["email"] for p in people(25))


def test_workers_starting_at_once_on_an_empty_database_make_the_tables_once(
    postgres_url: str,
) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []
    jobs: list[str] = []

    def worker(n: int) -> None:
        try:
            start.wait(timeout=30)
            with PostgresJournal(postgres_url) as journal:
                jobs.append(journal.bind(BINDING, job_id=f"job-{n}"))
                journal.record(f"k{n}", "succeeded", digest="d", idempotency_key=f"i{n}")
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(jobs) == [f"job-{n}" for n in range(4)]
    assert items_per_job(postgres_url) == {f"job-{n}": {"succeeded": 1} for n in range(4)}
