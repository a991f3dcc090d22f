"""`finalpos import RESOURCE FILE`: check every row, then send the good ones with the bulk engine.

Two passes over the file, both streaming (memory grows only with one short hash per row):

1. read and check every row against the create schema and the typed method's model, and against
   the journal (`_plan`): bad rows are listed with line and field; a row whose --key was
   imported with other content stops the run before anything is sent;
2. read it again and send the good rows through the typed create method
   (`client.customers.create`) with `client.bulk.run`, showing progress (`_progress`).

Every row that is not in the target at the end (invalid, refused, outcome unknown, not sent)
goes to the failed-rows file `FILE.failed.jsonl` (`_failed`), with its line in the original
file, its error, its identity and idempotency key. That file is itself importable (`_input`):
importing it continues the same job (same journal, same keys), so it is safe before, after or
instead of re-running the command.

Exit status: 0 when every row is in the target, 1 otherwise, 130 when interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console

from .._limiter import Limiter
from .._redis_limit import RedisRateLimiter
from ..bulk import (
    BulkJob,
    ItemStatus,
    JournalDamagedError,
    JournalError,
    JournalMismatchError,
    JournalStore,
    LeaseLostError,
    PostgresJournal,
    Work,
    content_digest,
    journal_store,
)
from ._connect import Connection, Settings, connect
from ._failed import FailedRows
from ._heap import tune_for_bulk_work
from ._import_job import bulk_job
from ._input import FAILED_ROWS_HEADER, Header, Input, InputError, Row
from ._options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ImportOptions,
    journal_spec,
    shown,
)
from ._plan import Identities, Plan, make_parser, validate
from ._progress import drive
from ._report import (
    print_checks,
    print_instruction,
    print_summary,
    refuse_changed,
    refuse_changed_file,
    report_journal_failed,
)
from ._rows import RowError
from ._shard import Shard, parse_shard, shared_job_id
from ._spec import lookup
from ._worker import ChunkRun, describe, run_worker

__all__ = [
    "FAILED_ROWS_HEADER",
    "ImportOptions",
    "InputError",
    "run_import",
]


def run_import(options: ImportOptions, settings: Settings, console: Console) -> int:
    """Run the whole command; returns the exit status."""
    source = Input(
        options.file, options.fmt, options.encoding, max_field_bytes=options.max_field_bytes
    )
    header = source.header
    if header is not None and not _same_target(header.resource, options):
        raise InputError(
            f"{options.file} holds failed {header.resource} rows, not {options.name}: "
            f"run `finalpos import {header.resource} {options.file}`"
        )
    key_field = options.key_field
    if header is not None:
        if key_field is None:
            key_field = header.key
        elif key_field != header.key:
            raise InputError(
                f"{options.file} was written by an import with --key {header.key or '(none)'}; "
                f"import it with the same --key (or without --key)"
            )
    options = attrs.evolve(options, key_field=key_field, shard=_shard_of_run(options, header))
    if options.worker and header is not None:
        raise InputError(
            f"{options.file} is a failed-rows file: import it without --worker (it continues "
            "the job it names, once its workers are done)"
        )
    if options.validate_only:
        return _validate_only(options, source, console)
    failed = FailedRows(_failed_path(options, header))
    tune_for_bulk_work()
    try:
        return asyncio.run(_import(options, source, settings, console, failed))
    finally:
        failed.discard()


def _validate_only(options: ImportOptions, source: Input, console: Console) -> int:
    """--validate-only: pass 1 alone. It writes nothing (no journal, no failed-rows file) and
    connects to nothing, so it reads no journal either: the real run still refuses a row changed
    since it was imported, before it sends anything."""
    failed = FailedRows(_failed_path(options, source.header), keep=False)
    plan, parser = validate(
        options, source.rows(), failed, None, lambda _: False, continuing=source.header is not None
    )
    print_checks(options, parser, plan, failed, console)
    console.print(f"{plan.valid} valid rows, {plan.invalid} invalid rows (nothing was sent).")
    return EXIT_OK if plan.invalid == 0 else EXIT_FAILED


def _shard_of_run(options: ImportOptions, header: Header | None) -> Shard | None:
    """--shard, or the one a failed-rows file's header names (its rows are that shard's)."""
    if header is None:
        return options.shard
    recorded = parse_shard(header.shard) if header.shard else None
    if options.shard is not None and options.shard != recorded:
        given = f"--shard {options.shard.label}"
        if recorded is None:
            raise InputError(
                f"{options.file} holds failed rows of an import without --shard: import it "
                f"without {given}"
            )
        raise InputError(
            f"{options.file} holds the failed rows of shard {recorded.label}, not "
            f"{options.shard.label}: import it with --shard {recorded.label} (or without --shard)"
        )
    return recorded


def _same_target(recorded: str, options: ImportOptions) -> bool:
    """A failed-rows header's resource (this version's name, or an older one) means this import."""
    choice = lookup(recorded)
    if choice is None:
        return False
    try:
        return choice.pick("create") == options.operation
    except ValueError:
        return False


def _failed_path(options: ImportOptions, header: Header | None) -> Path:
    if options.failed_file is not None:
        return options.failed_file
    if header is not None:
        return options.file  # its remaining failures replace it
    return options.file.with_name(f"{options.file.name}{_shard_tag(options)}.failed.jsonl")


def _shard_tag(options: ImportOptions) -> str:
    """`.shard-2-of-4` in the default file names of a sharded import (each has its own)."""
    return f".{options.shard.file_tag}" if options.shard is not None else ""


async def _import(
    options: ImportOptions,
    source: Input,
    settings: Settings,
    console: Console,
    failed: FailedRows,
) -> int:
    # --rate paces HTTP attempts (retries included), so it goes to the client, not the job.
    settings = attrs.evolve(
        settings,
        rate_limit=options.rate,
        rate_burst=options.burst,
        redis_url=options.redis_url,
        redis_key=options.redis_key,
    )
    try:
        async with connect(settings, console.print) as conn:
            if options.worker:
                return await _work(options, source, conn, console)
            return await _connected(options, source, conn, console, failed)
    finally:
        # Only now: a Ctrl-C while the summary is written is one more press, not a crash
        # that would lose the failed-rows file and the instruction.
        _remove_interrupt()


async def _work(options: ImportOptions, source: Input, conn: Connection, console: Console) -> int:
    """--worker: import the job's chunks this process can lease, until all are done."""
    if conn.embedded:
        raise InputError(
            "--worker shares a job between processes, and an embedded sandbox lives in this "
            "one: give --api-key and --base-url (a sandbox of its own: python -m "
            "finalpos_async.sandbox --db FILE)"
        )
    op = options.operation.qualified_name
    job_id = shared_job_id(conn.target_id, op, options.key_field, options.file.name)
    description = describe(options, conn.target)
    work = Work(
        work_id=job_id, chunks=options.chunks, tenant=options.tenant, description=description
    )

    async def import_chunk(chunk_options: ImportOptions, run: ChunkRun) -> int:
        failed = FailedRows(_failed_path(chunk_options, None))
        # Every HTTP attempt of the chunk checks its lease first (`LeaseHolder.guard`).
        middleware = [*conn.client.middleware, run.holder.guard]
        guarded = attrs.evolve(conn, client=conn.client.with_options(middleware=middleware))
        try:
            return await _connected(chunk_options, source, guarded, console, failed, run)
        finally:
            failed.discard()

    return await run_worker(options, work, console, import_chunk)


