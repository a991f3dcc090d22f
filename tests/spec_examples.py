"""The spec's documented examples, assembled per schema, for the model and wire tests."""

from __future__ import annotations

import json
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
