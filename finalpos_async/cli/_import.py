"""`finalpos import RESOURCE FILE`: check every row, then send the good ones with the bulk engine.

Two passes over the file, both streaming (memory does not grow with the file):

1. read and check every row against the create schema; bad rows are listed with line and field
   and written to the failed-rows file at once;
2. read it again and send the good rows with `client.bulk.run`, showing a live progress bar;
   rows the API refuses go to the failed-rows file with the API's reason.

Exit status: 0 when every row is in the API, 1 when any row is invalid, failed or was not sent,
130 when interrupted. The failed-rows file (`FILE.failed.jsonl`) is itself importable, so fixing
it and running `finalpos import RESOURCE FILE.failed.jsonl` finishes the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import attrs
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
from rich.table import Table

from .._types import RequestOptions
from ..bulk import BulkJob, ItemResult, Journal
from ._connect import Settings, connect
from ._rows import RowError, RowParser, read_records
from ._spec import Resource

__all__ = ["ImportOptions", "run_import"]

_SHOWN_ERRORS = 20  # bad rows listed on screen; the failed-rows file has them all

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


@attrs.frozen(kw_only=True)
class ImportOptions:
    """What the `import` command was asked to do."""

    resource: Resource
    file: Path
    fmt: str
    concurrency: int
    rate: float | None
    journal: Path | None
    no_journal: bool
    key_field: str | None
    failed_file: Path | None
    validate_only: bool
    drain_timeout: float


class _FailedRows:
    """The failed-rows file, opened on the first failure (so a clean run leaves no file)."""

    def __init__(self, path: Path, resource_name: str) -> None:
        self.path = path
        self.resource_name = resource_name
        self.count = 0
        self._stream: IO[str] | None = None

    def write(self, line: int, row: Mapping[str, Any], error: str, field: str = "") -> None:
        if self._stream is None:
            self._stream = self.path.open("w", encoding="utf-8")
        record: dict[str, Any] = {"line": line, "error": error}
        if field:
            record["field"] = field
        record["row"] = row
        self._stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def discard_stale(self) -> None:
        """Remove a failed-rows file left by an earlier run that this run will replace."""
        if self._stream is None and self.path.exists():
            self.path.unlink()


def _records(options: ImportOptions) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
    with options.file.open(encoding="utf-8-sig", newline="") as stream:
        yield from read_records(stream, options.fmt)


def run_import(options: ImportOptions, settings: Settings, console: Console) -> int:
    """Run the whole command; returns the exit status."""
    resource = options.resource
    assert resource.create_path is not None
    failed = _FailedRows(
        options.failed_file or options.file.with_name(options.file.name + ".failed.jsonl"),
        resource.name,
    )
    failed.discard_stale()
    try:
        valid, invalid = _validate(options, failed, console)
        if options.validate_only:
            console.print(f"{valid} valid rows, {invalid} invalid rows (nothing was sent).")
            return EXIT_OK if invalid == 0 else EXIT_FAILED
        if valid == 0:
            console.print("No valid rows to import.")
            return EXIT_FAILED if invalid else EXIT_OK
        return asyncio.run(_send(options, settings, console, failed, valid, invalid))
    finally:
        failed.close()


def _parser(options: ImportOptions) -> RowParser:
    resource = options.resource
    assert resource.create_schema is not None
    server_fields = frozenset((resource.item_schema or {}).get("properties", {}))
    return RowParser(
        resource.create_schema,
        schema_name=resource.create_schema_name or "body",
        server_fields=server_fields,
    )


def _validate(options: ImportOptions, failed: _FailedRows, console: Console) -> tuple[int, int]:
    """Pass 1: check every row; bad ones are shown (the first few) and written to `failed`."""
    parser = _parser(options)
    valid = invalid = 0
    shown: list[RowError] = []
    for line, record in _records(options):
        if isinstance(record, RowError):
            errors: tuple[RowError, ...] = (record,)
            raw: Mapping[str, Any] = {}
        else:
            parsed = parser.parse(line, record)
            errors, raw = parsed.errors, record
            if (
                not errors
                and options.key_field
                and _key_of(parser, parsed.body, options.key_field) is None
            ):
                errors = (RowError(line, options.key_field, "is empty (it is the --key column)"),)
        if not errors:
            valid += 1
            continue
        invalid += 1
        shown.extend(errors[: max(0, _SHOWN_ERRORS - len(shown))])
        failed.write(
            line,
            raw,
            "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in errors),
            errors[0].field,
        )
    if parser.dropped_columns:
        names = ", ".join(sorted(parser.dropped_columns))
        console.print(f"[yellow]note:[/] column(s) {names} are set by the server; not sent.")
    if parser.unknown_columns:
        names = ", ".join(sorted(parser.unknown_columns))
        console.print(
            f"[yellow]note:[/] column(s) {names} are not in {options.resource.create_schema_name}; "
            "sent as given."
        )
    if invalid:
        table = Table(title=f"{invalid} invalid row(s) (not sent)", title_justify="left")
        table.add_column("line", justify="right")
        table.add_column("field")
        table.add_column("problem")
        for error in shown:
            table.add_row(str(error.line), error.field or "-", error.message)
        console.print(table)
        if invalid > len(shown):
            console.print(f"... all {invalid} are in {failed.path}")
    return valid, invalid


def _good_rows(options: ImportOptions) -> Iterator[dict[str, Any]]:
    """Pass 2: the valid rows again, as bulk items (the operation's keyword arguments)."""
    parser = _parser(options)
    for line, record in _records(options):
        if isinstance(record, RowError):
            continue
        parsed = parser.parse(line, record)
        if parsed.body is None:
            continue
        key = str(line)
        if options.key_field:
            found = _key_of(parser, parsed.body, options.key_field)
            if found is None:
                continue
            key = found
        yield {"body": parsed.body, "line": line, "row_key": key}


def _key_of(parser: RowParser, body: Mapping[str, Any] | None, column: str) -> str | None:
    """The value of the --key column in a parsed body (None when missing)."""
    value: Any = body
    for part in parser.column_path(column):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return None if value is None else str(value)


async def _send(
    options: ImportOptions,
    settings: Settings,
    console: Console,
    failed: _FailedRows,
    valid: int,
    invalid: int,
) -> int:
    resource = options.resource
    path = resource.create_path
    assert path is not None
    # --rate paces HTTP attempts (retries included), so it goes to the client, not the job.
    settings = attrs.evolve(settings, rate_limit=options.rate)
    async with connect(settings, console.print) as conn:
        client = conn.client

        async def create(
            *, body: dict[str, Any], line: int, row_key: str, idempotency_key: str
        ) -> Any:
            # The raw call gives the engine the attempt count of every row.
            return await client._request(
                "POST", path, json=body, options=RequestOptions(idempotency_key=idempotency_key)
            )

        journal = options.journal
        if journal is None and not options.no_journal and conn.persistent:
            journal = options.file.with_name(options.file.name + ".journal")
        if options.no_journal:
            journal = None
        # The label ties the file to this resource and this kind of row identity: resuming
        # with another --key would give every row a new idempotency key, hence duplicates.
        log = (
            Journal(journal, job=f"{resource.name}.create key={options.key_field or 'line'}")
            if journal is not None
            else None
        )
        try:
            if log is not None:
                log.open()  # fails here, before anything is sent, if the file is another job's
                console.print(f"Journal: {journal} (re-run the same command to resume).")
            job: BulkJob[Any] = client.bulk.run(
                create,
                _good_rows(options),
                concurrency=options.concurrency,
                journal=log,
                key="row_key",
                drain_timeout=options.drain_timeout,
            )
            interrupted = _install_interrupt(job, console, options.drain_timeout)
            try:
                await _drive(job, console, failed, valid)
            except asyncio.CancelledError:
                interrupted.append(True)
            finally:
                _remove_interrupt()
        finally:
            if log is not None:
                log.close()
        _summary(job, console, failed, valid, invalid, journal)
        if interrupted or job.report.outcome != "completed":
            return EXIT_INTERRUPTED
        return EXIT_OK if failed.count == 0 and job.report.cancelled == 0 else EXIT_FAILED


async def _drive(job: BulkJob[Any], console: Console, failed: _FailedRows, total: int) -> None:
    """Consume the run: progress bar, failed rows written as they come."""
    progress = Progress(
        TextColumn("[bold]importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TextColumn("{task.fields[rate]:>7.0f} rows/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task("import", total=total, failed=0, rate=0.0)
        report = job.report
        async for result in job:
            if not result.ok:
                _write_failure(failed, result)
            progress.update(
                task,
                completed=report.done,
                failed=report.failed + report.cancelled,
                rate=report.rate,
            )


def _write_failure(failed: _FailedRows, result: ItemResult[Any]) -> None:
    item = result.item
    row = item.get("body", item)
    line = item.get("line", result.index)
    failed.write(int(line), row, result.reason)


def _summary(
    job: BulkJob[Any],
    console: Console,
    failed: _FailedRows,
    valid: int,
    invalid: int,
    journal: Path | None,
) -> None:
    report = job.report
    table = Table(title="Import summary", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("rows read", str(valid + invalid))
    table.add_row("invalid (not sent)", str(invalid))
    table.add_row("[green]created", str(report.succeeded))
    if report.skipped:
        table.add_row("already imported (journal)", str(report.skipped))
    table.add_row("[red]failed", str(report.failed))
    if report.cancelled or report.outcome != "completed":
        table.add_row("interrupted (not finished)", str(report.cancelled))
        table.add_row("not started", str(valid - report.submitted))
    table.add_row("HTTP attempts", str(report.attempts))
    table.add_row("elapsed", f"{report.elapsed:.1f} s")
    table.add_row("rate", f"{report.rate:.0f} rows/s")
    console.print(table)
    if failed.count:
        console.print(
            f"{failed.count} row(s) with their error written to {failed.path}; fix them and run "
            f"`finalpos import {failed.resource_name} {failed.path}`."
        )
    if report.outcome != "completed" and journal is not None:
        console.print(f"Interrupted: run the same command again to resume from {journal}.")


_handlers: list[int] = []


def _install_interrupt(job: BulkJob[Any], console: Console, drain: float) -> list[bool]:
    """First Ctrl-C: stop reading rows, let those in flight finish; second: cancel them now."""
    flag: list[bool] = []
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_interrupt() -> None:
        flag.append(True)
        if len(flag) == 1:
            console.print(
                f"\n[yellow]Stopping:[/] finishing rows in flight (up to {drain:g} s); "
                "Ctrl-C again to abort."
            )
            job.stop()
        elif len(flag) == 2:
            console.print("\n[yellow]Aborting:[/] cancelling rows in flight.")
            job.stop(drain_timeout=0)
        elif main_task is not None:
            main_task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows, non-main thread
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, on_interrupt)
        _handlers.extend([signal.SIGINT, signal.SIGTERM])
    return flag


def _remove_interrupt() -> None:
    loop = asyncio.get_running_loop()
    while _handlers:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(_handlers.pop())
