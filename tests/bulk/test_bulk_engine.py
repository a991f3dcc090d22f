"""The bulk engine: against fake operations (counts, bounds, streaming, failures, stop, cancel,
journal binding) and against the sandbox (identity across runs, lost answers, fatal errors), where
every test checks what the server ends up holding."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from conftest import counting_trace
from sandbox_proc import duplicates, records

from finalpos_async import (
    APIConnectionError,
    AsyncFinalPOS,
    MockTransport,
    RawResponse,
    Request,
    TransportResponse,
)
from finalpos_async.bulk import (
    BulkRunner,
    ItemStatus,
    Journal,
    JournalLockedError,
    JournalMismatchError,
    RateLimiter,
    TargetChangedError,
    content_digest,
    idempotency_key_for,
)
from finalpos_async.sandbox import FaultConfig, Sandbox
from finalpos_async.types import Customer


class Recorder:
    """A fake create operation: records calls, tracks concurrency, fails or stalls on demand."""

    def __init__(
        self,
        *,
        fail: set[int] | None = None,
        slow: set[int] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.fail = fail or set()
        self.slow = slow or set()
        self.delay = delay
        self.calls: list[tuple[int, str]] = []
        self.active = 0
        self.peak = 0
        self.release = asyncio.Event()

    async def __call__(self, *, n: int, idempotency_key: str, **fields: Any) -> dict[str, Any]:
        self.calls.append((n, idempotency_key))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if n in self.slow:
                await self.release.wait()
            elif self.delay:
                await asyncio.sleep(self.delay)
            else:
                await asyncio.sleep(0)
            if n in self.fail:
                raise FakeStatusError(f"row {n} refused", attempts=3)
            return {"id": f"id-{n}", "n": n, **fields}
        finally:
            self.active -= 1


class FakeStatusError(Exception):
    """Stands in for a typed API error carrying the client's attempt count."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = 400
        self.attempts = attempts


def row(n: int) -> dict[str, Any]:
    return {"n": n, "email": f"user{n}@example.com"}


def rows(count: int) -> Iterator[dict[str, Any]]:
    for n in range(count):
        yield row(n)


@attrs.define
class FakeClient:
    """What the engine reads from a client: where it sends, whose key, how many connections."""

    base_url: str = "https://api.one.example"
    credentials_fingerprint: str = "fingerprint-one"
    pool_limit_per_host: int = 100
    is_embedded_sandbox: bool = False
    rate_limiter: RateLimiter | None = None


async def test_every_item_succeeds_and_counts_add_up() -> None:
    op = Recorder()
    job = BulkRunner().run(op, rows(100), concurrency=8)
    results = [r async for r in job]
    assert len(results) == 100
    assert {r.index for r in results} == set(range(100))
    assert all(r.status is ItemStatus.SUCCEEDED for r in results)
    assert all(r.created_id == f"id-{r.index}" for r in results)
    assert job.report.succeeded == 100
    assert job.report.submitted == 100
    assert job.report.in_flight == 0
    assert job.report.outcome == "completed"
    assert len({key for _, key in op.calls}) == 100


async def test_concurrency_is_never_exceeded() -> None:
    op = Recorder(delay=0.002)
    report = await BulkRunner().run(op, rows(200), concurrency=5)
    assert report.succeeded == 200
    assert op.peak == 5


async def test_inputs_are_pulled_lazily_and_results_stream() -> None:
    pulled = 0

    def source() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for row in rows(10_000):
            pulled += 1
            yield row

    job = BulkRunner().run(Recorder(), source(), concurrency=4)
    async for _first in job:
        break_pulled = pulled
        break
    await job.__aexit__(None, None, None)
    # Only a slot's worth was read ahead, not the whole input.
    assert break_pulled <= 4 + 1


async def test_live_tasks_stay_bounded_on_a_large_input() -> None:
    peak_tasks = 0

    async def op(*, n: int, idempotency_key: str, **_: Any) -> dict[str, Any]:
        nonlocal peak_tasks
        peak_tasks = max(peak_tasks, len(asyncio.all_tasks()))
        return {"id": str(n)}

    report = await BulkRunner().run(op, rows(5_000), concurrency=16)
    assert report.succeeded == 5_000
    # 16 item tasks plus the test's own task: no list of all tasks anywhere.
    assert peak_tasks <= 16 + 1


async def test_async_iterable_inputs_are_accepted() -> None:
    async def source() -> AsyncIterator[dict[str, Any]]:
        for row in rows(30):
            await asyncio.sleep(0)
            yield row

    report = await BulkRunner().run(Recorder(), source(), concurrency=3)
    assert report.succeeded == 30


