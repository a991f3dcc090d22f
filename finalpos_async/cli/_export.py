"""`finalpos export`: a list method's pages fetched several at a time, written in API order.

The walk keeps the paginator's rules (`PageWalk.advance`: a short page ends it, a page served
twice stops it); what this adds is that the next pages are already on their way while one is
written. Page k is asked for at `skip = start + k * page_size`, which is where a sequential walk
would ask for it as long as every earlier page came back full; the first short page ends the
walk, and the requests sent past it (at most `concurrency - 1`, each answered with an empty
page) are the price of not waiting. Every request goes through the client, so `--rate` and the
retry rules hold for each of them.

Each page is checked as a typed call's answer is (its models are built: a record that does not
fit its model stops the export naming the field), and then the records are written as the API
sent them: turning every model back into wire JSON (`to_dict`) would cost more CPU than the
check itself, for the same values.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import csv
import os
import secrets
import sys
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar, cast

from rich.console import Console

from .._codec import dumps
from .._constants import PROGRESS_LINE_INTERVAL
from .._method_info import MethodInfo
from .._pagination import AsyncPaginator, Page
from ..spec import component
from ._calls import csv_columns, csv_paths, csv_row

_NO_FIELDS: Mapping[str, Any] = {}  # a record that is not an object has no columns

__all__ = [
    "EXPORT_CONCURRENCY",
    "EXPORT_PAGE_SIZE",
    "ExportWriter",
    "open_writer",
    "pages_in_order",
    "response_item_schema",
    "run_export",
    "writer_for",
]

_T = TypeVar("_T")

# The API documents no largest `limit`; the public docs' examples go up to 1,000 and the sandbox
# serves any size, so 1,000 is the default page and the CLI's bound (`--page-size` lowers it).
EXPORT_PAGE_SIZE = 1000
# Pages in flight at once: enough to hide a round trip behind the writing of a page, few enough
# to stay polite without a --rate.
EXPORT_CONCURRENCY = 4


async def _checked_records(paginator: AsyncPaginator[_T], skip: int) -> tuple[Page[_T], Any]:
    """The page at `skip`, checked (its models built), and its records as the API sent them."""
    raw = await paginator.fetch_raw_page(skip)
    return raw.parse(), raw.json()


async def pages_in_order(
    paginator: AsyncPaginator[_T], *, concurrency: int
) -> AsyncGenerator[Sequence[Any], None]:
    """The records of every page of `paginator` (as sent, each page checked), in order, with up
    to `concurrency` requests in flight.

    Pages still in flight when the walk ends (or the consumer stops, or a page fails) are
    cancelled and awaited before this generator finishes.
    """
    walk = paginator.walk()
    step = paginator.limit
    start = paginator.skip
    cap = paginator.max_items
    next_skip: int | None = walk.next_skip
    pending: collections.deque[asyncio.Task[tuple[Page[_T], Any]]] = collections.deque()
    try:
        while walk.next_skip is not None:
            while len(pending) < concurrency and next_skip is not None:
                pending.append(asyncio.ensure_future(_checked_records(paginator, next_skip)))
                next_skip += step
                if cap is not None and next_skip - start >= cap:
                    next_skip = None
            page, records = await pending.popleft()
            walk.advance(page)  # the paginator's own checks: a repeated page, the end
            del page  # its models: not held while the records are written
            yield records
            del records  # not held while the next page is awaited
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def response_item_schema(op: MethodInfo) -> Mapping[str, Any] | None:
    """The schema of one record of the list method `op` (None when the spec gives none)."""
    if not op.response_schema:
        return None
    schema = component(op.response_schema)
    if schema.get("type") == "array":
        schema = schema.get("items", {})
    return schema


class ExportWriter(Protocol):
    """Where exported records go: one call per page, then `close()` once."""

    def write_page(self, records: Sequence[Any]) -> None:
        """Write one page of records as the API sent them (decoded JSON, checked)."""
        ...

    def close(self) -> None:
        """Flush what is buffered (a Parquet row group, the stream)."""
        ...


class JsonLinesWriter:
    """One JSON object per line, every field the API sent (unknown ones included)."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write_page(self, records: Sequence[Any]) -> None:
        """Write the page's records, one compact line each (through the fast codec when present)."""
        if records:
            lines = b"\n".join([dumps(record) for record in records])
            self._out.write(lines.decode() + "\n")

    def close(self) -> None:
        """Flush the stream."""
        self._out.flush()


