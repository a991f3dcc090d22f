"""`finalpos export`: a list method's pages fetched several at a time, written in API order.

The walk keeps the paginator's rules (`PageWalk.advance`: a short page ends it, a page served
twice stops it); what this adds is that the next pages are already on their way while one is
written. Page k is asked for at `skip = start + k * page_size`, which is where a sequential walk
would ask for it as long as every earlier page came back full; the first short page ends the
walk, and the requests sent past it (at most `concurrency - 1`, each answered with an empty
page) are the price of not waiting. Every request goes through the client, so `--rate` and the
retry rules hold for each of them.

Each page is checked as a typed call's answer is, by the models' compiled checks without
building the models (`check_list`: a record that does not fit its model stops the export with
the error a typed call gives, naming the record and field), and then the records are written as
the API sent them: building models only to turn them back into wire JSON (`to_dict`) would
cost more CPU than the check itself, for the same values. A writer may offer a fast path
(`ExportWriter.fast_path`: Parquet's, which checks and types a page in pyarrow at once, see
`_arrow_page`; CSV's, which checks a page column by column while it reads the cells, see
`_csv_check`): a page it takes skips the model check, one it does not take gets it as usual.
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
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from rich.console import Console

from .._codec import dumps_decoded
from .._constants import PROGRESS_LINE_INTERVAL
from .._converter import FieldError, check_list
from .._method_info import MethodInfo
from .._pagination import AsyncPaginator, Page
from ..spec import component
from ._calls import csv_columns
from ._csv_rows import CsvPages
from ._export_page import ExportPage, FastPath

__all__ = [
    "EXPORT_CONCURRENCY",
    "EXPORT_PAGE_SIZE",
    "ExportPage",
    "ExportWriter",
    "FastPath",
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


def _limit_at(paginator: AsyncPaginator[Any], skip: int) -> int:
    # The `limit` the paginator asks for at `skip` (the last page of a `max_items` asks for less).
    cap = paginator.max_items
    if cap is None:
        return paginator.limit
    return max(1, min(paginator.limit, cap - (skip - paginator.skip)))


async def _checked_page(
    paginator: AsyncPaginator[_T], skip: int, fast: FastPath | None
) -> tuple[Page[Any], ExportPage]:
    """The page at `skip`, checked, and its records as the API sent them."""
    raw = await paginator.fetch_raw_page(skip)
    records = raw.json()
    limit = _limit_at(paginator, skip)
    if records.__class__ is list and len(records) <= limit:
        if fast is not None and (converted := fast(records)) is not None:
            # every record is a dict that would pass the model check (see `FastPath`)
            return Page(records, skip=skip, limit=limit), ExportPage(records, converted)
        try:
            check_list(records, paginator.item)  # the models' checks, no models built
        except FieldError:
            pass  # `parse` below raises the error that names the record and field
        else:
            return Page(records, skip=skip, limit=limit), ExportPage(records)
    return raw.parse(), ExportPage(records)


async def pages_in_order(
    paginator: AsyncPaginator[_T], *, concurrency: int, fast: FastPath | None = None
) -> AsyncGenerator[ExportPage, None]:
    """Every page of `paginator` (records as sent, each page checked), in order, with up to
    `concurrency` requests in flight; `fast` is a writer's fast path (see `FastPath`).

    Pages still in flight when the walk ends (or the consumer stops, or a page fails) are
    cancelled and awaited before this generator finishes.
    """
    walk = paginator.walk()
    step = paginator.limit
    start = paginator.skip
    cap = paginator.max_items
    next_skip: int | None = walk.next_skip
    pending: collections.deque[asyncio.Task[tuple[Page[Any], ExportPage]]] = collections.deque()
    try:
        while walk.next_skip is not None:
            while len(pending) < concurrency and next_skip is not None:
                pending.append(asyncio.ensure_future(_checked_page(paginator, next_skip, fast)))
                next_skip += step
                if cap is not None and next_skip - start >= cap:
                    next_skip = None
            page, export_page = await pending.popleft()
            walk.advance(page)  # the paginator's own checks: a repeated page, the end
            del page  # its models: not held while the records are written
            yield export_page
            del export_page  # not held while the next page is awaited
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

    @property
    def fast_path(self) -> FastPath | None:
        """The writer's own check and conversion of a page, if it has one (see `FastPath`)."""
        ...

    def write_page(self, page: ExportPage) -> None:
        """Write one checked page (its records as the API sent them, decoded JSON)."""
        ...

    def close(self) -> None:
        """Flush what is buffered (a Parquet row group, the stream)."""
        ...

    def discard(self) -> None:
        """The export failed: release what the writer holds (a file, a thread), raising nothing."""
        ...