async def test_typed_failures_are_reported_with_attempts_and_reason() -> None:
    op = Recorder(fail={3, 7})
    results = {r.index: r async for r in BulkRunner().run(op, rows(10))}
    failed = [r for r in results.values() if r.status is ItemStatus.FAILED]
    assert sorted(r.index for r in failed) == [3, 7]
    assert all(isinstance(r.error, FakeStatusError) for r in failed)
    assert all(r.attempts == 3 for r in failed)
    assert results[3].reason == "FakeStatusError (400): row 3 refused"
    assert not results[3].ok


async def test_failures_never_stop_the_run_and_counts_add_up() -> None:
    op = Recorder(fail=set(range(0, 100, 3)))
    report = await BulkRunner().run(op, rows(100), concurrency=7)
    assert report.failed == 34
    assert report.succeeded == 66
    assert report.succeeded + report.failed == report.submitted == 100
    assert report.attempts == 66 + 34 * 3


async def test_bad_items_fail_with_a_message_naming_them() -> None:
    items: list[Any] = [{"n": 0}, ["not", "a", "mapping"], {"n": 2}]
    results = [r async for r in BulkRunner().run(Recorder(), items)]
    bad = [r for r in results if r.status is ItemStatus.FAILED]
    assert len(bad) == 1
    assert "bulk item 1 is a list" in str(bad[0].error)


async def test_missing_key_field_fails_that_item_only() -> None:
    items = [{"n": 0, "email": "a@x.io"}, {"n": 1}]
    results = {r.index: r async for r in BulkRunner().run(Recorder(), items, key="email")}
    assert results[0].status is ItemStatus.SUCCEEDED
    assert results[0].key == "a@x.io"
    assert results[1].status is ItemStatus.FAILED
    assert "no field 'email'" in str(results[1].error)


async def test_raw_responses_give_their_attempt_count() -> None:
    async def op(**_: Any) -> RawResponse[Any]:
        return RawResponse(201, {}, b'{"id": "abc"}', 0.01, 4, None, "POST", "https://x.test/")

    results = [r async for r in BulkRunner().run(op, [{"a": 1}])]
    assert results[0].attempts == 4
    assert results[0].value == {"id": "abc"}
    assert results[0].created_id == "abc"


def test_idempotency_key_is_stable_and_depends_on_job_key_and_content() -> None:
    item: Mapping[str, Any] = {"email": "a@x.io", "tags": ["x"]}
    key = idempotency_key_for("job1", "7", item)
    assert key == idempotency_key_for("job1", "7", dict(reversed(list(item.items()))))
    assert key != idempotency_key_for("job2", "7", item)
    assert key != idempotency_key_for("job1", "8", item)
    assert key != idempotency_key_for("job1", "7", {**item, "email": "b@x.io"})
    assert key.startswith("bulk-")


async def test_same_job_id_sends_the_same_keys_on_a_rerun() -> None:
    first, second = Recorder(), Recorder()
    await BulkRunner().run(first, rows(20), job_id="job-a")
    await BulkRunner().run(second, rows(20), job_id="job-a")
    assert sorted(first.calls) == sorted(second.calls)


async def test_journal_rerun_skips_done_items_and_retries_failed_ones(tmp_path: Path) -> None:
    path = tmp_path / "job.journal"
    first = Recorder(fail={2, 5})
    report = await BulkRunner().run(first, rows(10), journal=path)
    assert (report.succeeded, report.failed) == (8, 2)
    with Journal(path) as journal:
        assert journal.counts() == {"succeeded": 8, "failed": 2}
        # No key=: an item is identified by its content.
        entry = journal.lookup(content_digest(row(3)))
        assert entry is not None
        assert (entry.status, entry.created_id) == ("succeeded", "id-3")
        failed = journal.lookup(content_digest(row(2)))
        assert failed is not None
        assert failed.status == "failed"

    second = Recorder()
    results = [r async for r in BulkRunner().run(second, rows(10), journal=path)]
    assert sorted(n for n, _ in second.calls) == [2, 5]
    # The retried items carry the same idempotency keys as in the first run.
    assert {k for n, k in second.calls} == {k for n, k in first.calls if n in (2, 5)}
    skipped = [r for r in results if r.status is ItemStatus.SKIPPED]
    assert len(skipped) == 8
    assert all(r.ok and r.created_id == f"id-{r.index}" for r in skipped)
    with Journal(path) as journal:
        assert journal.counts() == {"succeeded": 10}


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"client": FakeClient(base_url="https://api.two.example")}, "target"),
        ({"client": FakeClient(credentials_fingerprint="fingerprint-two")}, "credentials"),
        ({"operation_name": "products.create"}, "operation"),
        ({"key": "email"}, "identity"),
    ],
    ids=["base-url", "api-key", "operation", "key-rule"],
)
async def test_journal_is_refused_for_another_target_or_operation_before_any_request(
    tmp_path: Path, change: dict[str, Any], differs: str
) -> None:
    path = tmp_path / "j.db"
    first = Recorder()
    report = await BulkRunner(FakeClient()).run(
        first, rows(5), journal=path, operation_name="customers.create"
    )
    assert report.succeeded == 5

    settings: dict[str, Any] = {"client": FakeClient(), "operation_name": "customers.create"}
    settings.update(change)
    second = Recorder()
    job = BulkRunner(settings.pop("client")).run(second, rows(5), journal=path, **settings)
    # Refused when asked before the run starts, and then released at once ...
    with pytest.raises(JournalMismatchError) as early:
        job.open_journal()
    assert early.value.differs == (differs,)
    # ... so the settings of the first run still resume it.
    third = Recorder()
    again = await BulkRunner(FakeClient()).run(
        third, rows(5), journal=path, operation_name="customers.create"
    )
    assert (again.skipped, third.calls) == (5, [])
    # Refused when the run starts, too.
    with pytest.raises(JournalMismatchError) as raised:
        await job
    assert raised.value.differs == (differs,)
    assert "give this run its own journal file" in str(raised.value)
    assert second.calls == []
    assert job.report.submitted == 0


