"""Pass 1 of an import: check every row (spec schema, typed model, --key, journal), send nothing.

Bad rows are written to the failed-rows file as they are found; `_report` shows the first few.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import attrs

from .. import types
from .._converter import FieldError, unstructure_params
from .._method_info import MethodInfo
from ..bulk import ContentIdentities, ItemStatus, JournalEntry, JournalStore, content_digest
from ..spec import component
from ._failed import FailedRows
from ._input import Input, InputError, Row
from ._options import ImportOptions
from ._rows import RowError, RowParser, sniff_format
from ._shard import Shard, shard_of
from ._spec import body_arguments

__all__ = [
    "SHOWN_ERRORS",
    "Identities",
    "Plan",
    "holds_csv_cells",
    "key_of",
    "make_parser",
    "typed_problems",
    "validate",
]

SHOWN_ERRORS = 20  # bad rows listed on screen; the failed-rows file has them all


@attrs.define
class Plan:
    """What pass 1 found."""

    valid: int = 0
    invalid: int = 0
    held_unknown: int = 0  # unknown-outcome rows of a failed-rows file with no journal to ask
    other_shards: int = 0  # rows that another --shard imports (or reports)
    # line, key, what; a lambda because a bare `list` factory is typed `list[Unknown]`
    changed: list[tuple[int, str, str]] = attrs.field(factory=lambda: [])
    shown: list[RowError] = attrs.field(factory=lambda: [])  # the first few problems

    @property
    def has_rows(self) -> bool:
        """The file held at least one row."""
        counted = self.valid + self.invalid + self.held_unknown + self.other_shards
        return counted + len(self.changed) > 0


def make_parser(options: ImportOptions) -> RowParser:
    """The row parser for the import's create method (its body schema from the spec)."""
    op = options.operation
    if op.body_schema is None:
        raise InputError(f"{options.name} takes no body: there is nothing to import into it")
    response: Mapping[str, Any] = component(op.response_schema) if op.response_schema else {}
    return RowParser(
        component(op.body_schema),
        schema_name=op.body_schema,
        server_fields=frozenset(response.get("properties", {})),
        trim=not options.keep_whitespace and holds_csv_cells(options),
    )


def holds_csv_cells(options: ImportOptions) -> bool:
    """The file's values are CSV cells: a CSV, or the failed-rows file of a CSV import (its rows
    are the CSV's cells as read, so they are trimmed the same way and keep their identity)."""
    if options.fmt != "jsonl":
        return True
    limit = options.max_field_bytes
    header = Input(options.file, options.fmt, options.encoding, max_field_bytes=limit).header
    return header is not None and sniff_format(Path(header.source)) == "csv"


def typed_problems(op: MethodInfo, line: int, body: Mapping[str, Any]) -> list[RowError]:
    """What the typed method's own argument checks say about a body (the model's rules)."""
    model = getattr(types, op.body_model, None) if op.body_model else None
    if model is None:
        return []
    kwargs, extra = body_arguments(op, body)
    try:
        unstructure_params(model, kwargs, extra)
    except FieldError as error:
        wire = {p.python_name: p.wire_name for p in op.body_fields}
        path = [wire.get(part, part) if isinstance(part, str) else part for part in error.path]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        got = _shown(body, path) or error.received_type
        return [RowError(line, field, f"must be {error.expected}, got {got}")]
    except (TypeError, ValueError) as error:
        return [RowError(line, "", str(error))]
    return []


def _shown(body: Any, path: list[str | int]) -> str | None:
    """The value at `path` in a body, as short JSON (None when the path leads nowhere)."""
    value: object = body
    for part in path:
        if isinstance(value, list) and isinstance(part, int):
            items = cast("list[object]", value)  # decoded JSON: any values
            if part >= len(items):
                return None
            value = items[part]
        elif isinstance(value, Mapping) and isinstance(part, str):
            fields = cast("Mapping[str, object]", value)
            if part not in fields:
                return None
            value = fields[part]
        else:
            return None
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def key_of(parser: RowParser, body: Any, column: str) -> str | None:
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


