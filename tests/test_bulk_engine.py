"""The bulk engine against fake operations: counts, bounds, streaming, failures, stop and cancel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from finalpos_async.bulk import (
    BulkRunner,
    ItemStatus,
    Journal,
    RateLimiter,
    idempotency_key_for,
)


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


def rows(count: int) -> Iterator[dict[str, Any]]:
    for n in range(count):
        yield {"n": n, "email": f"user{n}@example.com"}


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
    class Raw:
        attempts = 4

        def parse(self) -> dict[str, str]:
            return {"id": "abc"}

    async def op(**_: Any) -> Raw:
        return Raw()

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
        entry = journal.lookup("3")
        assert entry is not None
        assert entry.created_id == "id-3"

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


async def test_journal_refuses_another_jobs_file(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal(path, job="customers.create").open().close()
    with pytest.raises(ValueError, match=r"belongs to job 'customers.create'"):
        Journal(path, job="products.create").open()


async def test_journal_commits_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path, batch_size=10, flush_interval=3600)
    for n in range(25):
        journal.record(str(n), "succeeded", idempotency_key=f"k{n}")
    with Journal(path) as reader:
        committed = dict(reader._connection().execute("SELECT 'n', COUNT(*) FROM items"))
    assert committed == {"n": 20}
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


async def test_stop_cancels_items_still_running_at_the_deadline() -> None:
    op = Recorder(slow={0, 1, 2})
    job = BulkRunner().run(op, rows(10), concurrency=3, drain_timeout=0.05)
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, job.stop)
    results = [r async for r in job]
    assert [r.status for r in results] == [ItemStatus.CANCELLED] * 3
    assert job.report.cancelled == 3
    assert job.report.outcome == "stopped"
    assert "cancelled" in results[0].reason


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
    assert report.cancelled >= 1
    assert report.succeeded + report.cancelled == report.submitted
    with Journal(path) as journal:
        # Everything that finished is in the journal; the cancelled item is not marked done.
        assert journal.counts() == {"succeeded": report.succeeded}
        assert journal.lookup("5") is None


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
    class Client:
        limit_per_host = 8

    job = BulkRunner(Client()).run(Recorder(), rows(1), concurrency=50)
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
    assert [r.status for r in results] == [ItemStatus.CANCELLED] * 2
    assert job.report.outcome == "stopped"


async def test_generated_methods_run_through_their_raw_twin_to_count_attempts() -> None:
    class Raw:
        def __init__(self, value: dict[str, Any]) -> None:
            self.attempts = 2
            self._value = value

        def parse(self) -> dict[str, Any]:
            return self._value

    class RawTwin:
        async def create(self, **fields: Any) -> Raw:
            return Raw({"id": "raw", **fields})

    class Resource:
        with_raw_response = RawTwin()

        async def create(self, **fields: Any) -> dict[str, Any]:
            raise AssertionError("the engine should call the raw twin")

    results = [r async for r in BulkRunner().run(Resource().create, [{"a": 1}])]
    assert results[0].attempts == 2
    assert results[0].value == {"id": "raw", "a": 1, "idempotency_key": results[0].idempotency_key}
