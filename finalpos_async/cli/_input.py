"""Reading the file being imported: plain rows (CSV or JSON Lines), or a failed-rows file.

A failed-rows file (FILE.failed.jsonl, written by `_failed.FailedRows`) starts with a header
line naming the job its rows belong to; each further line is one row with its line in the
original file, its outcome, its error and its identity.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO, cast

import attrs

from .._constants import IMPORT_MAX_FIELD_BYTES
from ._bounded import Oversized, lines
from ._rows import RowError, oversized, read_records

__all__ = ["FAILED_ROWS_HEADER", "Header", "Input", "InputError", "Row"]

FAILED_ROWS_HEADER = "finalposFailedRows"  # the key of a failed-rows file's first line


class InputError(ValueError):
    """The input file cannot be read as asked; the message names the file, line and fix."""


@attrs.frozen(kw_only=True)
class Row:
    """One record of the input: its line in the original file and its data (or why unreadable)."""

    line: int
    data: Mapping[str, Any] | RowError
    identity: str | None = None  # carried from a failed-rows file
    outcome: str | None = None  # what the failed-rows file says happened to it
    # For a row of unknown outcome: whether the user found it in the target (None: not said).
    exists: bool | None = None
    idempotency_key: str | None = None  # carried from a failed-rows file
    text: str | None = None  # the raw text of a line that is not valid JSON
    # (--key value, line of its first row): a failed-rows file's row that repeated that key.
    repeats: tuple[str, int] | None = None


@attrs.frozen(kw_only=True)
class Header:
    """The first line of a failed-rows file: which job its rows belong to."""

    resource: str
    source: str
    journal: str | None
    job_id: str
    key: str | None
    target: str
    shard: str | None = None  # `2/4` when the import ran with --shard

    def to_json(self) -> dict[str, Any]:
        """The header line's JSON object."""
        return {FAILED_ROWS_HEADER: 1, **attrs.asdict(self)}


class Input:
    """The file being imported: plain rows, or a failed-rows file (a header, then records)."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        encoding: str,
        *,
        max_field_bytes: int = IMPORT_MAX_FIELD_BYTES,
    ) -> None:
        self.path = path
        self.fmt = fmt
        self.encoding = encoding
        # The largest CSV cell or JSON Lines line read (a larger one is an invalid row).
        self.max_field_bytes = max_field_bytes
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read it ({exc.strerror})") from exc
        if stat.st_size == 0:
            raise InputError(f"{self.path} is empty: there is nothing to import")
        self._stamp = _stamp(stat)
        self.header = self._read_header()

    def changed(self) -> bool:
        """True when the file is no longer the one opened (written, replaced or removed since).

        The file is read twice (checked, then sent), so a change between or during the reads
        would otherwise make rows vanish without a word."""
        try:
            return _stamp(self.path.stat()) != self._stamp
        except OSError:
            return True

    def _open(self) -> TextIO:
        try:
            return self.path.open(encoding=self.encoding, newline="")
        except LookupError as exc:
            raise InputError(
                f"--encoding {self.encoding!r} is not an encoding Python knows "
                "(e.g. utf-8, cp1252, latin-1)"
            ) from exc

    def _read_header(self) -> Header | None:
        if self.fmt != "jsonl":
            return None
        with self._decoding(), self._open() as stream:
            for _, text in lines(stream, self.max_field_bytes):
                if isinstance(text, Oversized):
                    return None  # not a header: `rows` reports the line
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

    def _header(self, first: Mapping[str, Any]) -> Header:
        def text(name: str, *, optional: bool = False) -> Any:
            value = first.get(name)
            if isinstance(value, str) or (optional and value is None):
                return value
            raise InputError(
                f"{self.path}, line 1: the failed-rows header lacks {name!r}; restore that line "
                "as the import wrote it"
            )

        return Header(
            resource=text("resource"),
            source=text("source"),
            journal=text("journal", optional=True),
            job_id=text("job_id"),
            key=text("key", optional=True),
            target=text("target"),
            shard=text("shard", optional=True),
        )

    def rows(self) -> Iterator[Row]:
        """Every record, lazily, with the line it had in the file it first came from."""
        with self._decoding(), self._open() as stream:
            if self.header is None:
                for line, record in read_records(
                    stream, self.fmt, max_field_bytes=self.max_field_bytes
                ):
                    text = record.text if isinstance(record, RowError) else None
                    yield Row(line=line, data=record, text=text)
                return
            yield from self._failed_rows(stream)

    def _failed_rows(self, stream: TextIO) -> Iterator[Row]:
        for number, text in lines(stream, self.max_field_bytes):
            if isinstance(text, Oversized):
                message = oversized("the line", self.max_field_bytes)
                yield Row(line=number, data=RowError(number, "", message))
                continue
            if not text.strip():
                continue
            try:
                decoded: object = json.loads(text)
            except json.JSONDecodeError as exc:
                message = f"not valid JSON ({exc.msg} at column {exc.colno})"
                yield Row(line=number, data=RowError(number, "", message), text=text.rstrip("\n"))
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
                    yield Row(line=line, data=RowError(line, "", message), text=raw)
                    continue
            if not isinstance(row, dict):
                message = 'a failed-rows record needs a JSON object in its "row"'
                if row is None and isinstance(record.get("error"), str):
                    # A row that was never read (a field over --max-field-bytes): its problem
                    # is in the original file, and stays until it is fixed there.
                    source = self.header.source if self.header is not None else "the file"
                    message = f"not read from {source}: {record['error']}"
                yield Row(line=line, data=RowError(line, "", message))
                continue
            exists = record.get("exists")
            idem = record.get("idempotencyKey")
            yield Row(
                line=line,
                data=cast("dict[str, Any]", row),
                identity=identity,
                outcome=outcome,
                exists=exists if isinstance(exists, bool) else None,
                idempotency_key=idem if isinstance(idem, str) else None,
                repeats=_repeats(record.get("repeats")),
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


def _repeats(value: object) -> tuple[str, int] | None:
    """A failed-rows record's `"repeats": {"key", "line"}` (None when absent or not that)."""
    if not isinstance(value, dict):
        return None
    fields = cast("dict[str, Any]", value)
    key, line = fields.get("key"), fields.get("line")
    if isinstance(key, str) and isinstance(line, int) and not isinstance(line, bool):
        return key, line
    return None


def _stamp(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What changes when a file is written or replaced: size, modification time, identity."""
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev)
