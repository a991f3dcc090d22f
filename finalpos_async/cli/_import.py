"""`finalpos import RESOURCE FILE`: check every row, then send the good ones with the bulk engine.

Two passes over the file, both streaming (memory grows only with one short hash per row):

1. read and check every row against the create schema, and against the journal: bad rows are
   listed with line and field; a row whose --key was imported with other content stops the run
   before anything is sent;
2. read it again and send the good rows with `client.bulk.run`, showing progress.

Every row that is not in the target at the end (invalid, refused, outcome unknown, not sent)
goes to the failed-rows file `FILE.failed.jsonl`, with its line in the original file, its error,
its identity and idempotency key. That file is itself importable: importing it continues the same
job (same journal, same keys), so it is safe before, after or instead of re-running the command.

Exit status: 0 when every row is in the target, 1 otherwise, 130 when interrupted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TextIO, cast

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

from .._constants import PROGRESS_LINE_INTERVAL
from .._exceptions import (
    APIConnectionError,
    AuthenticationError,
    PermissionDeniedError,
    RateLimitError,
)
from .._types import RequestOptions
from ..bulk import (
    BulkJob,
    BulkReport,
    ContentIdentities,
    ItemResult,
    ItemStatus,
    Journal,
    JournalEntry,
    JournalMismatchError,
    content_digest,
)
from ._calls import get_one, iterate
from ._connect import Connection, Settings, connect
from ._rows import RowError, RowParser, read_records, sniff_format
from ._spec import Resource

__all__ = ["FAILED_ROWS_HEADER", "ImportOptions", "InputError", "run_import"]

_SHOWN_ERRORS = 20  # bad rows listed on screen; the failed-rows file has them all
FAILED_ROWS_HEADER = "finalposFailedRows"  # the key of a failed-rows file's first line

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class InputError(ValueError):
    """The input file cannot be read as asked; the message names the file, line and fix."""


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
    encoding: str = "utf-8-sig"
    resend_unknown: bool = False
    # How the user ran the command, up to `import` (API key masked): for the printed instruction.
    command_prefix: str = "finalpos"
    # The import options a follow-up run should repeat (--rate, --concurrency, ...).
    rerun_flags: str = ""


@attrs.frozen(kw_only=True)
class _Row:
    """One record of the input: its line in the original file and its data (or why unreadable)."""

    line: int
    data: Mapping[str, Any] | RowError
    identity: str | None = None  # carried from a failed-rows file
    outcome: str | None = None  # what the failed-rows file says happened to it
    # For a row of unknown outcome: whether the user found it in the target (None: not said).
    exists: bool | None = None
    idempotency_key: str | None = None  # carried from a failed-rows file
    text: str | None = None  # the raw text of a line that is not valid JSON


@attrs.frozen(kw_only=True)
class _Header:
    """The first line of a failed-rows file: which job its rows belong to."""

    resource: str
    source: str
    journal: str | None
    job_id: str
    key: str | None
    target: str

    def to_json(self) -> dict[str, Any]:
        return {FAILED_ROWS_HEADER: 1, **attrs.asdict(self)}


class _Input:
    """The file being imported: plain rows, or a failed-rows file (a header, then records)."""

    def __init__(self, options: ImportOptions) -> None:
        self.path = options.file
        self.fmt = options.fmt
        self.encoding = options.encoding
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read it ({exc.strerror})") from exc
        if size == 0:
            raise InputError(f"{self.path} is empty: there is nothing to import")
        self.header = self._read_header()

    def _open(self) -> TextIO:
        try:
            return self.path.open(encoding=self.encoding, newline="")
        except LookupError as exc:
            raise InputError(
                f"--encoding {self.encoding!r} is not an encoding Python knows "
                "(e.g. utf-8, cp1252, latin-1)"
            ) from exc

    def _read_header(self) -> _Header | None:
        if self.fmt != "jsonl":
            return None
        with self._decoding(), self._open() as stream:
            for text in stream:
                if not text.strip():
                    continue
                try:
                    first = json.loads(text)
                except json.JSONDecodeError:
                    return None
                if isinstance(first, dict):
                    header = cast("dict[str, Any]", first)
                    if header.get(FAILED_ROWS_HEADER) == 1:
                        return self._header(header)
                return None
        return None

    def _header(self, first: Mapping[str, Any]) -> _Header:
        def text(name: str, *, optional: bool = False) -> Any:
            value = first.get(name)
            if isinstance(value, str) or (optional and value is None):
                return value
            raise InputError(
                f"{self.path}, line 1: the failed-rows header lacks {name!r}; restore that line "
                "as the import wrote it"
            )

        return _Header(
            resource=text("resource"),
            source=text("source"),
            journal=text("journal", optional=True),
            job_id=text("job_id"),
            key=text("key", optional=True),
            target=text("target"),
        )

    def rows(self) -> Iterator[_Row]:
        """Every record, lazily, with the line it had in the file it first came from."""
        with self._decoding(), self._open() as stream:
            if self.header is None:
                for line, record in read_records(stream, self.fmt):
                    text = record.text if isinstance(record, RowError) else None
                    yield _Row(line=line, data=record, text=text)
                return
            yield from self._failed_rows(stream)

    def _failed_rows(self, stream: TextIO) -> Iterator[_Row]:
        for number, text in enumerate(stream, start=1):
            if not text.strip():
                continue
            try:
                decoded: object = json.loads(text)
            except json.JSONDecodeError as exc:
                message = f"not valid JSON ({exc.msg} at column {exc.colno})"
                yield _Row(line=number, data=RowError(number, "", message), text=text.rstrip("\n"))
                continue
            if not isinstance(decoded, dict):
                continue
            record = cast("dict[str, Any]", decoded)
            if record.get(FAILED_ROWS_HEADER) == 1:
                continue
            line: int = record["line"] if isinstance(record.get("line"), int) else number
            identity = record.get("identity") if isinstance(record.get("identity"), str) else None
            outcome = record.get("outcome") if isinstance(record.get("outcome"), str) else None
            row = record.get("row")
            if not isinstance(row, dict) and isinstance(record.get("text"), str):
                raw: str = record["text"]
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError as exc:
                    message = f"not valid JSON ({exc.msg} at column {exc.colno})"
                    yield _Row(line=line, data=RowError(line, "", message), text=raw)
                    continue
            if not isinstance(row, dict):
                message = 'a failed-rows record needs a JSON object in its "row"'
                yield _Row(line=line, data=RowError(line, "", message))
                continue
            exists = record.get("exists")
            idem = record.get("idempotencyKey")
            yield _Row(
                line=line,
                data=cast("dict[str, Any]", row),
                identity=identity,
                outcome=outcome,
                exists=exists if isinstance(exists, bool) else None,
                idempotency_key=idem if isinstance(idem, str) else None,
            )

    @contextlib.contextmanager
    def _decoding(self) -> Generator[None, None, None]:
        try:
            yield
        except UnicodeDecodeError as exc:
            raise InputError(self._decode_problem(exc)) from None

    def _decode_problem(self, exc: UnicodeDecodeError) -> str:
        """Where the first undecodable byte is, by line and column, and how to go on."""
        line_number, column, byte = 0, 0, exc.object[exc.start : exc.start + 1]
        with self.path.open("rb") as raw:
            for line_number, data in enumerate(raw, start=1):  # noqa: B007 - used after the loop
                try:
                    data.decode(self.encoding)
                except UnicodeDecodeError as inner:
                    column, byte = inner.start + 1, data[inner.start : inner.start + 1]
                    break
        hint = (
            "if it was saved by Excel or another Windows program, pass --encoding cp1252 "
            "(or --encoding latin-1)"
            if self.encoding.lower().replace("_", "-").startswith("utf")
            else "pass the file's real encoding with --encoding"
        )
        return (
            f"{self.path}, line {line_number}: byte 0x{byte.hex()} at column {column} is not "
            f"valid {self.encoding}; {hint}"
        )


class _FailedRows:
    """The failed-rows file: written beside the final path, moved into place when complete.

    Until then the previous file (possibly the one being imported) stays untouched, so a crash
    loses nothing; a run with no failures removes the old one, since its rows are all done.
    """

    def __init__(self, path: Path, resource_name: str) -> None:
        self.path = path
        self.resource_name = resource_name
        self.count = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        self._stream: IO[str] | None = None
        self._tmp: str | None = None

    def write(self, source: _Row, outcome: str, error: str, **extra: Any) -> None:
        if self._stream is None:
            self._stream = self._open_tmp()
        record: dict[str, Any] = {"line": source.line, "outcome": outcome, "error": error}
        if outcome == ItemStatus.UNKNOWN.value:
            record["exists"] = None  # for the user to answer: true (in the target) or false
        record.update({k: v for k, v in extra.items() if v is not None})
        self._stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.count += 1
        self.outcomes[outcome] += 1

    def commit(self, header: _Header) -> None:
        """Put the file in place, with its header.

        When nothing failed, no file is made; one left by an earlier run is not removed but
        emptied down to its header, so its printed instruction stays safe to follow again
        (importing it then says that every row is in the target).
        """
        if self._stream is None:
            if not self.path.exists():
                return
            self._stream = self._open_tmp()
        self._stream.close()
        self._stream = None
        assert self._tmp is not None
        final_fd, final_tmp = tempfile.mkstemp(
            prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent
        )
        with (
            os.fdopen(final_fd, "w", encoding="utf-8") as out,
            open(self._tmp, encoding="utf-8") as body,
        ):
            out.write(json.dumps(header.to_json(), ensure_ascii=False) + "\n")
            for text in body:
                out.write(text)
        os.replace(final_tmp, self.path)
        os.unlink(self._tmp)
        self._tmp = None

    def _open_tmp(self) -> IO[str]:
        fd, self._tmp = tempfile.mkstemp(
            prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent
        )
        return os.fdopen(fd, "w", encoding="utf-8")

    def discard(self) -> None:
        """Drop what was written (the run was refused before sending anything)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None


