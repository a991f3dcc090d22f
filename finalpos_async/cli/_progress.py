"""The import's progress display: a live bar on a terminal, plain lines otherwise.

Both show the lookup of the rows whose answer was lost while it runs (`BulkReport.phase`):
`looking up 207 rows in the target: 45,000 records scanned, 12 found`. It walks the target's whole
listing and finishes few rows meanwhile, so `drive` also refreshes the display on a timer instead
of only when a row finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .._constants import PROGRESS_LINE_INTERVAL
from ..bulk import BulkJob, BulkReport
from ._failed import FailedRows, write_result

__all__ = ["Bar", "Lines", "drive", "lookup_line", "refreshing"]

LOOKING_UP = "looking up"
RESENDING = "resending"
READING = "reading the target"


async def drive(job: BulkJob[Any], failed: FailedRows, console: Console, total: int) -> bool:
    """Consume the run: progress shown, failed rows written as they come.

    Returns True when the run was cancelled (a second Ctrl-C while rows were in flight).
    """
    # A bar only on a terminal: in a log file or a CI job, a redrawn line is cut at 80 columns
    # and says nothing; plain lines every few seconds do.
    progress = Bar(console, total) if console.is_terminal else Lines(console, total)
    try:
        with progress:
            async with refreshing(progress.update, job.report, progress.refresh_every):
                async for result in job:
                    if not result.ok:
                        write_result(failed, result)
                    progress.update(job.report)
    except asyncio.CancelledError:
        return True
    return False


@contextlib.asynccontextmanager
async def refreshing(
    update: Callable[[BulkReport], None], report: BulkReport, every: float
) -> AsyncGenerator[None, None]:
    """Call `update(report)` every `every` seconds while the block runs (a task, no thread)."""

    async def refresh() -> None:
        while True:
            await asyncio.sleep(every)
            update(report)

    task = asyncio.create_task(refresh())
    try:
        yield
    finally:
        task.cancel()
        # `wait`, not `await task`: a cancellation of this task itself must not be swallowed.
        await asyncio.wait([task])
        if not task.cancelled():
            task.result()  # an error in `update`: raised here, not logged as never retrieved


def lookup_line(report: BulkReport) -> str | None:
    """What the lost-answer lookup is doing (None when the run is not at it)."""
    scanned = f"{report.lookup_records:,} records scanned, {report.lookup_found:,} found"
    if report.phase == READING:
        return (
            f"reading the target first (a new journal, and the target holds records): "
            f"{report.lookup_records:,} records scanned"
        )
    if report.phase == LOOKING_UP:
        return f"looking up {report.lookup_pending:,} rows in the target: {scanned}"
    if report.phase == RESENDING and not report.lookup_pending:
        return "sending again the rows refused before they were processed"
    if report.phase == RESENDING:
        others = max(report.lookup_pending - report.lookup_found, 0)
        return (
            f"looked up {report.lookup_pending:,} rows in the target: {scanned}; "
            f"sending the other {others:,} again"
        )
    return None


class _NotedProgress(Progress):
    """rich's `Progress` with a line of text under its bars (empty: none)."""

    note = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield from super().get_renderables()
        if self.note:
            yield Text(self.note)


class Bar:
    """The live progress bar (a terminal), with the lookup's line under it while it runs."""

    refresh_every = 0.25  # seconds between updates when no row finishes (rich redraws at 10/s)

    def __init__(self, console: Console, total: int) -> None:
        self._progress = _NotedProgress(
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
        self._progress.note = lookup_line(report) or ""
        self._progress.update(
            self._task,
            completed=report.done,
            failed=report.done - report.succeeded - report.skipped,
            rate=report.rate,
        )


class Lines:
    """Plain progress lines every `interval` seconds (not a terminal), and one at once when the
    run starts or ends its lookup; during the lookup the line is the lookup's."""

    def __init__(
        self,
        console: Console,
        total: int,
        *,
        interval: float = PROGRESS_LINE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console
        self._total = total
        self._interval = interval
        self._clock = clock
        self._next = 0.0
        self._phase = "sending"  # the phase of the last line
        self._report: BulkReport | None = None
        # How often `drive` calls `update` when no row finishes: a line is at most this late.
        self.refresh_every = interval / 5

    def __enter__(self) -> Lines:
        self._next = self._clock() + self._interval
        return self

    def __exit__(self, *exc: object) -> None:
        if self._report is not None:
            self._say(self._report)

    def update(self, report: BulkReport) -> None:
        self._report = report
        now = self._clock()
        changed = self._phase != report.phase
        if now >= self._next or changed:
            self._phase = report.phase
            self._next = now + self._interval
            line = lookup_line(report)
            if line is not None and (report.phase == LOOKING_UP or changed):
                self._console.print(line, soft_wrap=True)
            else:
                self._say(report)

    def _say(self, report: BulkReport) -> None:
        share = f" ({100 * report.done / self._total:.0f}%)" if self._total else ""
        not_ok = report.done - report.succeeded - report.skipped
        self._console.print(
            f"importing: {report.done}/{self._total} rows{share}, {not_ok} not ok, "
            f"{report.rate:.0f} rows/s, {report.elapsed:.0f} s",
            soft_wrap=True,
        )
