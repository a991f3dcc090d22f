"""What `finalpos import` prints: the checks, the summary and the one instruction to go on."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..bulk import BulkJob, JournalError
from ._failed import FailedRows
from ._input import Header
from ._options import ImportOptions
from ._plan import SHOWN_ERRORS, Plan
from ._rows import RowParser, sniff_format
from ._shard import Shard

__all__ = [
    "print_checks",
    "print_instruction",
    "print_summary",
    "refuse_changed",
    "refuse_changed_file",
    "report_journal_failed",
]


def print_checks(
    options: ImportOptions, parser: RowParser, plan: Plan, failed: FailedRows, console: Console
) -> None:
    """Pass 1's findings: columns not sent or not in the schema, and the first bad rows."""
    schema_name = options.operation.body_schema
    if parser.dropped_columns:
        names = ", ".join(sorted(parser.dropped_columns))
        console.print(f"[yellow]note:[/] column(s) {names} are set by the server; not sent.")
    if parser.unknown_columns:
        names = ", ".join(sorted(parser.unknown_columns))
        console.print(
            f"[yellow]note:[/] column(s) {names} are not in {schema_name}; sent as given."
        )
    if plan.invalid:
        table = Table(title=f"{plan.invalid} invalid row(s) (not sent)", title_justify="left")
        table.add_column("line", justify="right")
        table.add_column("field")
        table.add_column("problem")
        for error in plan.shown:
            table.add_row(str(error.line), error.field or "-", error.message)
        console.print(table)
        if plan.invalid > len(plan.shown) and failed.keep:
            console.print(f"... all {plan.invalid} are in {failed.path}")
        elif plan.invalid > len(plan.shown):
            console.print(
                f"... the first {len(plan.shown)} problems of {plan.invalid} invalid rows "
                f"(--validate-only writes no file; the import lists them all in {failed.path})"
            )


def refuse_changed_file(
    options: ImportOptions, console: Console, *, sent: bool, journaled: bool
) -> None:
    """The file changed after its rows were checked: say so, and the one way on."""
    when = "while its rows were being sent" if sent else "after its rows were checked"
    outcome = "rows read after the change may be missing" if sent else "nothing was sent"
    console.print(f"[red]error:[/] {options.file} changed {when}: {outcome}.", soft_wrap=True)
    if sent and not journaled:
        console.print(
            "Without a journal, running the import again would send every row again: import "
            "only the rows that changed.",
            soft_wrap=True,
        )
        return
    skips = " (its journal skips the rows already done)" if sent else ""
    console.print(
        f"To finish: once the file stays as it is, run `{options.same_command()}`{skips}.",
        soft_wrap=True,
    )


def report_journal_failed(
    error: JournalError,
    job: BulkJob[Any],
    options: ImportOptions,
    console: Console,
    failed: FailedRows,
    header: Header,
    plan: Plan,
) -> None:
    """The journal could not be written mid-run: the summary, the cause, and the one way on.

    The way on is this same command: the rows whose outcome could not be journaled are still
    `sending` in it, so that run looks them up before it sends anything. (The failed-rows file
    may sit on the same full disk: it is written if it can be, but not relied on.)
    """
    try:
        failed.commit(header)
    except OSError:
        failed.discard()
    print_summary(job, console, failed, plan, options.shard)
    console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
    console.print(
        f"To finish: make the journal writable again (free space on its disk), then run "
        f"`{options.same_command()}`",
        soft_wrap=True,
    )


def refuse_changed(plan: Plan, options: ImportOptions, console: Console) -> None:
    table = Table(
        title=f"{len(plan.changed)} row(s) changed since they were imported (nothing was sent)",
        title_justify="left",
    )
    table.add_column("line", justify="right")
    table.add_column(f"--key {options.key_field}")
    table.add_column("record")
    for line, key, record in plan.changed[:SHOWN_ERRORS]:
        table.add_row(str(line), key, record)
    console.print(table)
    console.print(
        f"[red]error:[/] the journal says these rows were imported with other content, and "
        f"an import creates records, it does not update them. Restore these lines of "
        f"{options.file} to what was imported (or delete them from it), then run the same "
        "command again."
    )