@attrs.define
class RunState:
    """The send pass: its input, and what happened to the command while it ran."""

    # A failed-rows file with no journal to ask: its unknown-outcome rows are not resent
    # blindly (only with --resend-unknown), they go back to the failed-rows file.
    hold_unknown: bool
    journal: JournalStore | None = None
    total: int = 0
    interrupted: bool = False
    confirmed: int = 0  # unknown rows the user said are in the target
    rows: Iterator[dict[str, Any]] | None = None

    def held(self, row: Row) -> bool:
        """An unknown-outcome row that is kept back (not sent, written back as unknown)."""
        return self.hold_unknown and row.outcome == ItemStatus.UNKNOWN.value and row.exists is None

    def settle(self, row: Row, identity: str, digest: str) -> bool:
        """Apply the user's answer for a row of unknown outcome; False when it is not to be sent.

        `"exists": true` records it as created; `false` as not created, so it is sent (under the
        same idempotency key). With no journal there is nothing to record: true drops the row.
        """
        if row.outcome != ItemStatus.UNKNOWN.value or row.exists is None:
            return True
        journal = self.journal
        if journal is not None:
            entry = journal.lookup(identity)
            if entry is None or entry.unresolved:
                journal.record(
                    identity,
                    ItemStatus.SUCCEEDED.value if row.exists else ItemStatus.FAILED.value,
                    digest=digest,
                    idempotency_key=row.idempotency_key or (entry.idempotency_key if entry else ""),
                    error="found in the target by the user" if row.exists else None,
                )
            return True  # the engine skips (true) or sends (false) it
        if row.exists:
            self.confirmed += 1
            return False
        return True


