"""The spec's documented examples, assembled per schema, for the model and wire tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "finalpos_async" / "spec" / "finalpos-openapi.json"
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text())
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]


def model_name(schema_name: str) -> str:
    return schema_name.removesuffix("Dto")


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    if "allOf" in schema and len(schema["allOf"]) == 1:
        schema = schema["allOf"][0]
    if "$ref" in schema:
        return SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def example_of(schema: dict[str, Any]) -> Any:
    """The property's own example, else one built from its sub-schema's property examples."""
    if "example" in schema:
        return schema["example"]
    target = resolve(schema)
    if target is not schema:
        return example_of(target)
    if schema.get("type") == "array":
        item = example_of(schema.get("items", {}))
        return None if item is None else [item]
    if schema.get("type") == "object" and "properties" in schema:
        out = {}
        for name, prop in schema["properties"].items():
            value = example_of(prop)
            if value is not None:
                out[name] = value
        return out
    return None


_UTC_Z = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)[Zz]")


def as_sent(value: Any) -> Any:
    """An example as the SDK writes it: a UTC date-time's `Z` spelled `+00:00` (same instant).

    The spec's examples spell UTC both ways (sessions `...000Z`, customers `...436+00:00`); the
    models hold a `datetime`, written back in the one form the API's own answers use.
    """
    if isinstance(value, str):
        match = _UTC_Z.fullmatch(value)
        return f"{match.group(1)}+00:00" if match else value
    if isinstance(value, list):
        return [as_sent(item) for item in value]
    if isinstance(value, dict):
        return {key: as_sent(item) for key, item in value.items()}
    return value


def schema_examples() -> list[tuple[str, Any]]:
    """(schema name, example object) for every schema with properties."""
    return [
        (name, example_of(schema)) for name, schema in SCHEMAS.items() if schema.get("properties")
    ]


def operation_examples() -> list[tuple[str, str, Any]]:
    """(operationId/where, schema name, example) for every example written on an operation."""
    out = []
    for item in SPEC["paths"].values():
        for op in item.values():
            bodies = [("request", op.get("requestBody", {}))]
            bodies += [(status, r) for status, r in op["responses"].items() if status < "300"]
            for where, holder in bodies:
                media = holder.get("content", {}).get("application/json", {})
                if "example" not in media:
                    continue
                schema = media.get("schema", {})
                example = media["example"]
                if schema.get("type") == "array":
                    name = schema["items"]["$ref"].rsplit("/", 1)[1]
                    out += [(f"{op['operationId']} {where}[]", name, e) for e in example]
                elif "$ref" in schema:
                    name = schema["$ref"].rsplit("/", 1)[1]
                    out.append((f"{op['operationId']} {where}", name, example))
    return out


def full_example(schema: dict[str, Any]) -> Any:
    """An example with every documented field: objects and arrays built from their sub-schemas.

    `example_of` takes an object's own example, which may leave out optional nested fields (a
    refund line's example has no `taxes`); this one fills every property that has an example.
    """
    target = resolve(schema)
    if target.get("properties"):
        out = {}
        for name, prop in target["properties"].items():
            value = full_example(prop)
            if value is not None:
                out[name] = value
        return out or schema.get("example")
    if target.get("type") == "array":
        item = full_example(target.get("items", {}))
        return schema.get("example") if item is None else [item]
    return schema.get("example", target.get("example"))
