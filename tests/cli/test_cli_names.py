"""CLI resource names are the library's, and every command goes through a typed method."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_run import run
from click.testing import CliRunner

from finalpos_async import AsyncFinalPOS
from finalpos_async.cli._app import cli
from finalpos_async.cli._spec import find_resource, load_resources
from finalpos_async.resources.customers import AsyncCustomers
from finalpos_async.sandbox import Sandbox


async def test_every_cli_resource_and_method_is_the_clients() -> None:
    async with AsyncFinalPOS("sk_test_x", base_url="http://127.0.0.1:9") as client:
        for name, resource in load_resources().items():
            attribute = getattr(client, name)
            for op in resource.operations:
                assert callable(getattr(attribute, op.name)), op.qualified_name
    assert find_resource("custom-tables") is find_resource("custom_tables")


def test_custom_tables_rows_round_trip_by_method(sandbox: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("tableId.$oid,colour\n665f1f77bcf86cd799439011,red\n")
    imported = run(sandbox, "import", "custom_tables.create_row", str(source), "--no-journal")
    assert imported.exit_code == 0, imported.stderr
    listed = run(
        sandbox, "export", "custom-tables.list_rows", "--param", "table-id=665f1f77bcf86cd799439011"
    )
    assert listed.exit_code == 0, listed.stderr
    row = json.loads(listed.stdout.splitlines()[0])
    assert row["colour"] == "red"
    got = run(sandbox, "get", "custom_tables", row["_id"]["$oid"])  # its only retrieve method
    assert got.exit_code == 0, got.stderr
    assert json.loads(got.stdout)["colour"] == "red"
    tables = run(sandbox, "export", "custom-tables")  # `client.custom_tables.list`
    assert tables.exit_code == 0, tables.stderr


def test_a_wrong_method_or_parameter_names_the_choices(sandbox: Sandbox) -> None:
    wrong = run(sandbox, "export", "custom_tables.rows")
    assert wrong.exit_code == 2
    assert "custom_tables.list_rows" in wrong.stderr
    assert "custom_tables.list_fields" in wrong.stderr
    missing = run(sandbox, "export", "custom_tables.list_fields")
    assert missing.exit_code == 2
    assert "--param table-id=VALUE" in missing.stderr
    unknown = run(sandbox, "export", "custom_tables.list_rows", "--param", "colour=red")
    assert unknown.exit_code == 2
    assert "table-id" in unknown.stderr
    nothing = run(sandbox, "get", "no-such-thing", "x")
    assert nothing.exit_code == 2
    assert "customers" in nothing.stderr


def test_old_names_still_work_with_a_note_naming_the_new_one(sandbox: Sandbox) -> None:
    result = run(sandbox, "export", "custom-table-rows")
    assert result.exit_code == 0, result.stderr
    assert "deprecated" in result.stderr
    assert "custom_tables.list_rows" in result.stderr


def test_help_shows_how_to_pick_a_method() -> None:
    text = CliRunner().invoke(cli, ["export", "--help"]).stdout
    assert "RESOURCE.METHOD" in text
    assert "--param" in text
    listing = CliRunner().invoke(cli, ["resources"]).stdout
    line = next(x for x in listing.splitlines() if x.startswith("custom_tables"))
    assert "custom_tables.create_row" in line
    assert "custom_tables.list_rows" in line


def test_import_calls_the_typed_create_method(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    original = AsyncCustomers.create

    async def create(self: AsyncCustomers, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return await original(self, **kwargs)

    monkeypatch.setattr(AsyncCustomers, "create", create)
    source = tmp_path / "c.csv"
    source.write_text("email,first_name,last_name,loyaltyTier\na@example.com,Ada,L,gold\n")
    result = run(sandbox, "import", "customers", str(source), "--no-journal")
    assert result.exit_code == 0, result.stderr
    assert len(calls) == 1
    # Python parameter names; a field the spec does not list goes in extra_body.
    assert calls[0]["first_name"] == "Ada"
    assert calls[0]["extra_body"] == {"loyaltyTier": "gold"}
    assert calls[0]["idempotency_key"]


def test_the_typed_models_checks_run_on_every_row_before_sending(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "c.csv"
    source.write_text(
        "email,first_name,last_name,total_spent\na@example.com,A,L,abc\nb@example.com,B,L,12.50\n"
    )
    result = run(sandbox, "import", "customers", str(source), "--no-journal")
    assert result.exit_code == 1
    assert "totalSpent" in result.stderr
    assert 'got "abc"' in result.stderr
    failed = [
        json.loads(line) for line in (tmp_path / "c.csv.failed.jsonl").read_text().splitlines()
    ]
    assert [(r["line"], r["outcome"], r["field"]) for r in failed[1:]] == [
        (2, "invalid", "totalSpent")
    ]
