"""The import's progress display: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .._constants import PROGRESS_LINE_INTERVAL
from ..bulk import BulkJob, BulkReport
from ._failed import FailedRows, write_result

__all__ = ["Bar", "Lines", "drive"]


async def drive(job: BulkJob[Any], failed: FailedRows, console: Console, total: int) -> bool:
    """Consume the run: progress shown, failed rows written as they come.

    Returns True when the run was cancelled (a second Ctrl-C while rows were in flight).
    """
    # A bar only on a terminal: in a log file or a CI job, a redrawn line is cut at 80 columns
    # and says nothing; plain lines every few seconds do.
    progress = Bar(console, total) if console.is_terminal else Lines(console, total)
    try:
        with progress:
            async for result in job:
                if not result.ok:
                    write_result(failed, result)
                progress.update(job.report)
    except asyncio.CancelledError:
        return True
    return False


class Bar:
    """The live progress bar (a terminal)."""

    def __init__(self, console: Console, total: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("[red]{task.fields[failed]} not ok"),
            TextColumn("{task.fields[rate]:>7.0f} rows/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task("import", total=total, failed=0, rate=0.0)

    def __enter__(self) -> Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, report: BulkReport) -> None:
        self._progress.update(
            self._task,
            completed=report.done,
            failed=report.done - report.succeeded - report.skipped,
            rate=report.rate,
        )


class Lines:
    """Plain progress lines every `PROGRESS_LINE_INTERVAL` seconds (not a terminal)."""

    def __init__(self, console: Console, total: int) -> None:
        self._console = console
        self._total = total
        self._next = 0.0
        self._report: BulkReport | None = None

    def __enter__(self) -> Lines:
        self._next = time.monotonic() + PROGRESS_LINE_INTERVAL
        return self

    def __exit__(self, *exc: object) -> None:
        if self._report is not None:
            self._say(self._report)

    def update(self, report: BulkReport) -> None:
        self._report = report
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PROGRESS_LINE_INTERVAL
            self._say(report)

    def _say(self, report: BulkReport) -> None:
        share = f" ({100 * report.done / self._total:.0f}%)" if self._total else ""
        not_ok = report.done - report.succeeded - report.skipped
        self._console.print(
            f"importing: {report.done}/{self._total} rows{share}, {not_ok} not ok, "
            f"{report.rate:.0f} rows/s, {report.elapsed:.0f} s",
            soft_wrap=True,
        )