class Identities:
    """A row's identity: carried by a failed-rows file, else its --key value, else its content
    (the bulk engine's rule: `digest`, then `digest#n` for the n-th repeat).

    With --key, the first row with a key is the row; a later one has no identity: it is an
    invalid row ("repeats the --key value"), on every run, and never reaches the journal (so it
    is never "changed": only its first row was imported). In a failed-rows file such a row is
    marked (`Row.repeats`), since the first row is not in that file: it stays a repeat there
    until its key is edited.
    """

    def __init__(self, parser: RowParser, key_field: str | None) -> None:
        self._parser = parser
        self._key_field = key_field
        self._contents = ContentIdentities()
        self._lines: dict[str, int] = {}  # named identities (keys, carried) -> first line

    def of(self, row: Row, body: Mapping[str, Any], digest: str) -> tuple[str | None, str]:
        """(identity, problem): identity None when the row cannot have one (problem says why)."""
        identity, problem, _ = self.check(row, body, digest)
        return identity, problem

    def check(
        self, row: Row, body: Mapping[str, Any], digest: str
    ) -> tuple[str | None, str, tuple[str, int] | None]:
        """`of`, and for a repeated key the (key, line of its first row) it repeats."""
        if row.identity is not None:
            identity = row.identity
        elif self._key_field is not None:
            found = key_of(self._parser, body, self._key_field)
            if found is None or found == "":
                return None, "is empty (it is the --key column)", row.repeats
            if row.repeats is not None and row.repeats[0] == found:
                return None, _repeat_problem(*row.repeats), row.repeats
            identity = found
        else:
            return self._contents.name(digest), "", None  # unique by construction
        first = self._lines.get(identity)
        if first is not None:
            return None, _repeat_problem(identity, first), (identity, first)
        self._lines[identity] = row.line
        return identity, "", None


def _repeat_problem(key: str, first: int) -> str:
    return f"repeats the --key value {key!r} of line {first}"


def changed(entry: JournalEntry | None, digest: str) -> bool:
    """The journal has this identity as imported with other content."""
    return (
        entry is not None and entry.status != ItemStatus.FAILED.value and not entry.matches(digest)
    )


