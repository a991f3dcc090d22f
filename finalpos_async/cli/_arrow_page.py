"""The export's fast path: a page of records checked and typed in pyarrow's C++, not in Python.

For a record schema built only of what the models check by type (strings, `date-time` and
`decimal` strings, booleans, integers, numbers, arrays and objects with properties),
`ArrowPages.convert` turns a page of decoded records into an Arrow record batch typed as
`--format parquet` writes it (`arrow_schema`). Arrow refuses a value of the wrong JSON type;
what it would let through is checked on the columns: a string given for an array, a float for
an integer, a null item in an array, a missing required field, and a date-time or decimal
string outside the forms every supported Python parses (RFC 3339 with seconds and an offset;
at most 20 digits before the point and 18 after). So the fast path is stricter than the model
check, never looser: a page it does not take (`None`) goes through the model check, which
names the record and field, or accepts the page, which is then written the slow way.

A schema with anything else (enums, `oneOf`, open objects, arrays inside objects or arrays of
arrays, integers below the top level) gets no fast path (`ArrowPages.for_schema` is None).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from ._parquet import DECIMAL, TIMESTAMP, arrow_schema

__all__ = ["ArrowPages"]

# Fractions of 3 or 6 digits: what Python 3.10's `datetime.fromisoformat` takes.
_DATE_TIME = (
    r"^([1-9]\d{3}|0[1-9]\d{2}|00[1-9]\d|000[1-9])-\d{2}-\d{2}T([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(\.\d{3}|\.\d{6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_DECIMAL = r"^-?\d{1,20}(\.\d{1,18})?$"  # fits decimal(38, 18): the cast cannot fail
_NONE = type(None)
_DICT = frozenset({dict})
# Keys of a schema node the fast path understands; a node with any other key is left to the
# model check (an `enum`, say, which the models may check and Arrow would not).
_KNOWN_KEYS = frozenset(
    {
        "type",
        "format",
        "items",
        "properties",
        "required",
        "description",
        "example",
        "examples",
        "title",
        "pattern",
        "readOnly",
        "writeOnly",
        "deprecated",
        "default",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
    }
)

ArrayCheck = Callable[[Any], bool]  # on a `pa.Array`: True when its values are all acceptable


class _Unsupported(Exception):
    """A schema node the fast path does not handle."""


def _matches(pattern: str) -> ArrayCheck:
    def check(array: Any) -> bool:
        if array.null_count == len(array):
            return True
        matches = cast("Any", pc.match_substring_regex(array, pattern))
        mismatch = cast("Any", pc.invert(matches))
        return pc.any(mismatch).as_py() is not True

    return check


def _node_checks(node: Mapping[str, Any], nested: bool) -> list[ArrayCheck]:
    """Checks on the Arrow array of one schema node (raises `_Unsupported` for what it cannot)."""
    if any(not key.startswith("x-") and key not in _KNOWN_KEYS for key in node):
        raise _Unsupported
    kind, fmt = node.get("type"), node.get("format")
    if fmt == "decimal" and kind == "string":
        return [_matches(_DECIMAL)]
    if kind == "string":
        if fmt == "date-time":
            return [_matches(_DATE_TIME)]
        if fmt is None:
            return []
        raise _Unsupported
    if kind == "boolean":
        return []
    if kind in ("integer", "number", "array") and nested:
        raise _Unsupported  # Arrow lets a float, a bool or a string through: checked in Python
    if kind in ("integer", "number"):
        return []
    if kind == "array":
        item = cast("Mapping[str, Any]", node.get("items") or {})
        item_checks = _node_checks(item, nested=True)

        def check_items(array: Any) -> bool:
            values = array.flatten()
            # a null item is refused by the models (a list of str, of objects)
            return values.null_count == 0 and all(check(values) for check in item_checks)

        return [check_items]
    properties = cast("Mapping[str, Any]", node.get("properties") or {})
    if kind == "object" and properties:
        required = set(cast("Sequence[str]", node.get("required") or ()))
        fields = [
            (name, _node_checks(prop, nested=True), name in required)
            for name, prop in properties.items()
        ]

        def check_fields(struct: Any) -> bool:
            valid: Any = struct.is_valid()
            for name, checks, needed in fields:
                # (under a null object the fields read as empty: a date-time there is refused)
                child: Any = struct.field(name)
                if needed:
                    missing = cast("Any", pc.and_(child.is_null(), valid))
                    if pc.any(missing).as_py():
                        return False
                if not all(check(child) for check in checks):
                    return False
            return True

        return [check_fields]
    raise _Unsupported


def _any(value: object) -> Any:
    return value  # pyarrow's stubs leave nested types' members untyped


def _fields(container: object) -> list[Any]:
    """The fields of a struct type or a schema."""
    return list(_any(container))


def _loose_type(dtype: pa.DataType) -> pa.DataType:
    """`dtype` with timestamps and decimals as strings: the type a page is first read into."""
    if dtype in (TIMESTAMP, DECIMAL):
        return pa.string()
    if pa.types.is_list(dtype):
        return pa.list_(_loose_type(_any(dtype).value_type))
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, _loose_type(f.type)) for f in _fields(dtype)])
    return dtype


_GET: Callable[[dict[str, Any], str], Any] = dict[str, Any].get


def _kinds(rows: list[dict[str, Any]], name: str) -> set[type]:
    """The classes of the values of `name` in `rows` (a missing one counts as None)."""
    return set(map(type, map(_GET, rows, repeat(name))))


PythonCheck = Callable[[list[dict[str, Any]], str], bool]


def _python_check(kind: object) -> PythonCheck | None:
    """What a top-level column of `kind` needs checked on its Python values (Arrow converts
    `1.5` to the integer 1, `True` to the number 1.0, and a string to a list of characters)."""
    if kind == "integer":
        return lambda rows, name: _kinds(rows, name) <= {int, _NONE}

    if kind == "number":

        def numbers(rows: list[dict[str, Any]], name: str) -> bool:
            classes = _kinds(rows, name)
            if not classes <= {int, float, _NONE}:
                return False
            values: list[Any] = [row.get(name) for row in rows]
            return float not in classes or all(
                math.isfinite(v) for v in values if v.__class__ is float
            )

        return numbers
    if kind == "array":
        return lambda rows, name: _kinds(rows, name) <= {list, _NONE}
    return None


class ArrowPages:
    """Converts pages of one record schema to Arrow record batches, checked (see the module)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        """Raises `ValueError` for a schema the fast path does not handle; see `for_schema`."""
        properties = cast("Mapping[str, Any]", schema.get("properties") or {})
        if not properties:
            raise ValueError("a record schema with no properties")
        required = set(cast("Sequence[str]", schema.get("required") or ()))
        try:
            self._columns = [
                (
                    name,
                    name in required,
                    _node_checks(prop, nested=False),
                    _python_check(prop.get("type")),
                )
                for name, prop in properties.items()
            ]
        except _Unsupported:
            raise ValueError("a record schema the fast path does not handle") from None
        self.schema: pa.Schema = arrow_schema(schema)
        """The schema of the batches `convert` returns (the Parquet file's)."""
        self._loose = pa.schema(
            [pa.field(f.name, _loose_type(f.type)) for f in _fields(self.schema)]
        )

    @classmethod
    def for_schema(cls, schema: Mapping[str, Any] | None) -> ArrowPages | None:
        """The converter for `schema`, or None when the fast path does not handle it."""
        if not schema:
            return None
        try:
            return cls(schema)
        except ValueError:
            return None

    def convert(self, records: Sequence[Any]) -> pa.RecordBatch | None:
        """The page as a typed batch, or None when a record might not pass the model check."""
        if not set(map(type, records)) <= _DICT:  # the classes in one pass in C
            return None
        rows = cast("list[dict[str, Any]]", records)
        try:
            batch = pa.RecordBatch.from_pylist(rows, schema=self._loose)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return None
        for index, (name, needed, checks, python_check) in enumerate(self._columns):
            column = cast("Any", batch.column(index))
            if needed and column.null_count:
                return None
            if python_check is not None and not python_check(rows, name):
                return None
            if not all(check(column) for check in checks):
                return None
        try:
            return batch.cast(self.schema)  # a date that does not exist (February 30th) fails here
        except pa.ArrowException:
            return None
