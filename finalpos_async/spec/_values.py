"""The value checker: does a JSON value fit a schema of the Final POS spec (already inlined)?

The spec's schemas use only `type`, `properties`, `required`, `items`, `enum`, `format`,
`pattern`, `nullable` and `allOf`/`$ref` (resolved before they reach this module, see
`inline_schema`). A hand-written checker keeps the package free of an extra dependency and, more
importantly, lets every message name the field the way the API does:
``Validation failed: Field `billing.city` must be a string.``

What is checked is what the spec declares and nothing more: a type, `required`, an `enum`, a
`format` this module knows (`_FORMATS`), a `pattern`. A field is missing only when it is absent:
`""` is a string like any other (the spec sets no `minLength`), and `null` is a value only of a
field the spec marks `nullable` (the fields of update bodies, where null clears the field).
The sandbox checks requests with it and the CLI checks import rows with it (`format_problem`), so
a file and a request get the same verdict; the library's models follow the same rule.

Unknown properties are accepted everywhere: customer DTOs are generated from each company's custom
tables, so the real API keeps fields the spec does not list.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

__all__ = ["check_value", "format_problem", "nullable"]

# RFC 3339 date-time, the `format` JSON Schema means: a `T` (any case) between date and time, an
# offset (`Z` or `+hh:mm`), any fraction length. The sandbox answers a stored value back as it was
# sent, so what it accepts here must also pass as a date-time in its answers.
_DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$"
)


def _is_date_time(value: str) -> bool:
    match = _DATE_TIME.match(value)
    if match is None:
        return False
    year, month, day, hour, minute, second, off_hour, off_minute = (
        int(part) if part is not None else 0 for part in match.groups()
    )
    if not 1 <= month <= 12 or hour > 23 or minute > 59 or second > 59:
        return False
    if off_hour > 23 or off_minute > 59:
        return False
    # `calendar` rather than `datetime`, which has no year 0000 (RFC 3339 has)
    return 1 <= day <= calendar.monthrange(year, month)[1]


# Money as the spec writes it (`format: decimal`, with this same `pattern`): digits, an optional
# fraction, an optional leading minus; no exponent, no grouping, no surrounding space.
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")

# The `format`s checked, each with what a value must be: the two the spec declares; a format not
# listed here constrains nothing, and none is ever guessed from a field's name.
_FORMATS: dict[str, tuple[Callable[[str], bool], str]] = {
    "date-time": (_is_date_time, "an ISO 8601 date-time string such as 2025-12-07T19:31:48Z"),
    "decimal": (
        lambda value: _DECIMAL.fullmatch(value) is not None,
        "a decimal string such as 1000.50",
    ),
}
_ARTICLES = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_ok(value: Any, expected: str) -> bool:
    # bool is an int subclass in Python but never a JSON number.
    if expected == "string":
        return isinstance(value, str)
    if expected == "number":
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (not isinstance(value, float) or math.isfinite(value))
        )
    if expected == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "array":
        return isinstance(value, list)
    if expected == "object":
        return isinstance(value, dict)
    return True  # an unknown type keyword constrains nothing


def nullable(schema: Mapping[str, Any]) -> bool:
    """Whether `schema` allows null: `nullable: true`, or "null" in a list of types."""
    kind = schema.get("type")
    return bool(schema.get("nullable")) or (isinstance(kind, list) and "null" in kind)


def check_value(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    """Return the first problem of `value` against `schema` (a message naming `path`), or None."""
    if value is None and nullable(schema):
        return None
    expected = schema.get("type")
    if expected is None and "properties" in schema:
        expected = "object"
    if isinstance(expected, list):  # ["string", "null"]: null was handled above
        kinds = [str(k) for k in cast("list[object]", expected) if k != "null"]
        expected = kinds[0] if len(kinds) == 1 else None
    if isinstance(expected, str) and not _type_ok(value, expected):
        return f"Field `{path}` must be {_ARTICLES.get(expected, expected)}."
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        allowed = ", ".join(str(v) for v in enum)
        return f"Field `{path}` must be one of: {allowed}."
    wanted = format_problem(value, schema)
    if wanted is not None:
        return f"Field `{path}` must be {wanted}."
    if isinstance(value, dict):
        fields = cast("dict[str, Any]", value)  # a JSON object: string keys
        for name in schema.get("required", ()):
            if name not in fields:
                return f"Field `{_join(path, name)}` is required."
        properties: Mapping[str, Any] = schema.get("properties") or {}
        for key, sub in properties.items():
            if key in fields:
                problem = check_value(fields[key], sub, _join(path, key))
                if problem is not None:
                    return problem
    elif isinstance(value, list):
        items = schema.get("items")
        if items is not None:
            elements = cast("list[object]", value)
            for index, item in enumerate(elements):
                problem = check_value(item, items, f"{path}[{index}]")
                if problem is not None:
                    return problem
    return None


def format_problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    """What a string must be to fit the `format` and `pattern` of `schema` (None: it fits)."""
    if not isinstance(value, str):
        return None
    known = _FORMATS.get(str(schema.get("format")))
    if known is not None and not known[0](value):
        return known[1]
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and re.search(pattern, value) is None:
        return f"text matching the pattern {pattern}"
    return None
