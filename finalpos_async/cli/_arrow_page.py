"""The export's fast path: a page of records checked and typed in pyarrow's C++, not in Python.

For a record schema built only of what the models check by type (strings, `date-time` and
`decimal` strings, booleans, integers, numbers, arrays and objects with properties),
`ArrowPages.convert` turns a page of decoded records into an Arrow record batch typed as
`--format parquet` writes it (`arrow_schema`). Arrow refuses a value of the wrong JSON type;
what it would let through is checked (on the columns, or on the Python values' classes where
the columns cannot rule it out, see `_dicts_proof`): a string given for an array, a string or a
list for an object, a float for an integer, a null item in an array, a missing required field,
and a date-time or decimal string outside the forms every supported Python parses (RFC 3339
with seconds and an offset; at most 20 digits before the point and 18 after). So the fast path
is stricter than the model check, never looser: a page it does not take (`None`) goes through
the model check, which names the record and field, or accepts the page, which is then written
the slow way.

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
        mismatches: int = matches.false_count  # (a null value gives a null, not a False)
        return mismatches == 0

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
            if array.null_count == len(array):
                return True  # no list at all: nothing in them to check
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
            if struct.null_count == len(struct):
                return True  # no object at all: nothing in them to check
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
ValueCheck = Callable[[Any], bool]


def _dicts(node: Mapping[str, Any]) -> ValueCheck | None:
    """A check that every object in a value (not None) of `node` is a dict; None when `node`
    holds no object. (pyarrow also reads a sequence as an object: `""` or `[]` as one with no
    fields, `[["city", "x"]]` as `{"city": "x"}`, when it comes before any dict.)"""
    kind = node.get("type")
    if kind == "array":
        item = _dicts(cast("Mapping[str, Any]", node.get("items") or {}))
        if item is None:
            return None
        return lambda value: all(v is None or item(v) for v in value)
    properties = cast("Mapping[str, Any]", node.get("properties") or {})
    if kind != "object" or not properties:
        return None
    inner = _inner_dicts(properties)
    if not inner:
        return lambda value: value.__class__ is dict
    return lambda value: (
        value.__class__ is dict
        and all((v := value.get(name)) is None or check(v) for name, check in inner)
    )


def _inner_dicts(properties: Mapping[str, Any]) -> list[tuple[str, ValueCheck]]:
    """The `_dicts` checks of the properties of an object that hold objects."""
    return [(name, check) for name, prop in properties.items() if (check := _dicts(prop))]


def _python_check(node: Mapping[str, Any]) -> PythonCheck | None:
    """What a top-level column of `node` needs checked on its Python values (Arrow converts
    `1.5` to the integer 1, `True` to the number 1.0, a string to a list of characters, and a
    sequence to an object, see `_dicts`)."""
    kind = node.get("type")
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
    objects = _dicts(node)
    if kind == "array":
        outer: set[type] = {list, _NONE}
    elif objects is not None:
        outer = {dict, _NONE}
        if not _inner_dicts(cast("Mapping[str, Any]", node["properties"])):
            objects = None  # no object inside: the class of each value is all there is to check
    else:
        return None

    def values(rows: list[dict[str, Any]], name: str) -> bool:
        if not _kinds(rows, name) <= outer:
            return False
        return objects is None or all(
            objects(value) for value in map(_GET, rows, repeat(name)) if value is not None
        )

    return values


def _dicts_proof(node: Mapping[str, Any]) -> ArrayCheck | None:
    """A check on the Arrow array of `node` that, when True, shows that every object in it was
    read from a dict, so that `_python_check` would pass without looking at the values; None
    when `node` holds no object or array (nothing for Arrow to show).

    pyarrow reads `""` and `[]` as an object with no field set, and a string as a list of its
    characters (`""` as an empty list); it refuses every other JSON value that is not a dict
    (for an object) or a list (for an array). So an object column whose rows all have some
    field set, or a list column with no empty list and no item of one character, holds none
    of them.
    """
    kind = node.get("type")
    if kind == "array":
        item = cast("Mapping[str, Any]", node.get("items") or {})
        item_kind = item.get("type")
        items_proof = _dicts_proof(item) if item_kind == "object" else None
        if item_kind == "object" and items_proof is None:
            return None

        def lists(array: Any) -> bool:
            lengths = cast("Any", pc.list_value_length(array))
            shortest = pc.min(lengths).as_py()
            if shortest is not None and shortest < 1:
                return False  # an empty list may have been `""`
            values = array.flatten()
            if item_kind == "string":
                # (no string value at all: every list is null)
                item_lengths = cast("Any", pc.utf8_length(values))
                chars = pc.min(item_lengths).as_py()
                return bool(chars is None or chars >= 2)
            return items_proof is None or items_proof(values)

        return lists
    properties = cast("Mapping[str, Any]", node.get("properties") or {})
    if kind != "object" or not properties:
        return None
    names = list(properties)
    inner = [(name, proof) for name, prop in properties.items() if (proof := _dicts_proof(prop))]

    def objects(struct: Any) -> bool:
        # A row read from `""` or `[]` has no field set; a field set in every row rules it out.
        # (Under a null object pyarrow gives each field an empty value, not a null.)
        if not any(struct.field(name).null_count == 0 for name in names):
            return False
        return all(proof(struct.field(name)) for name, proof in inner)

    return objects


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
                    _python_check(prop),
                    _dicts_proof(prop),
                )
                for name, prop in properties.items()
            ]
        except _Unsupported:
            raise ValueError("a record schema the fast path does not handle") from None
        self.schema: pa.Schema = arrow_schema(schema)
        """The schema of the batches `convert` returns (the Parquet file's)."""
        read: list[pa.Field[Any]] = [
            pa.field(f.name, _loose_type(f.type)) for f in _fields(self.schema)
        ]
        self._record = pa.struct(read)
        """The type a page is first read into: one struct per record (see `_loose_type`)."""
        # The columns `convert` casts (those with a timestamp or a decimal in them); the others
        # are already typed as written, and casting the whole batch would visit them too.
        self._casts = [
            (index, typed.type)
            for index, (typed, loose) in enumerate(zip(_fields(self.schema), read, strict=True))
            if typed.type != loose.type
        ]

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
            # the page as one array of structs: each record's fields looked up in C++, where
            # `RecordBatch.from_pylist` first gathers each column into a Python list
            whole: Any = pa.array(rows, type=self._record)  # pyright: ignore[reportUnknownMemberType]  # stubs: `mask` part untyped
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return None
        batch = pa.RecordBatch.from_struct_array(whole)
        for index, (name, needed, checks, python_check, proof) in enumerate(self._columns):
            column = cast("Any", batch.column(index))
            nulls = column.null_count
            if needed and nulls:
                return None
            # (a column of nulls only held None or nothing: Arrow turns no other value to null)
            if (
                python_check is not None
                and nulls < len(rows)
                and not (proof is not None and proof(column))
                and not python_check(rows, name)
            ):
                return None
            if not all(check(column) for check in checks):
                return None
        columns: list[Any] = cast("Any", batch).columns
        try:
            for index, dtype in self._casts:
                column = columns[index]
                if column.null_count == len(column):
                    columns[index] = pa.nulls(len(column), dtype)  # no cast to make
                else:
                    # a date that does not exist (February 30th) fails here
                    columns[index] = column.cast(dtype)
        except pa.ArrowException:
            return None
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)  # pyright: ignore[reportUnknownMemberType]  # stubs: `Array` untyped
