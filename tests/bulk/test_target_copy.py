"""A run reads the target once: one streamed pass, then only the records it added since.

`TargetCopy` keeps what a run listed in a private on-disk database; every later lookup of the
run reads only the records listed after the last one kept (`skip=`), checking that this last one
is still where it was, and reads the target again from the start (counted) when it is not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from finalpos_async import AsyncFinalPOS, MockTransport, Request, TransportResponse
from finalpos_async._retry import FailureKind
from finalpos_async._transport import TransportError
from finalpos_async.bulk import BulkReport, ItemStatus
from finalpos_async.bulk._target_copy import TargetCopy


class Target:
    """Records in creation order, listed with `skip` as the API does; counts what it yields."""

    def __init__(self, count: int) -> None:
        self.records = [{"id": f"c{n}", "email": f"p{n}@example.com"} for n in range(count)]
        self.listed = 0
        self.calls: list[int] = []

    def add(self, n: int) -> None:
        self.records.append({"id": f"c{n}", "email": f"p{n}@example.com"})

    async def list(self, *, skip: int = 0) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(skip)
        for record in self.records[skip:]:
            self.listed += 1
            yield record


async def test_later_lookups_read_only_the_records_added_since() -> None:
    target = Target(500)
    report = BulkReport()
    copy = TargetCopy(target.list, "email", report, by_content=False)
    assert await copy.catch_up()
    assert (copy.count, target.listed) == (500, 500)
    for n in range(500, 503):
        target.add(n)
    assert await copy.catch_up()
    # The last record kept, to check it is still there, then the three new ones.
    assert target.calls == [0, 499]
    assert (copy.count, target.listed) == (503, 504)
    assert copy.find_key("p502@example.com") == "c502"
    assert copy.find_key("p7@example.com") == "c7"
    assert copy.find_key("nobody@example.com") is None
    assert report.lookup_passes == 1
    assert report.lookup_records == 504
    copy.close()


async def test_a_listing_that_shifted_is_read_again_so_nothing_is_missed() -> None:
    target = Target(100)
    report = BulkReport()
    copy = TargetCopy(target.list, "email", report, by_content=False)
    await copy.catch_up()
    del target.records[10]  # someone deleted a record: offsets moved by one
    target.add(100)
    assert await copy.catch_up()
    assert target.calls == [0, 99, 0]
    assert report.lookup_passes == 2
    assert copy.count == 100
    assert copy.find_key("p100@example.com") == "c100"
    assert copy.find_key("p10@example.com") is None
    copy.close()


async def test_an_empty_target_is_read_once_and_then_from_its_first_record() -> None:
    target = Target(0)
    report = BulkReport()
    copy = TargetCopy(target.list, "email", report, by_content=True)
    assert await copy.catch_up()
    target.add(0)
    target.add(1)
    assert await copy.catch_up()
    assert report.lookup_passes == 1
    assert [record_id async for _, record_id in copy.records()] == ["c0", "c1"]
    copy.close()


async def test_a_catch_up_cut_short_goes_on_from_where_it_stopped() -> None:
    target = Target(3000)
    report = BulkReport()
    copy = TargetCopy(target.list, "email", report, by_content=False)
    seen = 0

    def stopping() -> bool:
        nonlocal seen
        seen += 1
        return seen == 1500

    assert not await copy.catch_up(stopping)
    assert copy.count == 1500
    assert await copy.catch_up()
    assert copy.count == 3000
    assert target.listed == 3001  # the anchor once more, no record read twice otherwise
    assert report.lookup_passes == 1
    copy.close()


def test_a_lookup_that_takes_no_skip_is_refused_with_the_way_on() -> None:
    async def no_skip() -> AsyncIterator[Any]:
        yield {}

    def handler(request: Request) -> TransportResponse:
        return TransportResponse(201, json={"id": "x"})

    client = AsyncFinalPOS("k", transport=MockTransport(handler))
    with pytest.raises(TypeError, match=r"lookup must take skip=.*lambda skip=0"):
        client.bulk.run(client.customers.create, [], lookup=no_skip)  # type: ignore[arg-type]


async def test_settle_rounds_read_each_record_of_the_target_once() -> None:
    # A server that ignores Idempotency-Key: a third of the rows lose their first answer
    # (created), a third are refused (429) first and then, for half of them, lose the answer
    # of the resend; the rest go through. Two lookups are needed; the second one reads only
    # what the resends added.
    records: list[dict[str, Any]] = []
    attempts: dict[str, int] = {}

    def handler(request: Request) -> TransportResponse:
        if request.method == "GET":
            skip, limit = int(request.params["skip"]), int(request.params["limit"])
            return TransportResponse(200, json=records[skip : skip + limit])
        body = request.json()
        n = int(body["lastName"])
        attempt = attempts[body["email"]] = attempts.get(body["email"], 0) + 1
        if n % 3 == 1 and attempt == 1:
            return TransportResponse(429, json={"message": "slow down"})
        record = {"id": f"c{len(records)}", **body}
        records.append(record)
        lost = (n % 3 == 0 and attempt == 1) or (n % 6 == 1 and attempt == 2)
        if lost:
            raise TransportError(FailureKind.DISCONNECTED, "the answer was lost")
        return TransportResponse(201, json=record)

    rows = [
        {"email": f"p{n}@example.com", "first_name": "P", "last_name": str(n)} for n in range(60)
    ]
    async with AsyncFinalPOS("k", transport=MockTransport(handler), max_retries=0) as client:
        job = client.bulk.run(
            client.customers.create,
            rows,
            key="email",
            lookup=client.customers.list,
            concurrency=4,
        )
        results = [result async for result in job]
    report = job.report
    assert all(r.status is ItemStatus.SUCCEEDED for r in results)
    assert sorted(r["email"] for r in records) == sorted(r["email"] for r in rows)  # once each
    assert report.found == 20 + 10
    assert report.lookup_passes == 1
    # Round 1 read the 50 records then on the server; round 2 the last of those again, then
    # the 10 its resends made.
    assert report.lookup_records == 50 + 1 + 10