class JsonLinesWriter:
    """One JSON object per line, every field the API sent (unknown ones included)."""

    fast_path: FastPath | None = None

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        # The lines are UTF-8 bytes from the codec: written to the binary stream under `out`
        # when it has one (files, stdout), not decoded to text only to be encoded again.
        self._bytes: IO[bytes] | None = getattr(out, "buffer", None)
        if self._bytes is not None:
            out.flush()  # text written to `out` before goes first

    def write_page(self, page: ExportPage) -> None:
        """Write the page's records, one compact line each (through the fast codec when present)."""
        records = page.records
        if records:
            dumps = dumps_decoded  # the records come from `loads`
            lines = b"\n".join([dumps(record) for record in records]) + b"\n"
            if self._bytes is not None:
                self._bytes.write(lines)
            else:
                self._out.write(lines.decode())

    def close(self) -> None:
        """Flush the stream."""
        if self._bytes is not None:
            self._bytes.flush()
        self._out.flush()

    def discard(self) -> None:
        """Nothing to release: the stream is its opener's."""


class CsvWriter:
    """One column per field of the spec (nested objects flattened: `billing.city`).

    With the records' model, its fast path (`CsvPages.checked_text`) checks a page column by
    column and gives its lines in the same walk.
    """

    def __init__(
        self, out: IO[str], schema: Mapping[str, Any] | None, item: type | None = None
    ) -> None:
        self._out = out
        columns = csv_columns(schema)
        self._pages = CsvPages(columns, item)
        self.fast_path: FastPath | None = self._pages.checked_text if item is not None else None
        csv.writer(out, lineterminator="\n").writerow(columns)

    def write_page(self, page: ExportPage) -> None:
        """Write the page's records, one row each."""
        text = page.fast if page.fast.__class__ is str else self._pages.text(page.records)
        self._out.write(text)

    def close(self) -> None:
        """Flush the stream."""
        self._out.flush()

    def discard(self) -> None:
        """Nothing to release: the stream is its opener's."""


def writer_for(
    fmt: str,
    out: IO[str] | None,
    path: str | None,
    schema: Mapping[str, Any] | None,
    item: type | None = None,
) -> ExportWriter:
    """The writer of format `fmt` ("jsonl", "csv" or "parquet") to `out` or the file `path`;
    `item` is the records' model class (the CSV writer's fast path checks against it)."""
    if fmt == "parquet":
        # pyarrow is an optional extra: loaded only here
        from ._arrow_page import ArrowPages
        from ._parquet import ParquetWriter

        assert path is not None  # the command refuses parquet to stdout before this
        fast = ArrowPages.for_schema(schema)
        return ParquetWriter(path, schema, None if fast is None else fast.convert)
    assert out is not None
    if fmt == "csv":
        return CsvWriter(out, schema, item)
    return JsonLinesWriter(out)


@contextlib.contextmanager
def open_writer(
    fmt: str, output: Path | None, schema: Mapping[str, Any] | None, item: type | None = None
) -> Generator[ExportWriter, None, None]:
    """The writer of `fmt` to stdout, or to the file `output` once the export has succeeded.

    The records go to a hidden file beside `output` (same directory, so the rename cannot cross
    file systems), which replaces `output` only when the block ends without an error: an export
    that fails midway leaves no half-written file that looks complete (a Parquet writer closed
    by the garbage collector writes a valid footer), and an earlier `output` stays as it was.
    """
    if output is None:
        yield writer_for(fmt, sys.stdout, None, schema, item)
        return
    part = output.with_name(f".{output.name}.{secrets.token_hex(4)}.part")
    try:
        with part.open("x", encoding="utf-8", newline="") as out:
            if fmt == "parquet":
                out.close()  # pyarrow writes the file by its path
            writer = writer_for(fmt, out, str(part), schema, item)
            try:
                yield writer
            except BaseException:
                writer.discard()  # its file closed before it is removed, its thread ended
                raise
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
        pages = pages_in_order(paginator, concurrency=concurrency, fast=writer.fast_path)
        async with contextlib.aclosing(pages):
            async for page in pages:
                writer.write_page(page)
                progress.add(len(page.records), status)
        writer.close()
    return progress.count
