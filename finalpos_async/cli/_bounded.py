"""Reading an import file in bounded pieces: its lines (JSON Lines) and its CSV records.

A file's line iterator holds a whole line and Python's csv module a whole field, however long
(a 1 GiB JSON Lines row took 4.1 GiB), and csv refuses a field over 131,072 characters with an
exception that ends the whole read. Here the text is read `CHUNK` characters at a time, and a
field larger than the cap (a CSV cell, or a JSON Lines line, which is one record) is read to its
end without being kept: it comes out as `Oversized`, in its record's place, and the reading goes
on. The cap counts a field's bytes in UTF-8 (its size in a request body).

The CSV records are those of `csv.reader` with its default dialect (and the file opened with
`newline=""`): a cell that starts with `"` is quoted, may hold the delimiter, line breaks and `""`
for a quote, and what follows its closing quote up to the delimiter is kept; a line ends at
`\\r\\n`, `\\n` or `\\r`. Unlike csv, a NUL character is read as any other.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import TextIO

import attrs

__all__ = ["CHUNK", "Oversized", "csv_records", "lines", "text_size"]

CHUNK = 64 * 1024  # characters read at a time
_LINE_BREAK = re.compile("[\r\n]")


def text_size(text: str) -> int:
    """Bytes of `text` in UTF-8 (how the cap counts)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@attrs.frozen
class Oversized:
    """A record with a field over the cap: where it starts, and the field (1-based column)."""

    line: int
    column: int = 1


def lines(stream: TextIO, limit: int) -> Iterator[tuple[int, str | Oversized]]:
    """(line number, line with its line break) for every line; `Oversized` for a line whose text
    is over `limit` bytes (it is read to its line break in pieces, never held)."""
    number = 0
    after_cr = False  # the last piece ended with \r: a "\n" piece next is its \r\n's end
    while True:
        piece = stream.readline(CHUNK)
        if not piece:
            return
        if after_cr and piece == "\n":
            after_cr = False
            continue
        number += 1
        parts = [piece]
        size = text_size(piece.rstrip("\r\n"))
        while not piece.endswith(("\n", "\r")):
            piece = stream.readline(CHUNK)
            if not piece:
                break
            size += text_size(piece.rstrip("\r\n"))
            if size > limit:
                parts.clear()  # over the cap: the rest of the line is read, not kept
            else:
                parts.append(piece)
        after_cr = piece.endswith("\r")
        yield number, "".join(parts) if size <= limit else Oversized(number)


class _Text:
    """The stream, a chunk at a time, with the line number of the reading position."""

    def __init__(self, stream: TextIO, start: str) -> None:
        self._stream = stream
        self.buf = start
        self.pos = 0
        self.line = 1
        self.after_cr = False

    def more(self) -> bool:
        """There is text at `pos` (the next chunk is read when this one is used up)."""
        if self.pos < len(self.buf):
            return True
        self.buf = self._stream.read(CHUNK)
        self.pos = 0
        return bool(self.buf)

    def take(self, end: int) -> str:
        """The text from `pos` to `end` (of this chunk); `pos` moves there."""
        piece = self.buf[self.pos : end]
        self.pos = end
        if piece:
            breaks = piece.count("\n") + piece.count("\r") - piece.count("\r\n")
            if self.after_cr and piece[0] == "\n":
                breaks -= 1  # a \r\n split between two pieces is one line break
            self.line += breaks
            self.after_cr = piece[-1] == "\r"
        return piece


@attrs.define
class _Cell:
    """One cell being read: its pieces while it is within the cap, and its size."""

    limit: int
    parts: list[str] = attrs.field(factory=lambda: list[str]())
    size: int = 0

    def add(self, piece: str) -> None:
        self.size += text_size(piece)
        if self.size <= self.limit:
            self.parts.append(piece)
        else:
            self.parts.clear()


