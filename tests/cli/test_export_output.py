"""`finalpos export -o FILE` leaves FILE complete or untouched: never half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_run import run
from click.testing import Result

from finalpos_async.sandbox import Sandbox

FORMATS = ["jsonl", "csv", "parquet"]


def seed(sb: Sandbox, tmp_path: Path, count: int, *, bad_at: int | None = None) -> None:
    """`count` customers; the one at `bad_at` stored with a `createdAt` no response may carry."""
    source = tmp_path / "seed.jsonl"
    rows = [{"email": f"s{n}@example.com", "firstName": "S", "lastName": str(n)} for n in range(3)]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = ["import", "customers", str(source), "--no-journal", "--concurrency", "1"]
    assert run(sb, *args).exit_code == 0
    template = sb.storage.list("CustomerDto", 0, 1)[0]
    sb.storage.insert_many(
        "CustomerDto",
        (
            (f"id{n}", {**template, "id": f"id{n}", "email": f"c{n}@example.com"})
            if n != bad_at
            else (f"id{n}", {**template, "id": f"id{n}", "createdAt": "the day before"})
            for n in range(3, count)
        ),
    )
    source.unlink()


def export(sb: Sandbox, fmt: str, target: Path) -> Result:
    args = ["export", "customers", "--format", fmt, "-o", str(target), "--page-size", "2"]
    return run(sb, *args, "-c", "1")


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_that_fails_midway_leaves_no_file(
    sandbox: Sandbox, tmp_path: Path, fmt: str
) -> None:
    seed(sandbox, tmp_path, 9, bad_at=6)  # pages 0-2 are written before page 3 fails
    target = tmp_path / f"out.{fmt}"
    result = export(sandbox, fmt, target)
    assert result.exit_code == 1, result.output
    assert "createdAt" in result.output
    assert os.listdir(tmp_path) == []  # neither the file nor its hidden partial copy


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_export_keeps_the_previous_file_and_a_good_one_replaces_it(
    sandbox: Sandbox, tmp_path: Path, fmt: str
) -> None:
    seed(sandbox, tmp_path, 5)
    target = tmp_path / f"out.{fmt}"
    target.write_bytes(b"yesterday's export")
    sandbox.storage.insert("CustomerDto", "bad", {"id": "bad", "createdAt": "the day before"})
    assert export(sandbox, fmt, target).exit_code == 1
    assert target.read_bytes() == b"yesterday's export"
    assert sandbox.storage.delete("CustomerDto", "bad")
    result = export(sandbox, fmt, target)
    assert result.exit_code == 0, result.output
    assert "5 customers exported." in result.stderr
    assert os.listdir(tmp_path) == [target.name]
    if fmt == "parquet":
        assert pq.read_table(target).num_rows == 5
    else:
        lines = target.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 5 + (fmt == "csv")  # the CSV header line


def test_the_readme_says_where_the_records_go_until_the_export_succeeds() -> None:
    readme = Path(__file__).parents[2] / "README.md"
    text = " ".join(readme.read_text(encoding="utf-8").split())
    assert "the records go to a hidden `.FILE.*.part` beside FILE" in text
    assert "leaves no half-written file and an earlier FILE as it was" in text
