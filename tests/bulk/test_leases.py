"""Leased chunks on PostgreSQL (`ChunkBoard`, `keep_lease`, a journal fenced by its lease):
claims never overlap, an expired lease is taken over under a new token, the old holder can
neither renew, finish nor write an intent, and a small job is served before a big one's next
chunk."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

import psycopg
import pytest

from finalpos_async.bulk import (
    ChunkBoard,
    Intent,
    JournalBinding,
    JournalError,
    Lease,
    LeaseLostError,
    PostgresJournal,
    Work,
    chunk_of,
    keep_lease,
)

BINDING = JournalBinding(
    target="https://api.example", credentials="fp", operation="customers.create", identity="c"
)


def expire(url: str, work_id: str, chunk: int) -> None:
    """Make a chunk's lease run out now (as if its worker stopped renewing it long ago)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE finalpos_work_chunks SET lease_until = now() - interval '1 second' "
            "WHERE work_id = %s AND chunk = %s",
            (work_id, chunk),
        )


def test_chunk_of_splits_identities_stably_and_evenly() -> None:
    assert chunk_of("ann@example.com", 16) == chunk_of("ann@example.com", 16)
    counts = Counter(chunk_of(f"u{n}@example.com", 8) for n in range(8000))
    assert set(counts) == set(range(1, 9))
    assert min(counts.values()) > 850  # 1,000 each on average
    with pytest.raises(ValueError, match="chunks must be between 1 and 100000"):
        Work(work_id="w", chunks=0)


def test_workers_claim_each_chunk_once_and_the_job_ends_done(postgres_url: str) -> None:
    with ChunkBoard(postgres_url, owner="w1") as one, ChunkBoard(postgres_url, owner="w2") as two:
        one.publish(Work(work_id="job", chunks=3, tenant="acme", description={"file": "a.csv"}))
        again = two.publish(Work(work_id="job", chunks=3))  # a second worker joins: no change
        assert again.tenant == "acme"
        assert again.description == {"file": "a.csv"}
        first = one.claim(seconds=30)
        second = two.claim(seconds=30)
        third = one.claim(seconds=30)
        assert first
        assert second
        assert third
        assert sorted([first.chunk, second.chunk, third.chunk]) == [1, 2, 3]
        assert (first.owner, second.owner) == ("w1", "w2")
        assert first.description == {"file": "a.csv"}
        assert not first.taken_over
        assert two.claim(seconds=30) is None  # all leased, none expired
        status = one.status("job")
        assert [c.state for c in status.chunks] == ["leased"] * 3
        assert 0 < (status.next_expiry() or 0) <= 30
        for board, lease in ((one, first), (two, second), (one, third)):
            board.finish(lease, {"created": 2, "failed": 1})
        status = two.status("job")
        assert status.done
        assert status.outcomes() == {"created": 6, "failed": 3}
        assert one.claim(seconds=30) is None


def test_publishing_a_job_with_another_number_of_chunks_is_refused(postgres_url: str) -> None:
    with ChunkBoard(postgres_url) as board:
        board.publish(Work(work_id="job", chunks=4))
        with pytest.raises(JournalError, match=r"split into 4 chunks, not 8.*--chunks 4"):
            board.publish(Work(work_id="job", chunks=8))
        with pytest.raises(JournalError, match="has no job 'nope'"):
            board.status("nope")


def test_an_expired_lease_is_taken_over_and_its_old_holder_is_fenced_off(
    postgres_url: str,
) -> None:
    with ChunkBoard(postgres_url, owner="dead") as old, ChunkBoard(postgres_url) as new:
        old.publish(Work(work_id="job", chunks=1))
        stale = old.claim(seconds=30)
        assert stale is not None
        assert old.renew(stale).token == stale.token  # renewed while it holds
        expire(postgres_url, "job", 1)
        taken = new.claim(seconds=30)
        assert taken is not None
        assert taken.chunk == 1
        assert taken.token == stale.token + 1
        assert taken.taken_over
        with pytest.raises(LeaseLostError, match=r"chunk 1/1 of job job.*no longer this worker"):
            old.renew(stale)
        with pytest.raises(LeaseLostError):
            old.finish(stale, {"created": 1})
        old.release(stale)  # a stale release changes nothing
        assert new.status("job").chunks[0].owner == new.owner
        new.release(taken)  # given back: open again at once
        assert new.status("job").chunks[0].state == "open"


def test_the_journal_writes_intents_only_under_the_current_lease(postgres_url: str) -> None:
    with ChunkBoard(postgres_url) as board:
        board.publish(Work(work_id="job", chunks=1))
        lease = board.claim(seconds=30, margin=5)
        assert lease is not None
        with PostgresJournal(postgres_url, lease=lease) as journal:
            journal.bind(BINDING, job_id="job")
            journal.record_intents([Intent("a", "d-a", "idem-a")])
            expire(postgres_url, "job", 1)
            with pytest.raises(LeaseLostError, match="no longer this worker's"):
                journal.record_intents([Intent("b", "d-b", "idem-b")])
            journal.record("a", "succeeded", digest="d-a", idempotency_key="idem-a")
            journal.flush()  # an outcome is a fact: written whoever holds the chunk
            assert journal.lookup("b") is None
            entry = journal.lookup("a")
            assert entry is not None
            assert entry.status == "succeeded"


