"""Configuration never silently does something else, and CLI messages say what is wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sandbox_proc import ROOT, run_cli, write_customers_csv

from finalpos_async import AsyncFinalPOS


def test_a_base_url_without_a_key_is_refused_not_sent_to_a_sandbox(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    write_customers_csv(source, ["ann"])
    result = run_cli(
        "import", "customers", str(source), env={"FINALPOS_BASE_URL": "https://api.example.com"}
    )
    assert result.returncode == 2
    flat = " ".join(result.stderr.split())
    assert "https://api.example.com" in flat
    assert "FINALPOS_API_KEY" in flat
    assert "embedded sandbox at" not in flat  # none was started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]  # nothing written


def test_the_sandbox_is_used_only_when_neither_url_nor_key_is_given(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    write_customers_csv(source, ["ann"])
    result = run_cli("import", "customers", str(source), env={"FINALPOS_BASE_URL": ""})
    assert result.returncode == 0, result.stderr
    assert "embedded sandbox" in result.stderr


def test_an_unknown_log_level_gets_one_warning_naming_the_valid_ones() -> None:
    code = "import finalpos_async as f; f.AsyncFinalPOS('sk_test')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(ROOT), "FINALPOS_LOG": "verbose", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "FINALPOS_LOG='verbose'" in lines[0]
    assert "info" in lines[0]
    assert "debug" in lines[0]


@pytest.mark.parametrize("key", [" sk_abc ", "sk_abc\n", "\tsk_abc"])
def test_a_key_with_whitespace_around_it_is_refused_without_echoing_it(key: str) -> None:
    with pytest.raises(ValueError, match="spaces or line breaks around it") as caught:
        AsyncFinalPOS(key)
    assert "sk_abc" not in str(caught.value)


def test_the_cli_refuses_a_key_with_spaces_without_echoing_it(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    write_customers_csv(source, ["ann"])
    result = run_cli(
        "--api-key", " sk_abc ", "--base-url", "http://127.0.0.1:9", "import", "customers",
        str(source),
    )  # fmt: skip
    assert result.returncode == 1
    assert "spaces or line breaks" in result.stderr
    assert "sk_abc" not in result.stderr


def test_a_key_column_that_does_not_exist_is_named_as_missing_from_the_file(
    tmp_path: Path,
) -> None:
    source = tmp_path / "c.csv"
    write_customers_csv(source, ["ann", "bob"])
    result = run_cli("import", "customers", str(source), "--key", "nosuchcol")
    assert result.returncode == 1
    flat = " ".join(result.stderr.split())
    assert "--key nosuchcol" in flat
    assert "has no such column (its columns: email, firstName, lastName)" in flat
    assert "sent as given" not in flat
    assert not (tmp_path / "c.csv.failed.jsonl").exists()


def test_a_sandbox_db_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    oops = tmp_path / "oops.csv"
    oops.write_text("email,firstName\n")
    result = run_cli("--sandbox-db", str(oops), "export", "customers")
    assert result.returncode == 2
    flat = " ".join(result.stderr.split())
    assert f"--sandbox-db {oops}" in flat
    assert "not a sandbox database" in flat
    assert oops.read_text() == "email,firstName\n"  # left untouched


def test_reading_commands_on_a_throwaway_sandbox_say_how_to_keep_data() -> None:
    result = run_cli("export", "customers")
    assert result.returncode == 0
    flat = " ".join(result.stderr.split())
    assert "new and empty" in flat
    assert "--sandbox-db FILE" in flat


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    write_customers_csv(source, [f"p{n}" for n in range(50)])
    result = run_cli("import", "customers", str(source))
    assert result.returncode == 0, result.stderr
    assert "importing: 50/50 rows (100%), 0 not ok" in result.stderr
    assert "━" not in result.stderr  # no bar redrawn into a log
