"""`print(job.report)`: a short summary for people, no private fields in any rendering."""

from __future__ import annotations

from finalpos_async import AsyncFinalPOS, MockTransport, Request, TransportResponse
from finalpos_async.bulk import BulkReport


def test_a_new_report_says_it_runs_and_nothing_else() -> None:
    assert str(BulkReport()).startswith("running in 0.0 s: 0 submitted; 0 attempts")


def test_the_summary_names_only_counts_that_are_not_zero_and_the_top_reason() -> None:
    report = BulkReport()
    report.submitted, report.succeeded, report.found, report.failed = 1000, 990, 3, 10
    report.attempts = 1012
    report.failure_reasons["APIStatusError (422): bad email"] += 10
    report.outcome = "completed"
    report.finish()
    first, second = str(report).splitlines()
    assert first.startswith("completed in ")
    assert (
        ": 1,000 submitted: 990 succeeded (3 found in the target), 10 failed; 1,012 attempts, "
        in first
    )
    for absent in ("skipped", "unknown", "changed", "cancelled", "in flight", "target read"):
        assert absent not in first
    assert second == "most common reason (10x): APIStatusError (422): bad email"


def test_no_rendering_shows_private_fields() -> None:
    report = BulkReport()
    for text in (repr(report), str(report)):
        assert "_started" not in text
        assert "_finished" not in text


ROWS = [{"first_name": "A", "last_name": "B", "email": f"a{i}@example.com"} for i in range(3)]


async def test_a_real_run_prints_its_summary() -> None:
    def handler(request: Request) -> TransportResponse:
        return TransportResponse(201, json={"id": "c1", "firstName": "A", "lastName": "B"})

    async with AsyncFinalPOS(api_key="k", transport=MockTransport(handler)) as client:
        report = await client.bulk.run(client.customers.create, ROWS)
    text = str(report)
    assert text.startswith("completed in ")
    assert ": 3 submitted: 3 succeeded; 3 attempts, " in text
    assert "\n" not in text  # nothing failed: no reason line