@attrs.define
class _Plan:
    """What pass 1 found."""

    valid: int = 0
    invalid: int = 0
    held_unknown: int = 0  # unknown-outcome rows of a failed-rows file with no journal to ask
    # line, key, what; a lambda because a bare `list` factory is typed `list[Unknown]`
    changed: list[tuple[int, str, str]] = attrs.field(factory=lambda: [])


def run_import(options: ImportOptions, settings: Settings, console: Console) -> int:
    """Run the whole command; returns the exit status."""
    source = _Input(options)
    header = source.header
    if header is not None and header.resource != options.resource.name:
        raise InputError(
            f"{options.file} holds failed {header.resource} rows, not {options.resource.name}: "
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
    options = attrs.evolve(options, key_field=key_field)
    failed = _FailedRows(_failed_path(options, header), options.resource.name)
    try:
        return asyncio.run(_import(options, source, settings, console, failed))
    finally:
        failed.discard()


def _failed_path(options: ImportOptions, header: _Header | None) -> Path:
    if options.failed_file is not None:
        return options.failed_file
    if header is not None:
        return options.file  # its remaining failures replace it
    return options.file.with_name(options.file.name + ".failed.jsonl")


def _parser(options: ImportOptions) -> RowParser:
    resource = options.resource
    assert resource.create_schema is not None
    server_fields = frozenset((resource.item_schema or {}).get("properties", {}))
    return RowParser(
        resource.create_schema,
        schema_name=resource.create_schema_name or "body",
        server_fields=server_fields,
    )


class _Identities:
    """A row's identity: carried by a failed-rows file, else its --key value, else its content
    (the bulk engine's rule: `digest`, then `digest#n` for the n-th repeat)."""

    def __init__(self, parser: RowParser, key_field: str | None) -> None:
        self._parser = parser
        self._key_field = key_field
        self._contents = ContentIdentities()
        self._lines: dict[str, int] = {}  # named identities (keys, carried) -> first line

    def of(self, row: _Row, body: Mapping[str, Any], digest: str) -> tuple[str | None, str]:
        """(identity, problem): identity None when the row cannot have one (problem says why)."""
        if row.identity is not None:
            identity = row.identity
        elif self._key_field is not None:
            found = _key_of(self._parser, body, self._key_field)
            if found is None or found == "":
                return None, "is empty (it is the --key column)"
            identity = found
        else:
            return self._contents.name(digest), ""  # unique by construction
        first = self._lines.get(identity)
        if first is not None:
            return None, f"repeats the --key value {identity!r} of line {first}"
        self._lines[identity] = row.line
        return identity, ""


async def _import(
    options: ImportOptions,
    source: _Input,
    settings: Settings,
    console: Console,
    failed: _FailedRows,
) -> int:
    # --rate paces HTTP attempts (retries included), so it goes to the client, not the job.
    settings = attrs.evolve(settings, rate_limit=options.rate)
    try:
        return await _connected(options, source, settings, console, failed)
    finally:
        # Only now: a Ctrl-C while the summary is written is one more press, not a crash
        # that would lose the failed-rows file and the instruction.
        _remove_interrupt()


async def _connected(
    options: ImportOptions,
    source: _Input,
    settings: Settings,
    console: Console,
    failed: _FailedRows,
) -> int:
    resource = options.resource
    header = source.header
    async with connect(settings, console.print) as conn:
        journal_path = _journal_path(options, header, conn)
        journal = Journal(journal_path) if journal_path is not None else None
        job_id = header.job_id if header is not None else None
        if journal is None and job_id is None:
            job_id = uuid.uuid4().hex
        state = _RunState(
            hold_unknown=journal is None and not options.resend_unknown, journal=journal
        )
        state.rows = _good_rows(options, source, state)  # lazy: starts when the job pulls
        job = _job(options, conn, journal, job_id, state.rows)
        try:
            try:
                job.open_journal()
            except JournalMismatchError as exc:
                raise JournalMismatchError(
                    f"{exc} (for example --journal {_free_journal_name(options.file)}).",
                    path=exc.path,
                    recorded=exc.recorded,
                    requested=exc.requested,
                    differs=exc.differs,
                ) from None
            assert job.job_id is not None or journal is None
            run_header = _Header(
                resource=resource.name,
                source=str(options.file if header is None else header.source),
                journal=str(journal_path.absolute()) if journal_path is not None else None,
                job_id=job.job_id or job_id or "",
                key=options.key_field,
                target=conn.target,
            )
            plan = _validate(options, source, failed, console, journal, state)
            if plan.changed:
                failed.discard()
                _refuse_changed(plan, options, console)
                return EXIT_FAILED
            if options.validate_only:
                console.print(
                    f"{plan.valid} valid rows, {plan.invalid} invalid rows (nothing was sent)."
                )
                return EXIT_OK if plan.invalid == 0 else EXIT_FAILED
            if plan.valid == 0 and plan.invalid == 0 and plan.held_unknown == 0:
                if header is not None:
                    console.print(
                        f"{options.file} has no rows left: every row of this import is in the "
                        "target."
                    )
                    return EXIT_OK
                raise InputError(f"{options.file} holds no rows to import (only a header?)")
            if journal is not None:
                console.print(f"Journal: {journal_path}")
            state.total = plan.valid
            _install_interrupt(job, console, options.drain_timeout, state)
            if plan.valid:
                await _drive(job, failed, console, state)
            _write_not_started(source, failed, state)
        finally:
            if journal is not None:
                journal.close()
        failed.commit(run_header)
        _summary(job, console, failed, plan, state)
        _instruction(job, options, console, failed, state)
        if state.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if failed.count == 0 else EXIT_FAILED


def _journal_path(options: ImportOptions, header: _Header | None, conn: Connection) -> Path | None:
    if options.no_journal:
        return None
    if options.journal is not None:
        return options.journal
    if header is not None:
        # A failed-rows file continues the job that wrote it: the same journal.
        return Path(header.journal) if header.journal else None
    if not conn.persistent:
        return None  # an in-memory sandbox dies with this command: nothing to resume
    return options.file.with_name(options.file.name + ".journal")


def _free_journal_name(file: Path) -> Path:
    for n in range(2, 1000):
        candidate = file.with_name(f"{file.name}.{n}.journal")
        if not candidate.exists():
            return candidate
    return file.with_name(f"{file.name}.{uuid.uuid4().hex[:8]}.journal")  # pragma: no cover


def _job(
    options: ImportOptions,
    conn: Connection,
    journal: Journal | None,
    job_id: str | None,
    rows: Iterator[dict[str, Any]],
) -> BulkJob[Any]:
    resource = options.resource
    client = conn.client
    path = resource.create_path
    assert path is not None

    async def create(*, body: dict[str, Any], row: _Row, row_key: str, idempotency_key: str) -> Any:
        # The raw call gives the engine the attempt count of every row; the client's public
        # `request()` returns only the parsed body, hence the (in-package) private call.
        return await client._request(  # pyright: ignore[reportPrivateUsage]
            "POST", path, json=body, options=RequestOptions(idempotency_key=idempotency_key)
        )

    lookup: Callable[[], AsyncIterator[Any]] | None = None
    lookup_key: Callable[[Any], str | None] | None = None
    key_field = options.key_field
    parser = _parser(options)
    if key_field is not None and resource.list_path is not None:
        list_path = resource.list_path

        def list_records() -> AsyncIterator[Any]:
            return iterate(client, list_path, page_size=1000, limit=None)

        def key_of(record: Any) -> str | None:
            return _key_of(parser, record, key_field)

        lookup, lookup_key = list_records, key_of

    retrieve: Callable[[str], Awaitable[Any]] | None = None
    if resource.has_get and resource.item_path is not None:

        async def retrieve_one(ident: str) -> Any:
            return await get_one(client, resource, ident)

        retrieve = retrieve_one

    return client.bulk.run(
        create,
        rows,
        concurrency=options.concurrency,
        journal=journal,
        key="row_key",
        content="body",
        job_id=job_id,
        drain_timeout=options.drain_timeout,
        lookup=lookup,
        lookup_key=lookup_key,
        retrieve=retrieve,
        # The embedded sandbox replays by Idempotency-Key: resending is safe there.
        resend_unknown=options.resend_unknown or conn.embedded,
        target=conn.target_id,
        operation_name=f"{resource.name}.create key={key_field or 'content'}",
    )


def _validate(
    options: ImportOptions,
    source: _Input,
    failed: _FailedRows,
    console: Console,
    journal: Journal | None,
    state: _RunState,
) -> _Plan:
    """Pass 1: check every row; bad ones are shown (the first few) and written to `failed`."""
    parser = _parser(options)
    identities = _Identities(parser, options.key_field)
    plan = _Plan()
    shown: list[RowError] = []
    key_path = parser.column_path(options.key_field) if options.key_field else None
    columns: set[str] = set()  # the file's columns, until the --key column is among them
    key_found = key_path is None
    for row in source.rows():
        errors: tuple[RowError, ...]
        raw: Mapping[str, Any] | None
        if isinstance(row.data, RowError):
            errors, raw = (row.data,), None
        else:
            if not key_found:
                given = [str(name) for name in row.data]
                key_found = any(parser.column_path(name) == key_path for name in given)
                columns.update(given)
            parsed = parser.parse(row.line, row.data)
            errors, raw = parsed.errors, row.data
            if not errors and parsed.body is not None:
                digest = content_digest(parsed.body)
                identity, problem = identities.of(row, parsed.body, digest)
                if identity is None:
                    errors = (RowError(row.line, options.key_field or "", problem),)
                else:
                    entry = journal.lookup(identity) if journal is not None else None
                    if _changed(entry, digest):
                        assert entry is not None
                        plan.changed.append((row.line, identity, entry.created_id or "?"))
                        continue
                    if state.held(row):
                        plan.held_unknown += 1
                        continue
                    plan.valid += 1
                    continue
        plan.invalid += 1
        shown.extend(errors[: max(0, _SHOWN_ERRORS - len(shown))])
        failed.write(
            row,
            "invalid",
            "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in errors),
            field=errors[0].field or None,
            row=raw,
            text=row.text if raw is None else None,
        )
    if not key_found and _has_rows(plan):
        raise InputError(
            f"--key {options.key_field}: {options.file} has no such column (its columns: "
            f"{', '.join(sorted(columns)) or 'none'}); name one of them, or leave --key out to "
            "identify rows by their content"
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
    if plan.invalid:
        table = Table(title=f"{plan.invalid} invalid row(s) (not sent)", title_justify="left")
        table.add_column("line", justify="right")
        table.add_column("field")
        table.add_column("problem")
        for error in shown:
            table.add_row(str(error.line), error.field or "-", error.message)
        console.print(table)
        if plan.invalid > len(shown):
            console.print(f"... all {plan.invalid} are in {failed.path}")
    return plan


def _has_rows(plan: _Plan) -> bool:
    return plan.valid + plan.invalid + plan.held_unknown + len(plan.changed) > 0


def _changed(entry: JournalEntry | None, digest: str) -> bool:
    return (
        entry is not None and entry.status != ItemStatus.FAILED.value and not entry.matches(digest)
    )


def _refuse_changed(plan: _Plan, options: ImportOptions, console: Console) -> None:
    table = Table(
        title=f"{len(plan.changed)} row(s) changed since they were imported (nothing was sent)",
        title_justify="left",
    )
    table.add_column("line", justify="right")
    table.add_column(f"--key {options.key_field}")
    table.add_column("record")
    for line, key, record in plan.changed[:_SHOWN_ERRORS]:
        table.add_row(str(line), key, record)
    console.print(table)
    console.print(
        f"[red]error:[/] the journal says these rows were imported with other content, and "
        f"an import creates records, it does not update them. Restore these lines of "
        f"{options.file} to what was imported (or delete them from it), then run the same "
        "command again."
    )


@attrs.define
class _RunState:
    """The send pass: its input, and what happened to the command while it ran."""

    # A failed-rows file with no journal to ask: its unknown-outcome rows are not resent
    # blindly (only with --resend-unknown), they go back to the failed-rows file.
    hold_unknown: bool
    journal: Journal | None = None
    total: int = 0
    interrupted: bool = False
    confirmed: int = 0  # unknown rows the user said are in the target
    rows: Iterator[dict[str, Any]] | None = None

    def held(self, row: _Row) -> bool:
        return self.hold_unknown and row.outcome == ItemStatus.UNKNOWN.value and row.exists is None

    def settle(self, row: _Row, identity: str, digest: str) -> bool:
        """Apply the user's answer for a row of unknown outcome; False when it is not to be sent.

        `"exists": true` records it as created; `false` as not created, so it is sent (under the
        same idempotency key). With no journal there is nothing to record: true drops the row.
        """
        if row.outcome != ItemStatus.UNKNOWN.value or row.exists is None:
            return True
        journal = self.journal
        if journal is not None:
            entry = journal.lookup(identity)
            if entry is None or entry.status == ItemStatus.UNKNOWN.value:
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


def _good_rows(
    options: ImportOptions, source: _Input, state: _RunState
) -> Iterator[dict[str, Any]]:
    """Pass 2: the rows pass 1 accepted, as bulk items (the operation's keyword arguments)."""
    parser = _parser(options)
    identities = _Identities(parser, options.key_field)
    for row in source.rows():
        if isinstance(row.data, RowError) or state.held(row):
            continue
        parsed = parser.parse(row.line, row.data)
        if parsed.body is None:
            continue
        digest = content_digest(parsed.body)
        identity, _ = identities.of(row, parsed.body, digest)
        if identity is None or not state.settle(row, identity, digest):
            continue
        yield {"body": parsed.body, "row": row, "row_key": identity}


async def _drive(
    job: BulkJob[Any],
    failed: _FailedRows,
    console: Console,
    state: _RunState,
) -> None:
    """Consume the run: progress bar, failed rows written as they come."""
    # A bar only on a terminal: in a log file or a CI job, a redrawn line is cut at 80 columns
    # and says nothing; plain lines every few seconds do.
    progress = _Bar(console, state.total) if console.is_terminal else _Lines(console, state.total)
    try:
        with progress:
            async for result in job:
                if not result.ok:
                    _write_result(failed, result)
                progress.update(job.report)
    except asyncio.CancelledError:
        state.interrupted = True


class _Bar:
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

    def __enter__(self) -> _Bar:
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


class _Lines:
    """Plain progress lines every `PROGRESS_LINE_INTERVAL` seconds (not a terminal)."""

    def __init__(self, console: Console, total: int) -> None:
        self._console = console
        self._total = total
        self._next = 0.0
        self._report: BulkReport | None = None

    def __enter__(self) -> _Lines:
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


def _outcome(result: ItemResult[Any]) -> str:
    """How the failed-rows file marks a row: `failed` only when the row itself needs a fix."""
    error = result.error
    if result.status is ItemStatus.CANCELLED or (
        result.status is ItemStatus.FAILED
        and (
            isinstance(error, (AuthenticationError, PermissionDeniedError, RateLimitError))
            or (isinstance(error, APIConnectionError) and not error.maybe_processed)
        )
    ):
        return "not sent"  # nothing wrong with the row: the credentials or the target were
    return str(result.status.value)


def _write_result(failed: _FailedRows, result: ItemResult[Any]) -> None:
    item = result.item
    row: _Row = item["row"]
    failed.write(
        row,
        _outcome(result),
        result.reason,
        identity=result.key,
        idempotencyKey=result.idempotency_key or None,
        row=row.data if isinstance(row.data, Mapping) else item["body"],
    )


def _write_not_started(source: _Input, failed: _FailedRows, state: _RunState) -> None:
    """Rows the run never started (stopped, aborted) and unknown rows held back: kept."""
    if state.rows is not None:
        for item in state.rows:  # what the job did not pull
            row: _Row = item["row"]
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


def _key_of(parser: RowParser, body: Any, column: str) -> str | None:
    """The value of the --key column in a parsed body or a listed record (None when missing)."""
    value: Any = body
    for part in parser.column_path(column):
        if not isinstance(value, Mapping):
            return None
        fields = cast("Mapping[str, Any]", value)
        if part not in fields:
            return None
        value = fields[part]
    return None if value is None else str(value)


def _summary(
    job: BulkJob[Any],
    console: Console,
    failed: _FailedRows,
    plan: _Plan,
    state: _RunState,
) -> None:
    report = job.report
    table = Table(title="Import summary", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("rows read", str(plan.valid + plan.invalid + plan.held_unknown))
    table.add_row("invalid (not sent)", str(plan.invalid))
    table.add_row("[green]created", str(report.succeeded - report.found))
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
            f"{report.lookup_records} records, {report.lookup_seconds:.1f} s",
        )
    table.add_row("elapsed", f"{report.elapsed:.1f} s")
    table.add_row("rate", f"{report.rate:.0f} rows/s")
    console.print(table)
    reasons = report.top_reasons(5)
    if reasons:
        console.print("Top failure reasons:")
        for reason, count in reasons:
            console.print(f"  {count} x {reason}")
    if report.stop_reason:
        console.print(f"[red]Stopped early:[/] {report.stop_reason}")


def _can_look_up(options: ImportOptions) -> bool:
    """Rows of unknown outcome are found by --key in the target's list on the next run."""
    return options.key_field is not None and options.resource.list_path is not None


def _instruction(
    job: BulkJob[Any],
    options: ImportOptions,
    console: Console,
    failed: _FailedRows,
    state: _RunState,
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
    if outcomes["unknown"] and not _can_look_up(options):
        steps.append(
            f"look up the {outcomes['unknown']} row(s) marked unknown in the target and set "
            'their "exists" to true (it is there) or false (it is not)'
        )
    extra = [options.rerun_flags] if options.rerun_flags else []
    if sniff_format(failed.path) != "jsonl":  # a --failed-file named without .jsonl
        extra.append("--format jsonl")
    command = " ".join(
        [options.command_prefix, "import", options.resource.name, str(failed.path), *extra]
    )
    lead = f"{failed.count} row(s) are not known to be in the target; they are in {failed.path}."
    todo = ", ".join(steps)
    # soft_wrap: never break the command itself over lines, so it can be copied as printed.
    console.print(
        f"{lead} To finish: {todo + ', then ' if todo else ''}run `{command}`", soft_wrap=True
    )


_handlers: list[int] = []


def _install_interrupt(job: BulkJob[Any], console: Console, drain: float, state: _RunState) -> None:
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