def print_summary(
    job: BulkJob[Any],
    console: Console,
    failed: FailedRows,
    plan: Plan,
    shard: Shard | None = None,
) -> None:
    """The counts of the run, its top failure reasons and why it stopped early."""
    report = job.report
    title = "Import summary" + (f" ({shard.noun} {shard.label})" if shard is not None else "")
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    mine = plan.valid + plan.invalid + plan.held_unknown
    if shard is not None:
        table.add_row(f"rows of this {shard.noun}", str(mine))
        table.add_row(f"rows of the other {shard.noun}s (skipped)", str(plan.other_shards))
    else:
        table.add_row("rows read", str(mine))
    table.add_row("invalid (not sent)", str(plan.invalid))
    table.add_row("[green]created", str(report.succeeded - report.found))
    if report.unreadable:
        table.add_row("[yellow]  of which the answer did not fit the model", str(report.unreadable))
    if report.found:
        table.add_row("[green]found in the target (answer had been lost)", str(report.found))
    if report.skipped:
        table.add_row("already imported (journal)", str(report.skipped))
    table.add_row("[red]failed (refused by the API)", str(failed.outcomes["failed"]))
    unknown = report.unknown + plan.held_unknown
    if unknown:
        table.add_row("[red]outcome unknown (answer lost; not resent)", str(unknown))
    not_sent = failed.outcomes["not sent"]
    if not_sent:
        table.add_row("not sent (kept for the next run)", str(not_sent))
    table.add_row("HTTP attempts", str(report.attempts))
    if report.lookup_records:
        table.add_row(
            "lookup in the target",
            f"{report.lookup_records} records read in "
            f"{report.lookup_passes} pass{'es' if report.lookup_passes != 1 else ''}, "
            f"{report.lookup_seconds:.1f} s",
        )
    table.add_row("elapsed", f"{report.elapsed:.1f} s")
    table.add_row("rate", f"{report.rate:.0f} rows/s")
    console.print(table)
    reasons = report.top_reasons(5)
    if reasons:
        console.print("Top failure reasons:")
        for reason, count in reasons:
            console.print(f"  {count} x {reason}")
    if report.unreadable:
        console.print(
            f"[yellow]note:[/] {report.unreadable} row(s) were created but their answer did not "
            f"fit the model (the API may have changed), e.g. {report.unreadable_example}",
            soft_wrap=True,
        )
    if report.stop_reason:
        console.print(f"[red]Stopped early:[/] {report.stop_reason}")


def can_look_up(options: ImportOptions) -> bool:
    """Rows of unknown outcome are found in the target's list on the next run (by --key, or by
    the fields they sent)."""
    return options.resource.related(options.operation, "list") is not None


def print_instruction(
    job: BulkJob[Any],
    options: ImportOptions,
    console: Console,
    failed: FailedRows,
) -> None:
    """Exactly one way on, safe to follow more than once, in any order with a re-run."""
    if failed.count == 0:
        return
    outcomes = failed.outcomes
    steps: list[str] = []
    if job.report.stop_reason:
        steps.append("fix the cause above")
    fixable = outcomes["invalid"] + outcomes["failed"]
    if fixable:
        steps.append(f'fix the {fixable} row(s) marked invalid or failed in it (see "error")')
    if outcomes["unknown"] and not can_look_up(options):
        steps.append(
            f"look up the {outcomes['unknown']} row(s) marked unknown in the target and set "
            'their "exists" to true (it is there) or false (it is not)'
        )
    elif failed.nearly:
        steps.append(
            f"check the {failed.nearly} row(s) whose error says a record nearly matches and "
            'set their "exists" to true (that record is the row) or false (it is not)'
        )
    extra = [options.rerun_flags] if options.rerun_flags else []
    if sniff_format(failed.path) != "jsonl":  # a --failed-file named without .jsonl
        extra.append("--format jsonl")
    command = " ".join([options.command_prefix, "import", options.name, str(failed.path), *extra])
    lead = f"{failed.count} row(s) are not known to be in the target; they are in {failed.path}."
    todo = ", ".join(steps)
    # soft_wrap: never break the command itself over lines, so it can be copied as printed.
    console.print(
        f"{lead} To finish: {todo + ', then ' if todo else ''}run `{command}`", soft_wrap=True
    )