async def test_same_callable_class_is_the_same_operation_on_a_rerun(tmp_path: Path) -> None:
    # A callable object is named by its class, not its repr (which holds its address).
    path = tmp_path / "j.db"
    await BulkRunner().run(Recorder(), rows(3), journal=path)
    assert (await BulkRunner().run(Recorder(), rows(3), journal=path)).skipped == 3


async def test_a_journal_in_use_by_another_run_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    holder = Journal(path).open()
    try:
        with pytest.raises(JournalLockedError, match="in use by another running import"):
            Journal(path).open()
        op = Recorder()
        job = BulkRunner().run(op, rows(3), journal=path)
        with pytest.raises(JournalLockedError):
            await job
        assert op.calls == []
    finally:
        holder.close()
    # Released on close: the next run may write it.
    assert (await BulkRunner().run(Recorder(), rows(3), journal=path)).succeeded == 3


async def test_journal_commits_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path, batch_size=10, flush_interval=3600)
    for n in range(25):
        journal.record(str(n), "succeeded", digest=f"d{n}", idempotency_key=f"k{n}")
    # Read with plain SQLite: a second Journal would find the file locked by the first.
    with contextlib.closing(sqlite3.connect(path)) as reader:
        assert reader.execute("SELECT COUNT(*) FROM items").fetchone() == (20,)
    journal.close()
    with Journal(path) as reader:
        assert reader.counts() == {"succeeded": 25}


async def test_stop_drains_in_flight_items_then_ends() -> None:
    op = Recorder(slow={0, 1})
    job = BulkRunner().run(op, rows(1_000), concurrency=4, drain_timeout=5)
    seen = []
    async for result in job:
        seen.append(result)
        if len(seen) == 5:
            job.stop()
            op.release.set()
    assert job.report.outcome == "stopped"
    assert all(r.status is ItemStatus.SUCCEEDED for r in seen)
    # Nothing pulled was lost: everything submitted has an outcome.
    assert len(seen) == job.report.submitted == job.report.succeeded
    assert job.report.submitted < 20


async def test_stop_cancels_items_still_running_at_the_deadline_as_unknown() -> None:
    # Sent, then cancelled while waiting for the answer: they may have been created.
    op = Recorder(slow={0, 1, 2})
    job = BulkRunner().run(op, rows(10), concurrency=3, drain_timeout=0.05)
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, job.stop)
    results = [r async for r in job]
    assert [r.status for r in results] == [ItemStatus.UNKNOWN] * 3
    assert (job.report.unknown, job.report.cancelled) == (3, 0)
    assert job.report.outcome == "stopped"
    assert all("cancelled in flight" in r.reason for r in results)
    assert job.report.top_reasons() == [(results[0].reason, 3)]


async def test_items_still_waiting_for_the_rate_limiter_are_cancelled_not_unknown() -> None:
    # One token now, the next in a second: item 0 is sent, items 1 and 2 wait for the limiter.
    op = Recorder(slow={0, 1, 2})
    job = BulkRunner().run(
        op, rows(10), concurrency=3, drain_timeout=0.05, rate_limit=RateLimiter(1, burst=1)
    )
    asyncio.get_running_loop().call_later(0.05, job.stop)
    results = {r.index: r async for r in job}
    assert [n for n, _ in op.calls] == [0]
    assert results[0].status is ItemStatus.UNKNOWN
    assert [results[n].status for n in (1, 2)] == [ItemStatus.CANCELLED] * 2
    assert results[1].reason == "cancelled before it was sent"
    report = job.report
    assert (report.submitted, report.unknown, report.cancelled, report.in_flight) == (3, 1, 2, 0)


