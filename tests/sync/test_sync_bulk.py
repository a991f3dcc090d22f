"""`finalpos_sync.FinalPOS().bulk.run(...)`: the async bulk engine driven from plain threads."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import finalpos_sync
from finalpos_async._constants import SYNC_BULK_BUFFER
from finalpos_async.bulk import JournalMismatchError, TargetChangedError
from finalpos_async.sandbox import Sandbox
from finalpos_sync import FinalPOS
from finalpos_sync.bulk import ItemStatus, Journal, RateLimiter, SyncBulkJob
from finalpos_sync.types import Customer

DEADLINE = 60.0  # seconds any wait here may take before the test fails
REFUSED = {"x-sandbox-fault": "422"}  # the API refuses the row: certainly not created
FAIL_ALWAYS = {"x-sandbox-fault": "500,500,500,500,500"}  # more 500s than attempts


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox().run_in_thread() as sb:
        yield sb


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[FinalPOS]:
    sandbox.reset()
    # Retries without real waiting.
    with FinalPOS(
        api_key=sandbox.api_key, base_url=sandbox.url, backoff_base=0.001, backoff_cap=0.002
    ) as c:
        yield c


def customer_rows(
    count: int, *, failing: frozenset[int] = frozenset(), fault: dict[str, str] = REFUSED
) -> Iterator[dict[str, Any]]:
    for n in range(count):
        row: dict[str, Any] = {"email": f"bulk{n}@example.com", "first_name": f"F{n}"}
        row["last_name"] = "Sync"
        if n in failing:
            row["extra_headers"] = fault
        yield row


def stored_emails(client: FinalPOS) -> list[str | None]:
    return [c.email for c in client.customers.list()]


def test_a_thousand_customers_arrive_once_and_the_counts_add_up(client: FinalPOS) -> None:
    job = client.bulk.run(client.customers.create, customer_rows(1000), concurrency=16)
    assert isinstance(job, SyncBulkJob)
    results = list(job)
    assert len(results) == 1000
    assert {r.index for r in results} == set(range(1000))
    assert all(r.status is ItemStatus.SUCCEEDED for r in results)
    assert all(isinstance(r.value, Customer) for r in results)
    assert len({r.created_id for r in results}) == 1000
    report = job.report
    assert (report.submitted, report.succeeded, report.failed, report.in_flight) == (
        1000,
        1000,
        0,
        0,
    )
    assert report.attempts == 1000
    assert report.outcome == "completed"
    emails = stored_emails(client)
    assert len(emails) == 1000
    assert set(emails) == {f"bulk{n}@example.com" for n in range(1000)}


def test_a_refused_item_is_failed_with_its_error_and_attempts(client: FinalPOS) -> None:
    results = {
        r.index: r
        for r in client.bulk.run(client.customers.create, customer_rows(10, failing=frozenset({3})))
    }
    failed = results[3]
    assert failed.status is ItemStatus.FAILED
    assert isinstance(failed.error, finalpos_sync.UnprocessableEntityError)
    assert failed.attempts == 1  # a 4xx is not retried
    assert "(422)" in failed.reason
    assert all(results[n].ok for n in range(10) if n != 3)
    assert len(stored_emails(client)) == 9


def test_an_item_with_fields_the_method_does_not_take_names_the_method_as_called(
    client: FinalPOS,
) -> None:
    # The run calls the async twin; the reason still names the method the caller passed
    # (`customers.create`), not `AsyncCustomers.create()`. Nothing is sent for such an item.
    rows = [
        {"email": "one@example.com"},
        {"email": "two@example.com", "first_name": "T", "last_name": "Two", "nickname": "x"},
    ]
    results = sorted(client.bulk.run(client.customers.create, rows), key=lambda r: r.index)
    reasons = [r.reason or "" for r in results]
    assert [r.status for r in results] == [ItemStatus.FAILED, ItemStatus.FAILED]
    assert "customers.create(): missing 2 required keyword-only arguments" in reasons[0]
    assert "customers.create(): got an unexpected keyword argument 'nickname'" in reasons[1]
    assert not any("Async" in reason for reason in reasons)
    assert [r.attempts for r in results] == [0, 0]
    assert stored_emails(client) == []


def test_a_5xx_item_is_unknown_and_not_retried_in_a_bulk_run(client: FinalPOS) -> None:
    # The server may have created it before failing: the client does not repeat the POST.
    rows = customer_rows(10, failing=frozenset({3}), fault=FAIL_ALWAYS)
    results = {r.index: r for r in client.bulk.run(client.customers.create, rows)}
    unknown = results[3]
    assert unknown.status is ItemStatus.UNKNOWN
    assert isinstance(unknown.error, finalpos_sync.InternalServerError)
    assert unknown.error.maybe_processed
    assert unknown.attempts == 1
    assert "InternalServerError (500)" in unknown.reason
    assert all(results[n].ok for n in range(10) if n != 3)
    assert len(stored_emails(client)) == 9


def test_resend_unknown_lets_the_client_retry_a_5xx_under_the_same_key(client: FinalPOS) -> None:
    rows = customer_rows(10, failing=frozenset({3}), fault=FAIL_ALWAYS)
    results = {
        r.index: r for r in client.bulk.run(client.customers.create, rows, resend_unknown=True)
    }
    unknown = results[3]
    assert unknown.status is ItemStatus.UNKNOWN
    # Twice the first attempt and the client's 3 retries: the main pass, then one settle round
    # (which settled nothing, so the run ended there).
    assert unknown.attempts == 8
    assert len(stored_emails(client)) == 9


def test_wait_returns_the_report(client: FinalPOS) -> None:
    report = client.bulk.run(
        client.customers.create, customer_rows(25, failing=frozenset({1}))
    ).wait()
    assert (report.submitted, report.succeeded, report.failed) == (25, 24, 1)
    assert report.outcome == "completed"


def test_journal_rerun_skips_done_items_and_retries_failed_ones(
    client: FinalPOS, tmp_path: Path
) -> None:
    journal = tmp_path / "customers.journal"
    # key="email": the rows refused in the first run are the same rows once fixed.
    first = client.bulk.run(
        client.customers.create,
        customer_rows(30, failing=frozenset({5, 7})),
        journal=journal,
        key="email",
    )
    assert sorted(r.index for r in first if not r.ok) == [5, 7]
    assert (first.report.succeeded, first.report.failed) == (28, 2)
    with Journal(journal) as log:
        assert log.counts() == {"succeeded": 28, "failed": 2}

    second = client.bulk.run(
        client.customers.create, customer_rows(30), journal=journal, key="email"
    )
    statuses = {r.index: r.status for r in second}
    assert sorted(n for n, s in statuses.items() if s is ItemStatus.SUCCEEDED) == [5, 7]
    assert second.report.skipped == 28
    assert second.job_id == first.job_id
    emails = stored_emails(client)
    assert len(emails) == 30 == len(set(emails))  # no duplicates
    with Journal(journal) as log:
        assert log.counts() == {"succeeded": 30}


def test_inputs_are_pulled_lazily_in_the_calling_thread(client: FinalPOS) -> None:
    threads: set[int] = set()
    pulled = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for row in customer_rows(2000):
            threads.add(threading.get_ident())
            pulled += 1
            yield row

    job = client.bulk.run(client.customers.create, rows(), concurrency=8)
    results = iter(job)
    next(results)
    # One batch per request of the engine, results bounded by the buffer: far from all 2,000.
    assert pulled <= 3 * job.concurrency + 2 * SYNC_BULK_BUFFER < 2000
    assert sum(1 for _ in results) == 1999
    assert threads == {threading.get_ident()}


def test_stop_from_the_loop_body_ends_the_run_gracefully(client: FinalPOS) -> None:
    job = client.bulk.run(client.customers.create, customer_rows(5000), concurrency=4)
    seen = 0
    for result in job:
        assert result.ok
        seen += 1
        if seen == 10:
            job.stop()
    report = job.report
    assert report.outcome == "stopped"
    assert report.submitted == report.succeeded == seen < 5000
    assert len(stored_emails(client)) == seen


def test_leaving_the_loop_early_drains_and_counts_everything(client: FinalPOS) -> None:
    job = client.bulk.run(client.customers.create, customer_rows(5000), concurrency=4)
    with job:
        for _ in job:
            break
    report = job.report
    assert report.outcome == "cancelled"
    assert report.in_flight == 0
    assert report.submitted == report.succeeded + report.cancelled < 5000


def test_an_input_error_is_raised_after_the_drain(client: FinalPOS) -> None:
    def rows() -> Iterator[dict[str, Any]]:
        yield from customer_rows(5)
        raise ValueError("row 6 is unreadable")

    job = client.bulk.run(client.customers.create, rows())
    with pytest.raises(ValueError, match="row 6 is unreadable"):
        job.wait()
    assert job.report.submitted == 5
    assert job.report.in_flight == 0


def test_a_job_runs_once(client: FinalPOS) -> None:
    job = client.bulk.run(client.customers.create, customer_rows(2))
    job.wait()
    with pytest.raises(RuntimeError, match="runs once"):
        job.wait()


def test_bad_arguments_are_refused_in_the_calling_thread(client: FinalPOS) -> None:
    def create(**fields: Any) -> None:
        return None

    with pytest.raises(TypeError, match="operation must be a method of a finalpos_sync resource"):
        client.bulk.run(create, customer_rows(1))
    with pytest.raises(TypeError, match="items must be an iterable"):
        client.bulk.run(client.customers.create, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency"):
        client.bulk.run(client.customers.create, customer_rows(1), concurrency=0)


def test_raw_response_twin_and_client_rate_limiter_are_used(sandbox: Sandbox) -> None:
    sandbox.reset()
    limiter = RateLimiter(1e6)  # never waits; counts the attempts it lets through
    with FinalPOS(api_key=sandbox.api_key, base_url=sandbox.url, rate_limit=limiter) as client:
        job = client.bulk.run(client.customers.with_raw_response.create, customer_rows(20))
        assert job.rate_limiter is limiter is client.rate_limiter
        results = list(job)
    assert all(isinstance(r.value, Customer) for r in results)
    # One token per HTTP attempt, taken by the client: the run adds none of its own.
    assert limiter.acquired == 20


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_drains_records_in_the_journal_and_reraises(
    client: FinalPOS, tmp_path: Path
) -> None:
    started = threading.Event()
    hold = asyncio.Event()  # never set: items 3+ stay in flight until cancelled

    async def create(
        *, n: int, idempotency_key: str, retry_unsafe: bool | None = None
    ) -> dict[str, Any]:
        if n < 3:
            return {"id": f"id-{n}"}
        if n == 5:
            started.set()
        await hold.wait()
        raise AssertionError("unreachable")

    def interrupt() -> None:
        if started.wait(DEADLINE):
            os.kill(os.getpid(), signal.SIGINT)

    journal = tmp_path / "interrupted.journal"
    job = client.bulk.run(
        create, ({"n": n} for n in range(100)), concurrency=4, journal=journal, drain_timeout=0.2
    )
    thread = threading.Thread(target=interrupt)
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in job:
                pass
    finally:
        thread.join(DEADLINE)
    report = job.report
    assert report.outcome == "cancelled"
    assert report.in_flight == 0
    assert report.succeeded == 3
    # Items 3+ were sent and never answered: unknown (they may have been created).
    assert report.unknown >= 1
    assert report.submitted == report.succeeded + report.unknown + report.cancelled
    with Journal(journal) as log:
        assert log.counts() == {"succeeded": 3, "unknown": report.unknown}


def test_stop_from_another_thread_yields_the_stragglers_as_unknown(client: FinalPOS) -> None:
    started = threading.Event()
    hold = asyncio.Event()  # never set: items 3+ stay in flight until the drain deadline

    async def create(
        *, n: int, idempotency_key: str, retry_unsafe: bool | None = None
    ) -> dict[str, Any]:
        if n < 3:
            return {"id": f"id-{n}"}
        if n == 5:
            started.set()
        await hold.wait()
        raise AssertionError("unreachable")

    job = client.bulk.run(create, ({"n": n} for n in range(100)), concurrency=4)

    def stop_when_started() -> None:
        if started.wait(DEADLINE):
            job.stop(drain_timeout=0.1)

    thread = threading.Thread(target=stop_when_started)
    thread.start()
    try:
        results = list(job)
    finally:
        thread.join(DEADLINE)
    statuses = [r.status for r in results]
    assert statuses.count(ItemStatus.SUCCEEDED) == 3
    # Sent and cancelled in flight at the drain deadline: they may have been created.
    assert statuses.count(ItemStatus.UNKNOWN) == len(results) - 3 >= 1
    assert all("cancelled in flight" in r.reason for r in results if not r.ok)
    assert job.report.outcome == "stopped"
    assert job.report.in_flight == 0
    assert job.stopping


LOST_ANSWER = {"x-sandbox-fault": "503-after"}  # created, then answered 503: the answer is lost


@pytest.mark.parametrize("how", ["list-method", "function"])
def test_lost_answers_are_found_by_a_sync_lookup(client: FinalPOS, how: str) -> None:
    # A list method runs its async twin on the loop; any other function runs in a worker
    # thread, where it may call this client (pages of 7: several calls).
    lookup = (
        client.customers.list
        if how == "list-method"
        else lambda skip=0: client.customers.list(limit=7, skip=skip)
    )
    rows = customer_rows(20, failing=frozenset({4, 9}), fault=LOST_ANSWER)
    job = client.bulk.run(client.customers.create, rows, key="email", lookup=lookup)
    results = {r.index: r for r in job}
    assert sorted(n for n, r in results.items() if r.found) == [4, 9]
    assert all(r.status is ItemStatus.SUCCEEDED for r in results.values())
    report = job.report
    assert (report.succeeded, report.found, report.unknown) == (20, 2, 0)
    assert report.lookup_records >= 2
    emails = stored_emails(client)
    assert len(emails) == 20 == len(set(emails))


def test_a_sync_retrieve_function_refuses_a_target_that_was_reset(
    sandbox: Sandbox, client: FinalPOS, tmp_path: Path
) -> None:
    journal = tmp_path / "customers.journal"
    assert client.bulk.run(client.customers.create, customer_rows(5), journal=journal).wait()
    sandbox.reset()
    job = client.bulk.run(
        client.customers.create,
        customer_rows(5),
        journal=journal,
        retrieve=lambda ident: client.customers.retrieve(ident),
    )
    with pytest.raises(TargetChangedError):
        job.wait()
    assert job.report.submitted == 0
    assert stored_emails(client) == []


def test_open_journal_refuses_another_operation_before_the_run(
    client: FinalPOS, tmp_path: Path
) -> None:
    journal = tmp_path / "customers.journal"
    client.bulk.run(client.customers.create, customer_rows(3), journal=journal).wait()
    job = client.bulk.run(client.customers.create, customer_rows(3), journal=journal)
    opened = job.open_journal()
    assert opened is not None
    assert opened.binding is not None
    assert opened.binding.operation == "customers.create"
    assert job.wait().skipped == 3

    other = client.bulk.run(
        client.products.create, iter([{"name": "Tea", "price": "2.50"}]), journal=journal
    )
    with pytest.raises(JournalMismatchError) as raised:
        other.open_journal()
    assert raised.value.differs == ("operation",)
    assert len(stored_emails(client)) == 3