async def _connected(
    options: ImportOptions,
    source: Input,
    conn: Connection,
    console: Console,
    failed: FailedRows,
    chunk: ChunkRun | None = None,
) -> int:
    header = source.header
    journal_path = _journal_path(options, header, conn)
    journal_error: JournalError | None = None
    journal = _store(journal_path, chunk)
    job_id = header.job_id if header is not None else None
    if job_id is None and (options.shard is not None or isinstance(journal, PostgresJournal)):
        # One id for every process of this file's import: shards, workers, plain runs on
        # PostgreSQL (which take the job's lock alone, so they never mix with its workers).
        op = options.operation.qualified_name
        job_id = shared_job_id(conn.target_id, op, options.key_field, options.file.name)
    if journal is None and job_id is None:
        job_id = uuid.uuid4().hex
    state = RunState(hold_unknown=journal is None and not options.resend_unknown, journal=journal)
    state.rows = _good_rows(options, source, state)  # lazy: starts when the job pulls
    job = bulk_job(options, conn, journal, job_id, state.rows)
    if chunk is not None:
        chunk.holder.on_lost(lambda: job.stop(drain_timeout=0))  # nothing in flight past it
    try:
        _open_journal(job, options)
        assert job.job_id is not None or journal is None
        run_header = _run_header(options, header, journal_path, job.job_id or job_id, conn)
        plan, parser = validate(
            options, source.rows(), failed, journal, state.held, continuing=header is not None
        )
        print_checks(options, parser, plan, failed, console)
        status = _refusal(options, plan, failed, console, header is not None)
        if status is not None:
            return status
        if journal is not None:
            console.print(f"Journal: {shown(journal_path or '')}")
        limiter = conn.client.rate_limiter
        if options.shard is not None or isinstance(limiter, RedisRateLimiter):
            console.print(_pacing(options, limiter, plan))
        state.total = plan.valid
        if source.changed():
            refuse_changed_file(options, console, sent=False, journaled=journal is not None)
            return EXIT_FAILED
        if options.handle_signals:
            _install_interrupt(job, console, options.drain_timeout, state)
        try:
            if plan.valid and await drive(job, failed, console, state.total):
                state.interrupted = True
        except JournalError as exc:
            journal_error = exc
        _write_not_started(source, failed, state)
    finally:
        if journal is not None:
            try:
                journal.close()
            except JournalError as exc:
                journal_error = journal_error or exc
    if chunk is not None and _chunk_ended(chunk, journal_error):
        return EXIT_FAILED  # the chunk's new owner writes its failed-rows file, not this run
    if journal_error is not None:
        report_journal_failed(journal_error, job, options, console, failed, run_header, plan)
        if chunk is not None:
            raise journal_error  # the chunk is not done: the worker gives it back and stops
        return EXIT_FAILED
    if chunk is not None:
        chunk.outcomes.update(_outcomes(job, plan, failed))
    # Asked before the commit, which replaces a failed-rows file being re-imported.
    changed = source.changed()
    failed.commit(run_header)
    print_summary(job, console, failed, plan, options.shard)
    if changed:
        refuse_changed_file(options, console, sent=True, journaled=journal is not None)
        return EXIT_FAILED
    print_instruction(job, options, console, failed)
    if state.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if failed.count == 0 else EXIT_FAILED


def _store(journal: Path | str | None, chunk: ChunkRun | None) -> JournalStore | None:
    """The journal store: a leased chunk's is fenced by its lease."""
    if journal is None:
        return None
    if chunk is not None:
        return PostgresJournal(str(journal), lease=chunk.holder.lease)
    return journal_store(journal)