async def test_task_cancel_drains_records_and_reraises(tmp_path: Path) -> None:
    op = Recorder(slow={5})
    path = tmp_path / "j.db"
    job = BulkRunner().run(op, rows(100), concurrency=4, journal=path, drain_timeout=0.1)
    seen = 0
    five_started = asyncio.Event()

    async def consume() -> None:
        nonlocal seen
        async for _ in job:
            seen += 1
            if any(n == 5 for n, _ in op.calls):
                five_started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(five_started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    report = job.report
    assert report.outcome == "cancelled"
    assert report.in_flight == 0
    # Item 5 was sent and never answered: it may have been created.
    assert report.unknown >= 1
    assert report.succeeded + report.unknown + report.cancelled == report.submitted
    with Journal(path) as journal:
        # Everything that finished is in the journal; item 5 as unknown, not as done.
        counts = journal.counts()
        assert counts["succeeded"] == report.succeeded
        assert counts["unknown"] == report.unknown
        entry = journal.lookup(content_digest(row(5)))
        assert entry is not None
        assert entry.status == "unknown"

    # A re-run without a lookup does not send it blindly: it is reported unknown again.
    again = Recorder()
    results = {r.index: r async for r in BulkRunner().run(again, rows(100), journal=path)}
    assert results[5].status is ItemStatus.UNKNOWN
    assert "not sent again" in results[5].reason
    assert 5 not in {n for n, _ in again.calls}
    assert results[0].status is ItemStatus.SKIPPED


async def test_leaving_the_block_early_leaves_no_tasks_behind() -> None:
    op = Recorder(slow={1, 2, 3})
    async with BulkRunner().run(op, rows(50), concurrency=4, drain_timeout=0.01) as job:
        async for result in job:
            assert result.index == 0
            break
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == 1
    assert job.report.in_flight == 0


async def test_a_job_runs_once() -> None:
    job = BulkRunner().run(Recorder(), rows(2))
    await job
    with pytest.raises(RuntimeError, match="runs once"):
        await job


def test_bad_arguments_are_refused_with_the_parameter_name() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        BulkRunner().run(Recorder(), rows(1), concurrency=0)
    with pytest.raises(ValueError, match="rate"):
        BulkRunner().run(Recorder(), rows(1), rate_limit=0)
    with pytest.raises(TypeError, match="key"):
        BulkRunner().run(Recorder(), rows(1), key=3)  # type: ignore[arg-type]


def test_concurrency_is_capped_at_the_clients_pool() -> None:
    job = BulkRunner(FakeClient(pool_limit_per_host=8)).run(Recorder(), rows(1), concurrency=50)
    assert job.concurrency == 8


async def test_rate_limiter_spaces_requests() -> None:
    limiter = RateLimiter(200, burst=1)
    started = time.monotonic()
    report = await BulkRunner().run(Recorder(), rows(21), rate_limit=limiter, concurrency=8)
    elapsed = time.monotonic() - started
    assert report.succeeded == 21
    # 1 token at once, then 20 more at 200/s: at least 0.1 s.
    assert elapsed >= 0.095


async def test_rate_limiter_allows_a_burst_then_holds_the_rate() -> None:
    limiter = RateLimiter(1000, burst=5)
    started = time.monotonic()
    for _ in range(5):
        await limiter.acquire()
    assert time.monotonic() - started < 0.05
    await limiter.acquire()
    assert limiter.rate == 1000
    assert limiter.burst == 5


async def test_a_second_stop_can_bring_the_deadline_closer() -> None:
    op = Recorder(slow={0, 1})
    job = BulkRunner().run(op, rows(10), concurrency=2, drain_timeout=60)
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, job.stop)
    loop.call_later(0.05, lambda: job.stop(drain_timeout=0))
    started = time.monotonic()
    results = [r async for r in job]
    assert time.monotonic() - started < 30
    assert [r.status for r in results] == [ItemStatus.UNKNOWN] * 2
    assert all("cancelled in flight" in r.reason for r in results)
    assert job.report.outcome == "stopped"


async def test_generated_methods_run_through_their_raw_twin_to_count_attempts() -> None:
    answers = iter([TransportResponse(429, headers={"Retry-After": "0"})])

    def handler(request: Request) -> TransportResponse:
        return next(answers, None) or TransportResponse(201, json={"id": "c1", **request.json()})

    transport = MockTransport(handler)
    async with AsyncFinalPOS("k", transport=transport, backoff_base=0.001) as client:
        item = {"email": "a@b.co", "first_name": "A", "last_name": "B"}
        results = [r async for r in client.bulk.run(client.customers.create, [item])]
    assert results[0].attempts == 2  # the 429 and its retry, counted through the raw twin
    assert isinstance(results[0].value, Customer)
    assert results[0].value.email == "a@b.co"
    assert len(transport.requests) == 2