class CsvWriter:
    """One column per field of the spec (nested objects flattened: `billing.city`)."""

    def __init__(self, out: IO[str], schema: Mapping[str, Any] | None) -> None:
        self._out = out
        columns = csv_columns(schema)
        self._paths = csv_paths(columns)
        self._csv = csv.writer(out, lineterminator="\n")
        self._csv.writerow(columns)

    def write_page(self, records: Sequence[Any]) -> None:
        """Write the page's records, one row each."""
        paths = self._paths
        rows: list[list[str]] = []
        for record in records:
            row = cast("Mapping[str, Any]", record) if isinstance(record, dict) else _NO_FIELDS
            rows.append(csv_row(row, paths))
        self._csv.writerows(rows)

    def close(self) -> None:
        """Flush the stream."""
        self._out.flush()


def writer_for(
    fmt: str, out: IO[str] | None, path: str | None, schema: Mapping[str, Any] | None
) -> ExportWriter:
    """The writer of format `fmt` ("jsonl", "csv" or "parquet") to `out` or the file `path`."""
    if fmt == "parquet":
        from ._parquet import ParquetWriter  # pyarrow is an optional extra: loaded only here

        assert path is not None  # the command refuses parquet to stdout before this
        return ParquetWriter(path, schema)
    assert out is not None
    if fmt == "csv":
        return CsvWriter(out, schema)
    return JsonLinesWriter(out)


@contextlib.contextmanager
def open_writer(
    fmt: str, output: Path | None, schema: Mapping[str, Any] | None
) -> Generator[ExportWriter, None, None]:
    """The writer of `fmt` to stdout, or to the file `output` once the export has succeeded.

    The records go to a hidden file beside `output` (same directory, so the rename cannot cross
    file systems), which replaces `output` only when the block ends without an error: an export
    that fails midway leaves no half-written file that looks complete (a Parquet writer closed
    by the garbage collector writes a valid footer), and an earlier `output` stays as it was.
    """
    if output is None:
        yield writer_for(fmt, sys.stdout, None, schema)
        return
    part = output.with_name(f".{output.name}.{secrets.token_hex(4)}.part")
    try:
        with part.open("x", encoding="utf-8", newline="") as out:
            if fmt == "parquet":
                out.close()  # pyarrow writes the file by its path
            yield writer_for(fmt, out, str(part), schema)
        os.replace(part, output)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise


class _Progress:
    """`N records exported (R/s)` on stderr: a live line on a terminal, every few s otherwise."""

    def __init__(self, console: Console, noun: str) -> None:
        self._console = console
        self._noun = noun
        self._started = time.monotonic()
        self._last = self._started
        self.count = 0

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return f"{self.count:,} {self._noun} exported ({self.count / elapsed:,.0f}/s)"

    def add(self, n: int, status: Callable[[str], None] | None) -> None:
        self.count += n
        now = time.monotonic()
        if status is not None:
            status(self.line())
        elif now - self._last >= PROGRESS_LINE_INTERVAL:
            self._last = now
            self._console.print(self.line())


async def run_export(
    paginator: AsyncPaginator[Any],
    writer: ExportWriter,
    *,
    concurrency: int,
    console: Console,
    noun: str,
) -> int:
    """Write every page of `paginator` through `writer`, in API order; returns the count."""
    progress = _Progress(console, noun)
    with contextlib.ExitStack() as stack:
        status: Callable[[str], None] | None = None
        if console.is_terminal:
            live = stack.enter_context(console.status(progress.line()))
            status = live.update
        async with contextlib.aclosing(pages_in_order(paginator, concurrency=concurrency)) as pages:
            async for records in pages:
                writer.write_page(records)
                progress.add(len(records), status)
        writer.close()
    return progress.count
