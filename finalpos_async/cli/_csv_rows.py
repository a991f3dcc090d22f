"""The text of a CSV export, a page at a time, built a column at a time.

A page's cells are gathered column by column (one list comprehension per column, a nested
object's values looked up once for all of its columns) and joined into lines in C
(`",".join` over the zipped columns): far fewer Python steps per cell than building and writing
each row in turn. The cells are what `csv_row` gives for a record: a column of strings (and
None, an empty cell) is taken as it is, and only a column holding something else (numbers, a
boolean, a list, an object) goes through `csv_cell`.

A cell holding a character `csv.writer` quotes (the comma, `"`, line breaks: found out from
the `csv` module itself when this module loads) is quoted as it would quote it, so the lines are
exactly what `csv.writer` (`lineterminator="\\n"`, minimal quoting) writes; a CSV of one column
(whose empty cell it writes as `""`) and a page with a character it refuses are written by
`csv.writer` itself.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Callable, Sequence
from typing import Any

from .._codec import dumps_decoded
from ._calls import csv_cell, csv_paths
from ._csv_check import ColumnCheck, PageColumns

__all__ = ["CsvPages", "PageText", "csv_page_text"]

_STR = frozenset({str})
_STR_OR_NONE = frozenset({str, type(None)})
_NONE = frozenset({type(None)})
_BOOL_OR_NONE = frozenset({bool, type(None)})
_BOOL_CELLS = {True: "true", False: "false", None: ""}
_JSON_OR_NONE = frozenset({list, dict, type(None)})

PageText = Callable[[Sequence[Any]], str]


def _special_characters() -> tuple[str, str]:
    """The ASCII characters `csv.writer` quotes a cell for, and those it refuses (asked, not
    assumed: this has changed between Python versions)."""
    quoted = refused = ""
    for code in range(128):
        out = io.StringIO()
        try:
            csv.writer(out, lineterminator="\n").writerow(["a" + chr(code) + "b", ""])
        except csv.Error:
            refused += chr(code)
            continue
        if out.getvalue().startswith('"'):
            quoted += chr(code)
    return quoted, refused


_QUOTED_CHARACTERS, _REFUSED_CHARACTERS = _special_characters()
_QUOTED = re.compile("[" + re.escape(_QUOTED_CHARACTERS) + "]")


class _LeftToCsv(Exception):
    """A cell the `csv` module refuses (it raises a clear error): the page goes through it."""


def _quoted(cells: list[str]) -> list[str]:
    """The column's cells, those that need it quoted as `csv.writer` quotes them."""
    text = "".join(cells)
    # `in` on the whole column: a memchr per character, far quicker than a regex scan
    if any(character in text for character in _REFUSED_CHARACTERS):
        raise _LeftToCsv
    if not any(character in text for character in _QUOTED_CHARACTERS):
        return cells
    search = _QUOTED.search
    return [
        '"' + cell.replace('"', '""') + '"' if search(cell) is not None else cell for cell in cells
    ]


def _cells(column: list[Any], kinds: set[type], count: int) -> list[str]:
    """The column's values (of the classes `kinds`) as the text of their cells."""
    if kinds <= _STR:
        return column
    if kinds <= _NONE:
        return [""] * count
    if kinds <= _STR_OR_NONE:
        return [value if value is not None else "" for value in column]
    if kinds <= _BOOL_OR_NONE:
        return list(map(_BOOL_CELLS.__getitem__, column))
    if kinds <= _JSON_OR_NONE:  # JSON text, as `csv_cell` writes it
        dumps = dumps_decoded  # the records come from `loads`
        return [dumps(value).decode() if value is not None else "" for value in column]
    return [csv_cell(value) for value in column]


class CsvPages:
    """The CSV lines of pages of records, for the columns `csv_columns(schema)` (each line
    ending in a newline; a record that is not an object gives a row of empty cells)."""

    def __init__(self, columns: Sequence[str], model: type | None = None) -> None:
        """`model` (the records' model class) enables `checked_text`."""
        self._paths = [(head, *rest) for head, rest in csv_paths(columns)]
        self._check = ColumnCheck.for_model(model)

    def text(self, records: Sequence[Any]) -> str:
        """The page's lines (the records are taken as already checked)."""
        count = len(records)
        if not count:
            return ""
        if not set(map(type, records)) <= {dict}:
            records = [record if record.__class__ is dict else {} for record in records]
        return self._lines(PageColumns(records), count)

    def checked_text(self, records: list[Any]) -> str | None:
        """The page's lines when every record would pass the model check (`ColumnCheck`, on
        the same columns the cells are read from), else None: the page then goes through the
        model check and `text`. None too when no model was given."""
        check = self._check
        if check is None or not set(map(type, records)) <= {dict}:
            return None
        count = len(records)
        if not count:
            return ""
        columns = PageColumns(records)
        if not check(columns):
            return None
        return self._lines(columns, count)

    def _lines(self, columns: PageColumns, count: int) -> str:
        cells = [_cells(columns.values(path), columns.kinds(path), count) for path in self._paths]
        if len(cells) > 1:  # one column is left to csv, which writes its empty cell as ""
            with contextlib.suppress(_LeftToCsv):
                quoted = [_quoted(column) for column in cells]
                return "\n".join(map(",".join, zip(*quoted, strict=True))) + "\n"
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(zip(*cells, strict=True))
        return out.getvalue()


def csv_page_text(columns: Sequence[str]) -> PageText:
    """A function from a page of decoded records to its CSV lines (`CsvPages.text`).

    `columns` are `csv_columns(schema)`; a record that is not an object gives a row of empty
    cells.
    """
    return CsvPages(columns).text
