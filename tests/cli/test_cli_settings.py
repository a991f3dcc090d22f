"""Configuration never silently does something else, and CLI messages say what is wrong."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from rich.console import Console
from sandbox_proc import ROOT, run_cli, write_customers_csv

from finalpos_async import AsyncFinalPOS
from finalpos_async.bulk import BulkJob, BulkReport, ItemResult
from finalpos_async.cli._failed import FailedRows
from finalpos_async.cli._progress import Lines, drive, lookup_line, refreshing


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


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_show_the_lookup_of_lost_answers_as_it_scans() -> None:
    out = io.StringIO()
    clock = FakeClock()
    report = BulkReport()
    lines = Lines(Console(file=out, width=80), 307, interval=5.0, clock=clock)

    def said() -> list[str]:
        text = out.getvalue().splitlines()
        out.seek(0)
        out.truncate()
        return text

    with lines:
        report.succeeded = 100
        lines.update(report)
        assert said() == []  # within the first interval
        clock.now += 6
        lines.update(report)
        (line,) = said()
        assert line.startswith("importing: 100/307 rows (33%), 0 not ok,")
        # The lookup starts: said at once, then as it scans (and only then: few rows finish).
        report.phase, report.lookup_pending = "looking up", 207
        lines.update(report)
        assert said() == ["looking up 207 rows in the target: 0 records scanned, 0 found"]
        clock.now += 1
        report.lookup_records = 20_000
        lines.update(report)
        assert said() == []
        clock.now += 5
        report.lookup_records, report.lookup_found, report.succeeded = 45_000, 12, 112
        lines.update(report)
        assert said() == ["looking up 207 rows in the target: 45,000 records scanned, 12 found"]
        clock.now += 5
        report.lookup_records = 197_122
        lines.update(report)
        assert said() == ["looking up 207 rows in the target: 197,122 records scanned, 12 found"]
        # Done: the rows it did not find are sent again, with the usual lines.
        report.phase, report.lookup_found, report.succeeded = "resending", 195, 295
        lines.update(report)
        assert said() == [
            "looked up 207 rows in the target: 197,122 records scanned, 195 found; sending the "
            "other 12 again"
        ]
        clock.now += 5
        report.succeeded = 300
        lines.update(report)
        (line,) = said()
        assert line.startswith("importing: 300/307 rows (98%), 0 not ok,")
        report.succeeded = 307
    (line,) = said()  # the last line, when the run ends
    assert line.startswith("importing: 307/307 rows (100%), 0 not ok,")
    assert lookup_line(report) is not None
    report.phase = "sending"
    assert lookup_line(report) is None
    report.phase = "reading the target"
    report.lookup_records = 45_000
    assert lookup_line(report) == (
        "reading the target first (a new journal, and the target holds records): "
        "45,000 records scanned"
    )


class LookingUp:
    """A bulk job that sends nothing and spends its time in the lookup: it yields no result
    until the display has shown the scan (an event, no sleep), then ends."""

    def __init__(self, shown: Callable[[], bool]) -> None:
        self.report = BulkReport()
        self._shown = shown

    def __aiter__(self) -> AsyncIterator[ItemResult[Any]]:
        return self._run()

    async def _run(self) -> AsyncIterator[ItemResult[Any]]:
        report = self.report
        report.phase, report.lookup_pending = "looking up", 207
        report.lookup_records, report.lookup_found = 45_000, 12
        deadline = asyncio.get_running_loop().time() + 10
        while not self._shown():  # a poll with a deadline: the display refreshes on a timer
            assert asyncio.get_running_loop().time() < deadline, "the lookup was never shown"
            await asyncio.sleep(0.02)
        report.phase = "sending"
        return
        yield  # an async generator that yields nothing


@pytest.mark.parametrize("terminal", [False, True])
async def test_the_display_refreshes_while_the_lookup_yields_no_result(terminal: bool) -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=terminal)
    wanted = "looking up 207 rows in the target: 45,000 records scanned, 12 found"
    job = LookingUp(lambda: wanted in out.getvalue())
    failed = FailedRows(Path(os.devnull))
    cancelled = await drive(cast("BulkJob[Any]", job), failed, console, 207)
    assert cancelled is False
    assert wanted in out.getvalue()


async def test_refreshing_calls_update_on_a_timer_and_stops_with_the_block() -> None:
    report = BulkReport()
    seen: list[BulkReport] = []
    three = asyncio.Event()

    def update(given: BulkReport) -> None:
        seen.append(given)
        if len(seen) == 3:
            three.set()

    async with refreshing(update, report, 0.01):
        await asyncio.wait_for(three.wait(), timeout=10)
    count = len(seen)
    assert all(given is report for given in seen)
    for _ in range(5):  # the timer is gone: a few turns of the loop call nothing more
        await asyncio.sleep(0)
    assert len(seen) == count