# -- against the sandbox: what the server ends up holding ----------------------------------------

FAST_RETRIES = pytest.mark.finalpos_client(backoff_base=0.001, backoff_cap=0.002)
IGNORES_KEYS = pytest.mark.finalpos_sandbox(honour_idempotency=False)


def person(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "email": f"{name}@example.com",
        "first_name": name.title(),
        "last_name": "Test",
        **fields,
    }


async def stored(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Every customer on the server (raw HTTP, faults off), asserting no email is there twice."""
    found = await records(sandbox.url, sandbox.api_key)
    assert duplicates(found) == {}
    return found


async def stored_names(sandbox: Sandbox) -> list[str]:
    return sorted(c["email"].split("@")[0] for c in await stored(sandbox))


class Faulty:
    """`client.customers.create` with a scripted fault (`x-sandbox-fault`) for some emails.

    Counts the calls per email: each call is one POST on the wire (the engine passes
    `retry_unsafe=False`, which this passes on: the client does not retry a POST that may have
    taken effect).
    """

    def __init__(self, client: AsyncFinalPOS, faults: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.faults = dict(faults or {})
        self.calls: collections.Counter[str] = collections.Counter()

    async def __call__(
        self, *, idempotency_key: str, retry_unsafe: bool | None = None, **fields: Any
    ) -> Customer:
        email = fields["email"]
        self.calls[email.split("@")[0]] += 1
        script = self.faults.get(email.split("@")[0])
        return await self.client.customers.create(
            **fields,
            idempotency_key=idempotency_key,
            retry_unsafe=retry_unsafe,
            extra_headers={"x-sandbox-fault": script} if script else None,
        )


@FAST_RETRIES
async def test_content_identity_imports_added_rows_and_never_skips_or_doubles_moved_ones(
    finalpos_client: AsyncFinalPOS, finalpos_sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "j.db"
    create = finalpos_client.customers.create
    first = await finalpos_client.bulk.run(create, map(person, ["ann", "bob", "cid"]), journal=path)
    assert first.succeeded == 3

    # Rows added in front, one removed, the others moved: identity is content, not position.
    job = finalpos_client.bulk.run(create, map(person, ["zed", "yan", "bob", "cid"]), journal=path)
    results = {r.item["email"].split("@")[0]: r async for r in job}
    assert {name: r.status for name, r in results.items()} == {
        "zed": ItemStatus.SUCCEEDED,
        "yan": ItemStatus.SUCCEEDED,
        "bob": ItemStatus.SKIPPED,
        "cid": ItemStatus.SKIPPED,
    }
    assert results["bob"].attempts == results["cid"].attempts == 0
    assert (job.report.succeeded, job.report.skipped, job.report.submitted) == (2, 2, 4)
    assert await stored_names(finalpos_sandbox) == ["ann", "bob", "cid", "yan", "zed"]


@FAST_RETRIES
async def test_a_row_edited_since_it_was_created_is_changed_and_not_sent(
    finalpos_client: AsyncFinalPOS, finalpos_sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "j.db"
    create = finalpos_client.customers.create
    first = await finalpos_client.bulk.run(
        create, [person("ann"), person("bob")], journal=path, key="email"
    )
    assert first.succeeded == 2

    job = finalpos_client.bulk.run(
        create, [person("ann", first_name="Annie"), person("bob")], journal=path, key="email"
    )
    results = {r.key: r async for r in job}
    changed = results["ann@example.com"]
    assert changed.status is ItemStatus.CHANGED
    assert not changed.ok
    assert changed.attempts == 0
    assert "other content" in changed.reason
    assert results["bob@example.com"].status is ItemStatus.SKIPPED
    assert (job.report.changed, job.report.skipped, job.report.succeeded) == (1, 1, 0)
    # An import creates records, it does not update them: the first version stays.
    customers = {c["email"]: c for c in await stored(finalpos_sandbox)}
    assert len(customers) == 2
    assert customers["ann@example.com"]["firstName"] == "Ann"


@FAST_RETRIES
async def test_a_row_refused_then_fixed_goes_through_and_its_original_is_skipped_later(
    finalpos_client: AsyncFinalPOS, finalpos_sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "j.db"
    create = finalpos_client.customers.create
    bad = person("bob", extra_body={"lastAction": "yesterday"})  # 400: not a date-time
    fixed = person("bob", extra_body={"lastAction": "2024-05-01T10:00:00Z"})

    first = {
        r.key: r
        async for r in finalpos_client.bulk.run(
            create, [person("ann"), bad], journal=path, key="email"
        )
    }
    refused = first["bob@example.com"]
    assert refused.status is ItemStatus.FAILED
    assert getattr(refused.error, "status_code", None) == 400
    with Journal(path) as journal:
        assert journal.counts() == {"succeeded": 1, "failed": 1}

    # The fixed row (a failed-rows file, edited) is the same row: sent, created.
    second = await finalpos_client.bulk.run(
        create, [person("ann"), fixed], journal=path, key="email"
    )
    assert (second.succeeded, second.skipped, second.failed) == (1, 1, 0)

    # The original file still holds the refused version: it is that row, already created.
    job = finalpos_client.bulk.run(create, [person("ann"), bad], journal=path, key="email")
    results = {r.key: r async for r in job}
    assert results["bob@example.com"].status is ItemStatus.SKIPPED
    assert results["bob@example.com"].attempts == 0
    assert job.report.skipped == 2
    customers = {c["email"]: c for c in await stored(finalpos_sandbox)}
    assert sorted(customers) == ["ann@example.com", "bob@example.com"]
    assert customers["bob@example.com"]["lastAction"] == "2024-05-01T10:00:00Z"


@IGNORES_KEYS
@FAST_RETRIES
async def test_a_lost_answer_is_found_by_the_lookup_not_sent_again(
    finalpos_client: AsyncFinalPOS, finalpos_sandbox: Sandbox
) -> None:
    # bob is created, then answered 503, on every request: a resend would show as a duplicate.
    create = Faulty(finalpos_client, {"bob": "503-after"})
    job = finalpos_client.bulk.run(
        create,
        map(person, ["ann", "bob", "cid"]),
        key="email",
        lookup=finalpos_client.customers.list,
    )
    results = {r.key: r async for r in job}
    bob = results["bob@example.com"]
    assert bob.status is ItemStatus.SUCCEEDED
    assert bob.found
    assert bob.attempts == 1
    report = job.report
    assert (report.succeeded, report.found, report.unknown, report.failed) == (3, 1, 0, 0)
    assert report.lookup_records >= 1
    assert create.calls == {"ann": 1, "bob": 1, "cid": 1}
    customers = {c["email"]: c for c in await stored(finalpos_sandbox)}
    assert sorted(customers) == ["ann@example.com", "bob@example.com", "cid@example.com"]
    assert bob.created_id == customers["bob@example.com"]["id"]


@IGNORES_KEYS
@FAST_RETRIES
async def test_a_lost_answer_without_lookup_stays_unknown_and_is_not_resent_on_a_rerun(
    finalpos_client: AsyncFinalPOS, finalpos_sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "j.db"
    create = Faulty(finalpos_client, {"bob": "503-after"})
    rows = [person("ann"), person("bob"), person("cid")]

    first = {r.key: r async for r in finalpos_client.bulk.run(create, rows, journal=path)}
    bob = next(r for r in first.values() if r.item["email"] == "bob@example.com")
    assert bob.status is ItemStatus.UNKNOWN
    assert "(503)" in bob.reason
    assert bob.attempts == 1  # not retried by the client: it may have taken effect
    with Journal(path) as journal:
        assert journal.counts() == {"succeeded": 2, "unknown": 1}

    job = finalpos_client.bulk.run(create, rows, journal=path)
    again = {r.item["email"]: r async for r in job}
    assert again["bob@example.com"].status is ItemStatus.UNKNOWN
    assert "not sent again" in again["bob@example.com"].reason
    assert again["bob@example.com"].attempts == 0
    assert (job.report.skipped, job.report.unknown, job.report.submitted) == (2, 1, 3)
    assert create.calls == {"ann": 1, "bob": 1, "cid": 1}
    assert await stored_names(finalpos_sandbox) == ["ann", "bob", "cid"]


@IGNORES_KEYS
@FAST_RETRIES
async def test_leaving_early_journals_a_lost_answer_held_for_the_lookup_as_unknown(
    finalpos_client: AsyncFinalPOS, finalpos_sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "j.db"
    create = Faulty(finalpos_client, {"bob": "503-after"})
    rows = [person("bob"), *map(person, ["ann", "cid", "dan"])]
    # One at a time: bob's answer is lost (held for the lookup at the end), ann succeeds, and
    # the loop is left before the lookup runs.
    job = finalpos_client.bulk.run(
        create,
        rows,
        concurrency=1,
        journal=path,
        key="email",
        lookup=finalpos_client.customers.list,
    )
    async with job:
        async for result in job:
            assert result.key == "ann@example.com"
            break
    report = job.report
    assert (report.outcome, report.in_flight) == ("cancelled", 0)
    assert (report.succeeded, report.unknown) == (1, 1)
    with Journal(path) as journal:
        entry = journal.lookup("bob@example.com")
        assert entry is not None
        assert entry.status == "unknown"

    # A re-run without a lookup must not take bob for a new row (bob would then be there twice).
    again = await finalpos_client.bulk.run(create, rows, journal=path, key="email")
    assert (again.unknown, again.skipped, again.succeeded) == (1, 1, 2)
    assert create.calls["bob"] == 1
    assert await stored_names(finalpos_sandbox) == ["ann", "bob", "cid", "dan"]


@IGNORES_KEYS
@FAST_RETRIES
async def test_stopping_while_the_lookup_results_are_resent_counts_the_rest_as_cancelled(
    finalpos_client: AsyncFinalPOS, finalpos_sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "j.db"
    # a..d: a 503 instead of being created (so the lookup cannot find them), then created.
    create = Faulty(finalpos_client, dict.fromkeys(["a", "b", "c", "d"], "503,ok"))
    rows = list(map(person, ["a", "b", "c", "d", "e", "f"]))
    job = finalpos_client.bulk.run(
        create,
        rows,
        concurrency=1,
        journal=path,
        key="email",
        lookup=finalpos_client.customers.list,
    )
    async for result in job:
        if result.attempts == 2:  # the first one sent again after the lookup
            job.stop()
    report = job.report
    assert report.outcome == "stopped"
    # Every row is counted once: b, c and d were not sent again, and are not in the target.
    assert (report.submitted, report.succeeded, report.cancelled) == (6, 3, 3)
    assert (report.unknown, report.in_flight) == (0, 0)
    assert await stored_names(finalpos_sandbox) == ["a", "e", "f"]

    again = await finalpos_client.bulk.run(create, rows, journal=path, key="email")
    assert (again.succeeded, again.skipped) == (3, 3)
    assert create.calls == {"a": 2, "b": 2, "c": 2, "d": 2, "e": 1, "f": 1}
    assert await stored_names(finalpos_sandbox) == ["a", "b", "c", "d", "e", "f"]


@IGNORES_KEYS
@FAST_RETRIES
async def test_leaving_while_unresolved_answers_are_yielded_counts_each_once(
    finalpos_client: AsyncFinalPOS, finalpos_sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "j.db"
    create = Faulty(finalpos_client, dict.fromkeys(["a", "b", "c"], "503-after"))
    rows = list(map(person, ["a", "b", "c", "d", "e", "f"]))
    job = finalpos_client.bulk.run(
        create,
        rows,
        concurrency=1,
        journal=path,
        key="email",
        lookup=finalpos_client.customers.list,
    )
    async with job:
        async for result in job:
            if result.status is ItemStatus.SUCCEEDED:
                job.stop()  # before the lookup: a, b and c stay unknown, yielded at the end
            if result.status is ItemStatus.UNKNOWN:
                break  # ... and the loop is left at the first of them
    report = job.report
    # e and f were pulled with d (one intent window) and never sent: cancelled, not journaled.
    assert (report.submitted, report.succeeded, report.unknown, report.in_flight) == (6, 1, 3, 0)
    assert report.cancelled == 2
    with Journal(path) as journal:
        assert journal.counts() == {"succeeded": 1, "unknown": 3}
    assert await stored_names(finalpos_sandbox) == ["a", "b", "c", "d"]


@FAST_RETRIES
async def test_a_target_that_lost_the_journaled_records_is_refused_before_sending(
    finalpos_client: AsyncFinalPOS, finalpos_sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "j.db"
    create = Faulty(finalpos_client)
    rows = [person("ann"), person("bob"), person("cid"), person("dan")]
    assert (await finalpos_client.bulk.run(create, rows, journal=path)).succeeded == 4

    # While the target holds them, the spot check passes and the rerun skips them all.
    retrieve = finalpos_client.customers.retrieve
    report = await finalpos_client.bulk.run(create, rows, journal=path, retrieve=retrieve)
    assert report.skipped == 4

    # The target loses them (reset, or another server at the same address).
    for customer in await stored(finalpos_sandbox):
        await finalpos_client.customers.delete(customer["id"])
    assert await stored(finalpos_sandbox) == []
    job = finalpos_client.bulk.run(create, rows, journal=path, retrieve=retrieve)
    with pytest.raises(TargetChangedError, match="answers 404 for all 3 checked"):
        await job
    assert job.report.submitted == 0
    assert create.calls == {"ann": 1, "bob": 1, "cid": 1, "dan": 1}
    assert await stored(finalpos_sandbox) == []

    # A check that cannot tell (a 5xx, a timeout) does not refuse: only 404s prove a loss.
    async def flaky_retrieve(ident: str) -> Any:
        raise APIConnectionError("connection reset while checking")

    rerun = await finalpos_client.bulk.run(create, rows, journal=path, retrieve=flaky_retrieve)
    assert rerun.skipped == 4  # the journal is trusted; nothing was sent
    assert create.calls == {"ann": 1, "bob": 1, "cid": 1, "dan": 1}


@FAST_RETRIES
@pytest.mark.parametrize("stop_on_fatal", [True, False])
async def test_a_wrong_api_key_stops_the_run_after_the_first_401(
    finalpos_sandbox: Sandbox, stop_on_fatal: bool
) -> None:
    sent, trace = counting_trace()
    items = 200
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = AsyncFinalPOS("sk_wrong_key", base_url=finalpos_sandbox.url, session=session)
        try:
            job = client.bulk.run(
                client.customers.create,
                (person(f"user{n}") for n in range(items)),
                concurrency=4,
                stop_on_fatal=stop_on_fatal,
            )
            results = [r async for r in job]
        finally:
            await client.close()
    report = job.report
    assert all(r.status is ItemStatus.FAILED for r in results)
    assert report.failed == report.submitted == len(results) == sent["POST"]
    if stop_on_fatal:
        assert report.outcome == "aborted"
        assert report.stop_reason is not None
        assert "AuthenticationError (401)" in report.stop_reason
        # At most what was in flight when the first 401 came back: far fewer than the items.
        assert sent["POST"] <= 4
    else:
        assert (report.outcome, report.stop_reason) == ("completed", None)
        assert sent["POST"] == items
    assert report.top_reasons(1)[0][1] == report.failed
    assert await stored(finalpos_sandbox) == []


async def test_an_unreachable_target_stops_the_run_and_journals_nothing(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "j.db"
    client = AsyncFinalPOS(
        "sk_test", base_url=f"http://127.0.0.1:{port}", backoff_base=0.001, backoff_cap=0.002
    )
    try:
        job = client.bulk.run(
            client.customers.create, map(person, ["ann", "bob"] * 50), concurrency=1, journal=path
        )
        # ("ann", "bob") * 50 repeats contents: the n-th repeat is its own row (`#n`).
        report = await job
    finally:
        await client.close()
    assert report.outcome == "aborted"
    assert report.stop_reason is not None
    assert "unreachable (5 items in a row)" in report.stop_reason
    # The rest of the intent window was pulled and never sent: cancelled, not journaled.
    assert report.failed == 5
    assert report.cancelled == report.submitted - 5
    with Journal(path) as journal:
        # Never reached the API: nothing to remember, a re-run sends them as new.
        assert journal.counts() == {}


async def test_an_outage_answering_5xx_stops_the_run_before_every_row_is_unknown() -> None:
    # Every POST is processed and then answered 503: each row's outcome is unknown, and each
    # further row would only add one more to resolve.
    outage = FaultConfig(rate=1.0, kinds=("503-after",), seed=3)
    async with Sandbox(faults=outage, honour_idempotency=False) as sandbox:
        async with AsyncFinalPOS(sandbox.api_key, base_url=sandbox.url) as client:
            job = client.bulk.run(
                client.customers.create, (person(f"o{n}") for n in range(500)), concurrency=4
            )
            report = await job
        created = await stored(sandbox)
    assert report.outcome == "aborted"
    assert report.stop_reason is not None
    assert "keeps failing" in report.stop_reason
    # The streak is longer than the rows in flight at once, and far shorter than the input.
    assert 4 + 10 <= report.unknown <= 4 + 10 + 4
    assert report.submitted == report.unknown
    assert report.attempts == report.unknown  # none of them was repeated
    assert len(created) == report.unknown  # each created once, none twice


async def test_a_journal_with_an_in_memory_sandbox_warns_and_is_never_resumed_elsewhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.db"
    rows = [person("ann"), person("bob")]
    async with AsyncFinalPOS(sandbox=True) as client:
        report = await client.bulk.run(client.customers.create, rows, journal=path)
    assert report.succeeded == 2
    assert "in-memory sandbox" in caplog.text
    # That sandbox died with its client: a new one (even at the same URL) holds nothing, and the
    # journal says nothing about it, so it is refused before anything is sent.
    async with AsyncFinalPOS(sandbox=True) as client:
        job = client.bulk.run(client.customers.create, rows, journal=path)
        with pytest.raises(JournalMismatchError, match="in-memory sandbox"):
            await job
        assert job.report.submitted == 0
        assert await client.request("GET", "/v1/api/customers") == []