def _run_header(
    options: ImportOptions,
    header: Header | None,
    journal: Path | str | None,
    job_id: str | None,
    conn: Connection,
) -> Header:
    """The failed-rows file's header: what importing that file continues. A leased chunk's
    names no shard: its rows are the job's, continued by a run without --worker."""
    shard = options.shard
    return Header(
        resource=options.name,
        source=str(options.file if header is None else header.source),
        journal=_recorded(journal),
        job_id=job_id or "",
        key=options.key_field,
        target=conn.target,
        shard=shard.label if shard is not None and not shard.leased else None,
    )


def _chunk_ended(chunk: ChunkRun, journal_error: JournalError | None) -> bool:
    """The chunk's lease was lost (the journal's fence may say so first): it is another
    worker's now."""
    if isinstance(journal_error, LeaseLostError):
        chunk.holder.lose(str(journal_error))
    return chunk.holder.lost is not None


def _outcomes(job: BulkJob[Any], plan: Plan, failed: FailedRows) -> dict[str, int]:
    """A chunk's rows per outcome, for its record on the board."""
    report = job.report
    return {
        "rows": plan.valid + plan.invalid + plan.held_unknown,
        "invalid": plan.invalid,
        "created": report.succeeded - report.found,
        "found": report.found,
        "skipped": report.skipped,
        "failed": failed.outcomes["failed"],
        "unknown": report.unknown + plan.held_unknown,
        "not_sent": failed.outcomes["not sent"],
    }


def _pacing(options: ImportOptions, limiter: Limiter | None, plan: Plan) -> str:
    """Which rows this process sends and under which cap (for the shard's operator)."""
    parts: list[str] = []
    if options.shard is not None:
        noun = options.shard.noun
        parts.append(
            f"{noun.capitalize()} {options.shard.label}: {plan.valid} rows to send here, "
            f"{plan.other_shards} in the other {noun}s"
        )
    if isinstance(limiter, RedisRateLimiter):
        parts.append(f"rate {limiter.rate:g}/s shared through {limiter!r}")
    return "; ".join(parts) + "."


def _open_journal(job: BulkJob[Any], options: ImportOptions) -> None:
    """Open and bind the journal; a refusal names the exact command that goes on."""
    try:
        job.open_journal()
    except JournalMismatchError as exc:
        if exc.differs == ("credentials",):
            advice = (
                f"If the key was rotated, run `{options.same_command('--rotated-key')}`; if "
                f"it is another account, give it its own journal ({_own_journal(options)})."
            )
        else:
            advice = f"(for example {_own_journal(options)})."
        raise JournalMismatchError(
            f"{exc} {advice}",
            path=exc.path,
            recorded=exc.recorded,
            requested=exc.requested,
            differs=exc.differs,
        ) from None
    except JournalDamagedError as exc:
        fresh = _free_journal_name(options.file)
        raise JournalDamagedError(
            f"{exc}. To go on, run `{options.same_command('--journal', str(fresh))}`",
            path=exc.path,
        ) from None


def _own_journal(options: ImportOptions) -> str:
    """How to give this import a journal of its own (a PostgreSQL one: another database)."""
    fresh = f"--journal {_free_journal_name(options.file)}"
    return f"{fresh}, or another database" if isinstance(options.journal, str) else fresh


def _refusal(
    options: ImportOptions, plan: Plan, failed: FailedRows, console: Console, continuing: bool
) -> int | None:
    """The exit status when pass 1 ends the command (nothing is sent), else None."""
    if plan.changed:
        failed.discard()
        refuse_changed(plan, options, console)
        return EXIT_FAILED
    if plan.valid == 0 and plan.invalid == 0 and plan.held_unknown == 0:
        if plan.other_shards and options.shard is not None:
            console.print(
                f"None of the {plan.other_shards} rows of {options.file} is "
                f"{options.shard.noun} {options.shard.label}'s: nothing to import here."
            )
            return EXIT_OK
        if continuing:
            console.print(
                f"{options.file} has no rows left: every row of this import is in the target."
            )
            return EXIT_OK
        raise InputError(f"{options.file} holds no rows to import (only a header?)")
    return None


