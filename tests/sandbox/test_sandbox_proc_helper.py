"""The `sandbox_proc` helpers: a sandbox process that serves, keeps its SQLite file, and stops."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import aiohttp
from sandbox_proc import duplicates, records, run_cli, sandbox_process, write_customers_csv

CUSTOMER = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}


async def test_a_post_lands_and_the_process_stops_on_exit(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    async with sandbox_process(db=db, api_key="sk_helper_test") as sandbox:
        assert sandbox.db == db
        assert sandbox.api_key == "sk_helper_test"
        assert sandbox.process.returncode is None
        async with (
            aiohttp.ClientSession(sandbox.url, headers={"x-api-key": sandbox.api_key}) as http,
            http.post("/v1/api/customer", json=CUSTOMER) as response,
        ):
            assert response.status == 201
            created = await response.json()
        stored = await records(sandbox.url, sandbox.api_key)
        assert [c["id"] for c in stored] == [created["id"]]
    assert sandbox.process.returncode == 0  # SIGTERM is a clean stop
    assert db.exists()

    # the same file in a new process: the record is still there
    async with sandbox_process(db=db) as again:
        assert [c["email"] for c in await records(again.url, again.api_key)] == [CUSTOMER["email"]]


async def test_records_reads_past_injected_faults() -> None:
    async with sandbox_process(faults="rate=1,kinds=503", seed=1) as sandbox:
        assert await records(sandbox.url, sandbox.api_key) == []


def test_duplicates_counts_values_seen_more_than_once() -> None:
    items: list[dict[str, Any]] = [{"email": "a"}, {"email": "b"}, {"email": "a"}, {"other": 1}]
    items.append({"email": "a"})
    assert duplicates(items) == {"a": 3}
    assert duplicates(items, "other") == {}


def test_write_customers_csv(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    write_customers_csv(path, ["ada", "grace"])
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["email", "firstName", "lastName"],
        ["ada@example.com", "Ada", "Test"],
        ["grace@example.com", "Grace", "Test"],
    ]


def test_run_cli_captures_the_output_as_text() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("finalpos, version")