@attrs.define
class _Check:
    """Pass 1's running state over one file."""

    options: ImportOptions
    parser: RowParser
    journal: JournalStore | None
    held: Callable[[Row], bool]  # an unknown-outcome row held back (`_import.RunState.held`)
    continuing: bool  # the input is a failed-rows file: all its rows are its shard's
    plan: Plan = attrs.field(factory=Plan)
    identities: Identities = attrs.field(init=False)
    key_path: tuple[str, ...] | None = attrs.field(init=False)
    columns: set[str] = attrs.field(factory=lambda: set[str]())  # until the --key one is seen
    key_found: bool = attrs.field(init=False)
    operation: MethodInfo = attrs.field(init=False)
    journal_holds: bool = attrs.field(init=False)  # the journal has records (of earlier runs)
    # The last row's repeated key, (key, first line), for its failed-rows record: found now, or
    # carried by a failed-rows file for a row too broken to read its key from.
    repeat: tuple[str, int] | None = None

    def __attrs_post_init__(self) -> None:
        self.operation = self.options.operation
        key = self.options.key_field
        self.identities = Identities(self.parser, key)
        self.key_path = self.parser.column_path(key) if key else None
        self.key_found = self.key_path is None
        # Pass 1 only reads the journal: what it holds now is what it holds throughout.
        self.journal_holds = self.journal is not None and self.journal.has_items()

    def row(self, row: Row) -> tuple[RowError, ...]:
        """Check one row; counts it, and returns its problems (none: valid, changed or held)."""
        self.repeat = row.repeats
        if isinstance(row.data, RowError):
            return self._unidentified(row, (row.data,))
        if not self.key_found:
            given = [str(name) for name in row.data]
            self.key_found = any(self.parser.column_path(n) == self.key_path for n in given)
            self.columns.update(given)
        parsed = self.parser.parse(row.line, row.data)
        if parsed.errors or parsed.body is None:
            return self._unidentified(row, parsed.errors)
        typed = typed_problems(self.operation, row.line, parsed.body)
        if typed:
            return self._unidentified(row, tuple(typed))
        by_content = row.identity is None and self.options.key_field is None
        if by_content and self.options.shard is None and not self.journal_holds:
            # Named by its content, with no shard to place it in and no journal record to
            # compare it with: its name (a hash of the body) would change nothing here.
            return self._counted(row)
        digest = content_digest(parsed.body) if by_content else ""  # a key names it otherwise
        identity, problem, self.repeat = self.identities.check(row, parsed.body, digest)
        if identity is None:
            error = RowError(row.line, self.options.key_field or "", problem)
            return self._unidentified(row, (error,))
        shard = self.options.shard
        if shard is not None and not shard.owns(identity):
            if self.continuing:
                return (_elsewhere(row, identity, shard),)
            self.plan.other_shards += 1
            return ()
        entry = self.journal.lookup(identity) if self.journal is not None else None
        if entry is not None and changed(entry, digest or content_digest(parsed.body)):
            self.plan.changed.append((row.line, identity, entry.created_id or "?"))
            return ()
        return self._counted(row)

    def _counted(self, row: Row) -> tuple[RowError, ...]:
        """A row to send (or, held back, to report): counted."""
        if self.held(row):
            self.plan.held_unknown += 1
        else:
            self.plan.valid += 1
        return ()

    def _unidentified(self, row: Row, errors: tuple[RowError, ...]) -> tuple[RowError, ...]:
        """A bad row's problems, or none when another shard reports it (by its line)."""
        shard = self.options.shard
        if shard is None or self.continuing or shard.owns_line(row.line):
            return errors
        self.plan.other_shards += 1
        return ()


def _elsewhere(row: Row, identity: str, shard: Shard) -> RowError:
    """A failed-rows file's row that now hashes to another shard (fixing it changed its
    identity): this shard's journal must not take it, or two shards could create it."""
    owner = f"{shard_of(identity, shard.count)}/{shard.count}"
    return RowError(
        row.line,
        "",
        f"this row now belongs to shard {owner}, not {shard.label} (fixing it changed its "
        f"identity, and only its own shard imports a row): make the same fix in the original "
        f"file and import that with --shard {owner}, then delete this line",
    )


def validate(
    options: ImportOptions,
    rows: Iterator[Row],
    failed: FailedRows,
    journal: JournalStore | None,
    held: Callable[[Row], bool],
    *,
    continuing: bool = False,
) -> tuple[Plan, RowParser]:
    """Pass 1: check every row; bad ones are written to `failed` (the first few kept to show).

    `continuing`: the rows come from a failed-rows file (with --shard, all are its shard's).
    """
    check = _Check(options, make_parser(options), journal, held, continuing)
    plan = check.plan
    for row in rows:
        errors = check.row(row)
        if not errors:
            continue
        plan.invalid += 1
        plan.shown.extend(errors[: max(0, SHOWN_ERRORS - len(plan.shown))])
        raw = row.data if isinstance(row.data, Mapping) else None
        repeat = check.repeat
        failed.write(
            row,
            "invalid",
            "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in errors),
            field=errors[0].field or None,
            row=raw,
            text=row.text if raw is None else None,
            repeats={"key": repeat[0], "line": repeat[1]} if repeat is not None else None,
        )
    if not check.key_found and plan.has_rows:
        raise InputError(
            f"--key {options.key_field}: {options.file} has no such column (its columns: "
            f"{', '.join(sorted(check.columns)) or 'none'}); name one of them, or leave --key out "
            "to identify rows by their content"
        )
    return plan, check.parser
