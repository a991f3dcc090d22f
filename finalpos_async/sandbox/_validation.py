"""The sandbox's request and record checks, built on the spec's value checker.

`validate_body` checks a request body, `validate_stored_fields` the fields a record keeps, with
`finalpos_async.spec.check_value` (what a value must be, and the messages naming the field);
`default_for` and `fill_required` complete an answer so that it conforms to the spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..spec import check_value

__all__ = [
    "default_for",
    "fill_required",
    "validate_body",
    "validate_stored_fields",
]


def validate_body(body: Any, schema: Mapping[str, Any]) -> str | None:
    """Validate a request body; the message for a non-object body names the body itself."""
    if schema.get("type", "object") == "object" and not isinstance(body, dict):
        return "The request body must be a JSON object."
    if isinstance(body, dict):
        return check_value(body, schema, "")  # the root path: fields are named by themselves
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