def csv_records(
    stream: TextIO, delimiter: str, limit: int, *, start: str = "", header: bool = False
) -> Iterator[tuple[int, list[str] | Oversized, int]]:
    """(first line, cells, number of cells) for every CSV record of `stream` (after `start`,
    text already read from it); `Oversized` for a record with a cell over `limit` bytes.

    `header`: the first record is a header, and a later record keeps at most one cell more than
    it has (enough to tell that it has too many), so a row holds at most that many cells.
    """
    text = _Text(stream, start)
    stop = re.compile(f"[{re.escape(delimiter)}\r\n]")
    keep: int | None = None
    while text.more():
        first = text.line
        simple = _simple_record(text, delimiter)
        if simple is not None:
            over = _first_over(simple, limit)
            cells = simple if keep is None else simple[:keep]
            yield first, (cells if over is None else Oversized(first, over)), len(simple)
            if header and keep is None:
                keep = len(simple) + 1
            continue
        cells = list[str]()
        count = 0
        over = None
        ended = False
        while not ended:
            cell = _Cell(limit)
            ended = _read_cell(text, stop, delimiter, cell)
            count += 1
            if cell.size > limit:
                over = count if over is None else over
            elif over is None and (keep is None or count <= keep):
                cells.append("".join(cell.parts))
        yield first, (cells if over is None else Oversized(first, over)), count
        if header and keep is None:
            keep = count + 1


def _simple_record(text: _Text, delimiter: str) -> list[str] | None:
    """The cells of a record that is the rest of the chunk's current line (most records: read
    at C speed, by str.split, or by csv when it has quotes); None for any other (a quoted line
    break, a record across chunks, a quote csv's strict mode refuses): read cell by cell."""
    buf, pos = text.buf, text.pos
    found = _LINE_BREAK.search(buf, pos)
    if found is None or (text.after_cr and found.start() == pos and buf[pos] == "\n"):
        return None
    end = found.start()
    line = buf[pos:end]
    if '"' not in line:
        cells = line.split(delimiter)
    elif line.count('"') % 2:
        return None  # a quoted cell goes on past the line break
    else:
        try:
            cells = next(csv.reader((line,), delimiter=delimiter, strict=True))
        except csv.Error:
            return None
    if line:  # no line break in it: the count stands, and a \r before it is not a \r\n's
        text.pos = end
        text.after_cr = False
    text.take(end + 1)
    if buf[end] == "\r" and text.more() and text.buf[text.pos] == "\n":
        text.take(text.pos + 1)
    return cells


def _first_over(cells: list[str], limit: int) -> int | None:
    """The 1-based column of the first cell over `limit` bytes (None: none is)."""
    if sum(map(len, cells)) * 4 <= limit:  # 4: UTF-8's longest character
        return None
    for column, cell in enumerate(cells, start=1):
        if len(cell) * 4 > limit and text_size(cell) > limit:
            return column
    return None


def _read_cell(text: _Text, stop: re.Pattern[str], delimiter: str, cell: _Cell) -> bool:
    """Read one cell into `cell`; True when it ended its record (a line break, or the end)."""
    quoted = text.more() and text.buf[text.pos] == '"'
    if quoted:
        text.take(text.pos + 1)
    while text.more():
        buf = text.buf
        if quoted:
            quote = buf.find('"', text.pos)
            if quote < 0:
                cell.add(text.take(len(buf)))
                continue
            cell.add(text.take(quote))
            text.take(quote + 1)
            if text.more() and text.buf[text.pos] == '"':  # "" is a quote
                cell.add(text.take(text.pos + 1))
            else:
                quoted = False  # closed: what follows up to the delimiter is kept (as csv does)
            continue
        found = stop.search(buf, text.pos)
        if found is None:
            cell.add(text.take(len(buf)))
            continue
        cell.add(text.take(found.start()))
        text.take(found.start() + 1)
        if buf[found.start()] == delimiter:
            return False
        if buf[found.start()] == "\r" and text.more() and text.buf[text.pos] == "\n":
            text.take(text.pos + 1)
        return True
    return True
