"""A small validator for the JSON-schema subset the Final POS spec uses.

The spec's schemas use only `type`, `properties`, `required`, `items`, `enum`, `format`,
`pattern`, `nullable` and `allOf`/`$ref` (resolved before they reach this module, see
`_routes.inline_schema`). A hand-written validator keeps the sandbox free of an extra dependency
and, more importantly, lets every message name the field the way the API does:
``Validation failed: Field `billing.city` must be a string.``

What is checked is what the spec declares and nothing more: a type, `required`, an `enum`, a
`format` this module knows (`_FORMATS`), a `pattern`. A field is missing only when it is absent:
`""` is a string like any other (the spec sets no `minLength`), and `null` is a value only of a
field the spec marks `nullable` (the fields of update bodies, where null clears the field). The
library's models and the CLI's import checks follow the same rule.

Unknown properties are accepted everywhere: customer DTOs are generated from each company's custom
tables, so the real API keeps fields the spec does not list.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

__all__ = [
    "check_value",
    "default_for",
    "fill_required",
    "format_problem",
    "nullable",
    "validate_body",
    "validate_stored_fields",
]

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
# listed here constrains nothing, and none is ever guessed from a field's name. The CLI's import
# checks use this same table, so a file and a request get the same verdict.
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


def validate_body(body: Any, schema: Mapping[str, Any]) -> str | None:
    """Validate a request body; the message for a non-object body names the body itself."""
    if schema.get("type", "object") == "object" and not isinstance(body, dict):
        return "The request body must be a JSON object."
    if isinstance(body, dict):
        fields = cast("dict[str, Any]", body)  # a JSON object: string keys
        for name in schema.get("required", ()):
            if name not in fields:
                return f"Field `{name}` is required."
        properties: Mapping[str, Any] = schema.get("properties") or {}
        for key, sub in properties.items():
            if key in fields:
                problem = check_value(fields[key], sub, key)
                if problem is not None:
                    return problem
        return None
    return check_value(body, schema, "body")


def validate_stored_fields(
    body: Mapping[str, Any], entity: Mapping[str, Any], skip: frozenset[str]
) -> str | None:
    """Check body fields against the type the stored entity declares for them.

    The request schema may be looser than the record the API keeps (customer `lastAction` is a
    plain string in the body but a date-time in the record), and fields the request schema does
    not list are kept as they are; a value the record could not hold is refused here, with the
    field named, instead of being stored and answered in a shape the spec does not allow.
    """
    properties: Mapping[str, Any] = entity.get("properties") or {}
    for key, value in body.items():
        if key in skip:
            continue
        sub = properties.get(key)
        if sub is not None:
            problem = check_value(value, sub, key)
            if problem is not None:
                return problem
    return None


def default_for(schema: Mapping[str, Any]) -> Any:
    """A value that satisfies `schema`: its example, default, first enum value, or a zero value."""
    for keyword in ("example", "default"):
        if keyword in schema and check_value(schema[keyword], schema, "x") is None:
            return schema[keyword]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind == "string":
        return "1970-01-01T00:00:00.000+00:00" if schema.get("format") == "date-time" else ""
    if kind in ("number", "integer"):
        return 0
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        result: dict[str, Any] = {}
        fill_required(result, schema)
        return result
    return None


def fill_required(record: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Add every field `schema` requires but `record` lacks, so the answer conforms to the spec."""
    properties: Mapping[str, Any] = schema.get("properties") or {}
    for name in schema.get("required", ()):
        if name not in record:
            record[name] = default_for(properties.get(name, {}))