def test_an_intent_needs_the_margin_left_on_the_lease(postgres_url: str) -> None:
    with ChunkBoard(postgres_url) as board:
        board.publish(Work(work_id="job", chunks=1))
        lease = board.claim(seconds=10, margin=20)  # less left than the margin from the start
        assert lease is not None
        with PostgresJournal(postgres_url, lease=lease) as journal:
            journal.bind(BINDING, job_id="job")
            with pytest.raises(LeaseLostError):
                journal.record_intents([Intent("a", "d-a", "idem-a")])


def test_workers_of_a_job_share_its_lock_and_a_run_without_lease_waits(
    postgres_url: str,
) -> None:
    with ChunkBoard(postgres_url) as board:
        board.publish(Work(work_id="job", chunks=2))
        one, two = board.claim(seconds=30), board.claim(seconds=30)
        assert one is not None
        assert two is not None
        with (
            PostgresJournal(postgres_url, lease=one) as first,
            PostgresJournal(postgres_url, lease=two) as second,
        ):
            first.bind(BINDING, job_id="job")
            second.bind(BINDING, job_id="job")  # two chunks of one job: side by side
            with pytest.raises(JournalError, match="being written by another running import"):
                PostgresJournal(postgres_url).open().bind(BINDING, job_id="job")


def test_a_small_job_gets_the_next_free_worker_before_a_big_ones_next_chunk(
    postgres_url: str,
) -> None:
    with ChunkBoard(postgres_url) as board:
        board.publish(Work(work_id="big", chunks=10))
        held = [board.claim(seconds=30) for _ in range(3)]
        assert all(lease is not None and lease.work_id == "big" for lease in held)
        board.publish(Work(work_id="small", chunks=2))
        claimed = board.claim(seconds=30)
        assert claimed is not None
        assert claimed.work_id == "small"
        claimed = board.claim(seconds=30)
        assert claimed is not None
        assert claimed.work_id == "small"
        claimed = board.claim(seconds=30)
        assert claimed is not None
        assert claimed.work_id == "big"
        only_small = board.claim(work_ids=["small"], seconds=30)
        assert only_small is None


async def test_keep_lease_renews_and_stops_the_work_when_the_lease_is_lost(
    postgres_url: str,
) -> None:
    with ChunkBoard(postgres_url) as board, ChunkBoard(postgres_url) as thief:
        board.publish(Work(work_id="job", chunks=1))
        lease = board.claim(seconds=3, margin=1)
        assert lease is not None
        stopped = asyncio.Event()
        async with keep_lease(board, lease) as holder:
            holder.on_lost(stopped.set)
            deadline = time.monotonic() + 10
            while holder.lease.expires == lease.expires:  # renewed after a third of 3 s
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert holder.lost is None
            expire(postgres_url, "job", 1)
            assert thief.claim(seconds=30) is not None
            await asyncio.wait_for(stopped.wait(), 10)  # the next renewal finds it gone
            assert holder.lost is not None
            assert "no longer this worker's" in holder.lost
        called: list[bool] = []
        holder.on_lost(lambda: called.append(True))  # registered after the loss: at once
        assert called == [True]


class Unreachable(ChunkBoard):
    """A board whose database stopped answering renewals."""

    def renew(self, lease: Lease) -> Lease:
        raise JournalError("cannot renew a lease in journal 'x' (connection refused)", path="x")


async def test_a_lease_that_cannot_be_renewed_stops_the_work_before_it_runs_out(
    postgres_url: str,
) -> None:
    with Unreachable(postgres_url) as board:
        board.publish(Work(work_id="job", chunks=1))
        lease = board.claim(seconds=3, margin=1.5)
        assert lease is not None
        stopped = asyncio.Event()
        async with keep_lease(board, lease) as holder:
            holder.on_lost(stopped.set)
            await asyncio.wait_for(stopped.wait(), 10)
            # stopped at `expires - margin`: before the database lets anyone take it over
            assert time.monotonic() < lease.expires
        assert holder.lost is not None
        assert "could not be renewed in time" in holder.lost


async def test_a_busy_event_loop_keeps_its_lease_and_a_lost_one_sends_nothing(
    postgres_url: str,
) -> None:
    with ChunkBoard(postgres_url) as board, ChunkBoard(postgres_url) as thief:
        board.publish(Work(work_id="job", chunks=1))
        lease = board.claim(seconds=3, margin=1)
        assert lease is not None
        async with keep_lease(board, lease) as holder:
            time.sleep(4)  # the loop checks a large file: longer than the whole lease  # noqa: ASYNC251
            assert holder.lost is None
            assert holder.sendable
            assert thief.claim(seconds=30) is None  # renewed meanwhile by its own thread
            expire(postgres_url, "job", 1)
            assert thief.claim(seconds=30) is not None
            deadline = time.monotonic() + 10
            while holder.lost is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert not holder.sendable
            sent: list[object] = []

            async def transport(request: object) -> object:
                sent.append(request)
                return object()

            with pytest.raises(LeaseLostError, match="not sent from here"):
                await holder.guard(object(), transport)  # type: ignore[arg-type]  # a stand-in
            assert sent == []


def test_without_psycopg_the_board_and_the_journal_name_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    url = "postgresql://user:s3cret@db.example:5432/jobs"
    for store in (ChunkBoard(url), PostgresJournal(url)):
        with pytest.raises(
            JournalError, match=r"needs psycopg 3: pip install 'finalpos\[postgres\]'"
        ) as caught:
            store.open()
        assert "s3cret" not in str(caught.value)
        assert caught.value.path == "postgresql://user@db.example:5432/jobs"
