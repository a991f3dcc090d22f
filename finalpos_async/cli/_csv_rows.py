"""The rows of a CSV export, built a column at a time.

A page's cells are gathered column by column (one list comprehension per column, a nested
object's values looked up once for all of its columns) and the rows are the columns zipped
together, in C: far fewer Python steps per cell than building each row in turn. The cells are
what `csv_row` gives for a record (the reference, kept for single rows): a value the `csv`
module writes the same way (a string, None as an empty cell, an integer, a float) is left as it
is, and only a column holding something else (a boolean, a list, an object) is converted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._calls import csv_cell, csv_paths

__all__ = ["csv_row_builder"]

# Values `csv.writer` writes exactly as `csv_cell` does (None as "", numbers with str()).
_PLAIN = frozenset({str, type(None), int, float})

RowBuilder = Callable[[Sequence[Any]], Iterable[Sequence[Any]]]


def csv_row_builder(columns: Sequence[str], schema: Mapping[str, Any] | None) -> RowBuilder:
    """A function from a page of decoded records to its CSV rows (for `csv.writer.writerows`).

    `columns` are `csv_columns(schema)`; a record that is not an object gives a row of empty
    cells.
    """
    del schema  # the columns say it all; kept for a builder that would use the types
    paths = [(head, *rest) for head, rest in csv_paths(columns)]

    def rows(records: Sequence[Any]) -> Iterable[Sequence[Any]]:
        count = len(records)
        if not set(map(type, records)) <= {dict}:
            records = [record if record.__class__ is dict else {} for record in records]
        found: dict[tuple[str, ...], list[Any]] = {}

        def values(path: tuple[str, ...]) -> list[Any]:
            known = found.get(path)
            if known is not None:
                return known
            key = path[-1]
            if len(path) == 1:
                result = [record.get(key) for record in records]
            else:
                parents = values(path[:-1])
                if parents.count(None) == count:  # the object is absent from the whole page
                    result = parents
                else:
                    result = [p.get(key) if p.__class__ is dict else None for p in parents]
            found[path] = result
            return result

        cells: list[list[Any]] = []
        for path in paths:
            column = values(path)
            if not set(map(type, column)) <= _PLAIN:
                column = [csv_cell(value) for value in column]
            cells.append(column)
        return zip(*cells, strict=True)

    return rows
