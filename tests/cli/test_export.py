"""`finalpos export`: several pages at a time in API order; `--format parquet`, typed columns."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from cli_run import run
from click.testing import CliRunner

from finalpos_async import (
    AsyncFinalPOS,
    MockTransport,
    Request,
    ResponseValidationError,
    TransportResponse,
)
from finalpos_async.cli._app import cli
from finalpos_async.cli._export import EXPORT_PAGE_SIZE, pages_in_order
from finalpos_async.cli._parquet import arrow_schema
from finalpos_async.sandbox import Sandbox
from finalpos_async.spec import component


def seed(sb: Sandbox, tmp_path: Path, count: int, *, first_name: str = "S") -> None:
    """`count` customers created in `sb` one at a time, `s{n}@example.com` in order."""
    source = tmp_path / "seed.jsonl"
    source.write_text(
        "".join(
            json.dumps(
                {
                    "email": f"s{n}@example.com",
                    "firstName": first_name,
                    "lastName": str(n),
                    "billing": {"city": "Porto"},
                    "tags": ["a", f"t{n}"],
                    "totalSpent": f"{n}.25",
                }
            )
            + "\n"
            for n in range(count)
        )
    )
    # One row at a time: the sandbox lists in creation order, which the tests compare with.
    args = ["import", "customers", str(source), "--no-journal", "--concurrency", "1"]
    assert run(sb, *args).exit_code == 0


class Collection:
    """A list endpoint of `size` records behind a MockTransport, counting each skip asked for."""

    def __init__(
        self, size: int, *, fail_at: int | None = None, unfit_at: int | None = None
    ) -> None:
        self.size = size
        self.fail_at = fail_at
        self.unfit_at = unfit_at  # the record whose email is a number
        self.skips: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle(self, request: Request) -> TransportResponse:
        query = dict(request.params)
        skip, limit = int(query["skip"]), int(query["limit"])
        self.skips.append(skip)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)  # let the other pages in flight start
        self.in_flight -= 1
        if skip == self.fail_at:
            return TransportResponse(400, json={"statusCode": 400, "message": "bad skip"})
        rows = [
            {"id": f"c{n}", "firstName": "F", "lastName": "L", "email": f"{n}@x.io"}
            for n in range(skip, min(skip + limit, self.size))
        ]
        for row in rows:
            if row["id"] == f"c{self.unfit_at}":
                row["email"] = 5
        return TransportResponse(200, json=rows)


async def walk(collection: Collection, **list_args: Any) -> list[str]:
    transport = MockTransport(collection.handle)
    async with AsyncFinalPOS(api_key="sk_test_export", transport=transport) as client:
        paginator = client.customers.list(**list_args)
        ids = []
        async for page in pages_in_order(paginator, concurrency=4):
            ids += [c["id"] for c in page.records]
        return ids


async def test_pages_come_in_order_with_up_to_concurrency_in_flight() -> None:
    collection = Collection(47)
    assert await walk(collection, limit=5) == [f"c{n}" for n in range(47)]
    assert collection.most_in_flight == 4
    # The short page (skip 45) ends the walk; at most 3 requests went past it.
    assert sorted(collection.skips)[: 47 // 5 + 1] == list(range(0, 50, 5))
    assert max(collection.skips) <= 45 + 3 * 5


async def test_max_items_asks_for_nothing_beyond_it() -> None:
    collection = Collection(1000)
    assert await walk(collection, limit=10, max_items=25) == [f"c{n}" for n in range(25)]
    assert sorted(collection.skips) == [0, 10, 20]


async def test_a_failed_page_stops_the_walk_and_cancels_the_rest() -> None:
    collection = Collection(1000, fail_at=20)
    with pytest.raises(Exception, match="bad skip"):
        await walk(collection, limit=10)
    assert collection.in_flight == 0  # every page still in flight was cancelled and awaited


def test_export_defaults_to_the_largest_page_and_keeps_api_order(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    seed(sandbox, tmp_path, 23)
    result = run(sandbox, "export", "customers", "--page-size", "4", "-c", "3")
    assert result.exit_code == 0, result.output
    emails = [json.loads(line)["email"] for line in result.stdout.splitlines()]
    assert emails == [f"s{n}@example.com" for n in range(23)]
    assert "23 customers exported." in result.stderr
    assert EXPORT_PAGE_SIZE == 1000
    help_text = " ".join(run(sandbox, "export", "--help").output.split())
    assert "--page-size INTEGER RANGE Items per request" in help_text
    assert "[default: 1000; 1<=x<=1000]" in help_text


def test_parquet_reads_back_field_by_field_as_typed_columns(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    seed(sandbox, tmp_path, 12)
    target = tmp_path / "customers.parquet"
    result = run(sandbox, "export", "customers", "--format", "parquet", "-o", str(target))
    assert result.exit_code == 0, result.output
    wire = [json.loads(line) for line in run(sandbox, "export", "customers").stdout.splitlines()]
    table = pq.read_table(target)
    assert table.schema == arrow_schema(component("CustomerDto"))
    rows = table.to_pylist()
    assert len(rows) == len(wire) == 12
    for row, sent in zip(rows, wire, strict=True):
        assert row["id"] == sent["id"]
        assert row["email"] == sent["email"]
        assert row["tags"] == sent["tags"]
        assert row["billing"]["city"] == sent["billing"]["city"] == "Porto"
        assert isinstance(row["createdAt"], datetime)
        assert row["createdAt"] == datetime.fromisoformat(sent["createdAt"].replace("Z", "+00:00"))
        assert row["totalSpent"] == Decimal(sent["totalSpent"])  # a decimal128, exact


def test_parquet_needs_an_output_file(sandbox: Sandbox) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "--api-key",
            sandbox.api_key,
            "--base-url",
            sandbox.url,
            "export",
            "customers",
            "--format",
            "parquet",
        ],
    )
    assert result.exit_code == 2
    assert "--format parquet writes a file: give --output FILE.parquet" in result.output


def test_a_decimal_that_does_not_fit_parquet_stops_the_export_naming_its_field(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "precise.jsonl"
    precise = {"email": "a@b.io", "firstName": "A", "lastName": "B"}
    source.write_text(json.dumps({**precise, "totalSpent": "1.0000000000000000001"}) + "\n")
    assert run(sandbox, "import", "customers", str(source), "--no-journal").exit_code == 0
    target = tmp_path / "out.parquet"
    result = run(sandbox, "export", "customers", "--format", "parquet", "-o", str(target))
    assert result.exit_code == 1
    assert (
        "error: totalSpent: '1.0000000000000000001' does not fit a Parquet decimal(38, 18) "
        "column; export it with --format jsonl" in result.output
    )
    assert not target.exists()  # no file that looks complete (pyarrow would close it with a footer)
    lines = run(sandbox, "export", "customers").stdout.splitlines()
    assert json.loads(lines[0])["totalSpent"] == "1.0000000000000000001"  # JSON Lines keeps it


async def test_a_record_that_does_not_fit_its_model_stops_the_walk_naming_the_field() -> None:
    # Records are written as the API sent them, but each page is checked first, as a typed
    # call's answer is: a record the model refuses is never written.
    with pytest.raises(ResponseValidationError) as caught:
        await walk(Collection(5000, unfit_at=2005))
    assert "email" in str(caught.value)
    assert caught.value.field_path == "[5].email"  # the record within its page, and the field