def _journal_path(
    options: ImportOptions, header: Header | None, conn: Connection
) -> Path | str | None:
    """The SQLite file or the PostgreSQL URL (a `str`) this import journals into, if any."""
    if options.no_journal:
        return None
    if options.journal is not None:
        return options.journal
    if header is not None:
        # A failed-rows file continues the job that wrote it: the same journal.
        return journal_spec(header.journal) if header.journal else None
    if not conn.persistent:
        return None  # an in-memory sandbox dies with this command: nothing to resume
    return options.file.with_name(f"{options.file.name}{_shard_tag(options)}.journal")


def _recorded(journal: Path | str | None) -> str | None:
    """The journal as a failed-rows file records it: an absolute path, or the URL without its
    password (the run that imports that file reads it from PGPASSWORD or ~/.pgpass)."""
    if journal is None:
        return None
    return shown(journal) if isinstance(journal, str) else str(journal.absolute())


def _free_journal_name(file: Path) -> Path:
    for n in range(2, 1000):
        candidate = file.with_name(f"{file.name}.{n}.journal")
        if not candidate.exists():
            return candidate
    return file.with_name(f"{file.name}.{uuid.uuid4().hex[:8]}.journal")  # pragma: no cover


def _good_rows(options: ImportOptions, source: Input, state: RunState) -> Iterator[dict[str, Any]]:
    """Pass 2: the rows pass 1 accepted, as bulk items (the operation's keyword arguments)."""
    parser = make_parser(options)
    identities = Identities(parser, options.key_field)
    shard = options.shard
    for row in source.rows():
        if isinstance(row.data, RowError) or state.held(row):
            continue
        parsed = parser.parse(row.line, row.data)
        if parsed.body is None:
            continue
        # Pass 1 ran `typed_problems` on this very row, and the typed create method runs the
        # same checks before its request leaves: a row that fails them now (the file changed
        # between the passes) is reported failed, naming the field, instead of checked twice.
        digest = content_digest(parsed.body)
        identity, _ = identities.of(row, parsed.body, digest)
        if identity is None or (shard is not None and not shard.owns(identity)):
            continue
        if not state.settle(row, identity, digest):
            continue
        # The digest goes with the row: the engine takes it instead of hashing the body again.
        yield {"body": parsed.body, "row": row, "row_key": identity, "row_digest": digest}


def _write_not_started(source: Input, failed: FailedRows, state: RunState) -> None:
    """Rows the run never started (stopped, aborted) and unknown rows held back: kept."""
    if state.rows is not None:
        for item in state.rows:  # what the job did not pull
            row: Row = item["row"]
            failed.write(
                row,
                "not sent",
                "not sent: the run stopped before this row",
                identity=item["row_key"],
                row=row.data if isinstance(row.data, Mapping) else item["body"],
            )
    if not state.hold_unknown or source.header is None:
        return
    for row in source.rows():
        if state.held(row) and isinstance(row.data, Mapping):
            failed.write(
                row,
                "unknown",
                "outcome unknown (its answer was lost); not sent again",
                identity=row.identity,
                row=row.data,
            )


_handlers: list[int] = []


def _install_interrupt(job: BulkJob[Any], console: Console, drain: float, state: RunState) -> None:
    """First Ctrl-C: stop reading rows, let those in flight finish; second: cancel them now."""
    loop = asyncio.get_running_loop()
    presses: list[bool] = []

    def on_interrupt() -> None:
        presses.append(True)
        state.interrupted = True
        if len(presses) == 1:
            console.print(
                f"\n[yellow]Stopping:[/] finishing rows in flight (up to {drain:g} s); "
                "Ctrl-C again to abort."
            )
            job.stop()
        elif len(presses) == 2:
            console.print("\n[yellow]Aborting:[/] cancelling rows in flight.")
            job.stop(drain_timeout=0)
        # Later presses change nothing: the rows are being written to the failed-rows file.

    with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows, non-main thread
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, on_interrupt)
        _handlers.extend([signal.SIGINT, signal.SIGTERM])


def _remove_interrupt() -> None:
    loop = asyncio.get_running_loop()
    while _handlers:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(_handlers.pop())
