"""`finalpos export`, `get`, `delete`, `resources`: data on stdout, humans on stderr."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cli_run import run
from click.testing import CliRunner

from finalpos_async.cli._app import cli
from finalpos_async.sandbox import Sandbox


def seed(sb: Sandbox, tmp_path: Path, count: int) -> None:
    source = tmp_path / "seed.csv"
    source.write_text(
        "email,first_name,last_name,billing.city,tags\n"
        + "".join(f"s{n}@example.com,S,{n},Porto,a;b\n" for n in range(count))
    )
    # One row at a time: the sandbox lists in creation order, which the export tests check.
    args = ["import", "customers", str(source), "--no-journal", "--concurrency", "1"]
    assert run(sb, *args).exit_code == 0


def test_export_jsonl_streams_every_item_across_pages(sandbox: Sandbox, tmp_path: Path) -> None:
    seed(sandbox, tmp_path, 25)
    result = run(sandbox, "export", "customers", "--page-size", "10")
    assert result.exit_code == 0, result.output
    items = [json.loads(line) for line in result.stdout.splitlines()]
    assert [i["email"] for i in items] == [f"s{n}@example.com" for n in range(25)]
    assert "25 customers exported." in result.stderr


def test_export_limit_stops_early(sandbox: Sandbox, tmp_path: Path) -> None:
    seed(sandbox, tmp_path, 12)
    result = run(sandbox, "export", "customers", "--limit", "5", "--page-size", "4")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 5


def test_export_csv_round_trips_through_import(sandbox: Sandbox, tmp_path: Path) -> None:
    seed(sandbox, tmp_path, 8)
    out = tmp_path / "out.csv"
    result = run(sandbox, "export", "customers", "--format", "csv", "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 8
    assert rows[0]["billing.city"] == "Porto"
    assert json.loads(rows[0]["tags"]) == ["a", "b"]
    with Sandbox().run_in_thread() as other:
        again = run(other, "import", "customers", str(out), "--no-journal")
        assert again.exit_code == 0, again.output
        exported = run(other, "export", "customers")
    copies = [json.loads(line) for line in exported.stdout.splitlines()]
    assert sorted(c["email"] for c in copies) == sorted(r["email"] for r in rows)
    assert copies[0]["billing"]["city"] == "Porto"


def test_get_and_delete_print_json(sandbox: Sandbox, tmp_path: Path) -> None:
    seed(sandbox, tmp_path, 1)
    first = json.loads(run(sandbox, "export", "customers").stdout.splitlines()[0])
    got = run(sandbox, "get", "customers", first["id"])
    assert got.exit_code == 0
    assert json.loads(got.stdout)["email"] == "s0@example.com"
    deleted = run(sandbox, "delete", "customer", first["id"])
    assert deleted.exit_code == 0
    assert json.loads(deleted.stdout)["statusCode"] == 200
    missing = run(sandbox, "get", "customers", first["id"])
    assert missing.exit_code == 1
    assert "NotFoundError" in missing.stderr or "404" in missing.stderr
    assert missing.stdout == ""


def test_bad_ids_are_refused_before_any_request(sandbox: Sandbox) -> None:
    result = run(sandbox, "get", "customers", "a\nb")
    assert result.exit_code == 1
    assert "id" in result.stderr


def test_commands_refuse_resources_without_that_operation(sandbox: Sandbox) -> None:
    result = run(sandbox, "delete", "products", "x")
    assert result.exit_code == 2
    assert "products has no delete" in result.stderr


def test_resources_lists_what_each_command_can_do() -> None:
    result = CliRunner().invoke(cli, ["resources"])
    assert result.exit_code == 0
    line = next(x for x in result.stdout.splitlines() if x.startswith("customers"))
    assert "import, export, get, delete" in line


def test_version_and_sandbox_help() -> None:
    assert CliRunner().invoke(cli, ["--version"]).stdout.startswith("finalpos, version")
    help_text = CliRunner().invoke(cli, ["sandbox", "--help"]).stdout
    assert "--faults" in help_text
    assert "--db" in help_text


def test_sandbox_command_serves_until_interrupted() -> None:
    root = Path(__file__).parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "finalpos_async.cli", "sandbox", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        url = ""
        for line in proc.stdout:
            if "listening on" in line:
                url = line.rsplit(" ", 1)[-1].strip()
                break
            assert time.monotonic() < deadline
        assert url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(
            f"{url}/v1/api/customers", headers={"x-api-key": "sk_sandbox_finalpos"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read()) == []
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
