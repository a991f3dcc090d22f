"""A record of a schema with one value changed, every way the checks of a page could differ.

`mutations(record)` yields (where, changed record) for every field of `record` (top level, the
fields of its objects, the fields of the first object of its arrays): the field removed, and
set to each of `ODD_VALUES` (wrong JSON types, nulls, strings a date-time or decimal parser
might or might not take, arrays with a null or a number in them).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from finalpos_async._converter import FieldError, check_list

ODD_VALUES: list[Any] = [
    None,
    0,
    -3,
    1.5,
    1.0,
    2**70,
    float("inf"),
    True,
    False,
    "",
    "x",
    "ab",
    " 12",
    "12",
    "-0.5",
    "1e3",
    "1_000",
    "NaN",
    "-Infinity",
    "1.0000000000000000001",
    "123456789012345678901.5",
    "2026-12-07T07:40:55.724+00:00",
    "2026-12-07T07:40:55.724Z",
    "2026-12-07T07:40:55.724z",
    "2026-12-07T07:40:55.724",
    "2026-12-07T07:40:55.7+00:00",
    "2026-12-07T07:40:55.1234567+00:00",
    "2026-12-07 07:40:55+00:00",
    "2026-02-30T00:00:00+00:00",
    "2026-12-07T24:00:00+00:00",
    "2026-12-07T07:40:55+24:00",
    "0000-01-01T00:00:00+00:00",
    "2026-12-07",
    [],
    ["a"],
    ["a", None],
    [1],
    [[]],
    {},
    {"a": 1},
    [{}],
    [None],
]


def _paths(record: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    for name, value in record.items():
        yield (name,)
        if isinstance(value, dict):
            for inner in value:
                yield (name, inner)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for inner in value[0]:
                yield (name, 0, inner)


def _changed(record: dict[str, Any], path: tuple[Any, ...], value: Any, remove: bool) -> Any:
    out = copy.deepcopy(record)
    holder: Any = out
    for part in path[:-1]:
        holder = holder[part]
    if remove:
        del holder[path[-1]]
    else:
        holder[path[-1]] = copy.deepcopy(value)
    return out


def mutations(record: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(description, record with one change) for every field and every odd value."""
    for path in _paths(record):
        where = ".".join(str(part) for part in path)
        yield f"{where} removed", _changed(record, path, None, remove=True)
        for value in ODD_VALUES:
            yield f"{where}={value!r}", _changed(record, path, value, remove=False)


def model_accepts(page: list[Any], cls: type) -> bool:
    """Whether the models' check takes `page` as a list of `cls` (what the fast paths match)."""
    try:
        check_list(page, cls)
    except FieldError:
        return False
    return True
