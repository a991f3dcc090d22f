"""The spec, read once: every schema a `Model`, every row of `sdk_methods.py` a `SpecOperation`."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from sdk_methods import SDK_METHODS

from .text import clean, snake

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "finalpos_async"
SPEC = PACKAGE / "spec" / "finalpos-openapi.json"


def model_name(schema: str) -> str:
    return schema.removesuffix("Dto")


class Field:
    """One schema property: its names, its annotations on the model and as a method argument."""

    def __init__(self, wire: str, prop: dict[str, Any], required: bool) -> None:
        self.wire = wire
        self.name = snake(wire)
        self.required = required
        # `nullable: true` (OpenAPI 3.0) or a type list with "null" (3.1): null may be sent.
        self.nullable = bool(prop.get("nullable")) or "null" in as_list(prop.get("type"))
        self.description = clean(prop.get("description", "")) or f"The `{wire}` field."
        self.refs: set[str] = set()
        self.json_type = json_type(prop)
        self.model_type, self.param_type = self._types(prop)

    def _types(self, prop: dict[str, Any]) -> tuple[str, str]:
        """(annotation on the model, annotation of the method argument) without `| None`."""
        if "allOf" in prop and len(prop["allOf"]) == 1:
            prop = prop["allOf"][0]
        if "$ref" in prop:
            name = model_name(prop["$ref"].rsplit("/", 1)[1])
            self.refs.add(name)
            return name, f"{name} | Mapping[str, Any]"
        kind = next((t for t in as_list(prop.get("type")) if t != "null"), None)
        if kind == "array":
            item_model, item_param = self._types(prop.get("items", {}))
            return f"list[{item_model}]", f"Sequence[{item_param}]"
        if kind == "string":
            if prop.get("format") == "date-time":
                return "datetime", "datetime"
            if prop.get("format") == "decimal":
                return "Decimal", "Decimal | str"
            return "str", "str"
        if kind == "number":
            return "float", "float"
        if kind == "integer":
            return "int", "int"
        if kind == "boolean":
            return "bool", "bool"
        if kind == "object" and "properties" not in prop:
            return "dict[str, Any]", "Mapping[str, Any]"
        raise SystemExit(f"unsupported property schema for {self.wire}: {prop}")


class Model:
    """One schema as an attrs class."""

    def __init__(self, schema_name: str, schema: dict[str, Any]) -> None:
        self.schema_name = schema_name
        self.name = model_name(schema_name)
        required = set(schema.get("required", []))
        self.fields = [
            Field(wire, prop, wire in required)
            for wire, prop in schema.get("properties", {}).items()
        ]
        self.refs = set().union(*(f.refs for f in self.fields)) if self.fields else set()
        self.description = clean(schema.get("description", "")) or f"The `{schema_name}` schema."
        self.incomplete = bool(schema.get("x-incomplete") or schema.get("additionalProperties"))
        self.module = "shared"
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names) or "extra" in names:
            raise SystemExit(f"{schema_name}: field names collide after snake_case: {names}")


class SpecOperation:
    """One row of the table, resolved against the spec."""

    def __init__(self, resource: str, method: str, op_id: str, http: str, path: str, op: Any):
        self.resource, self.method, self.op_id = resource, method, op_id
        self.http, self.path, self.op = http.upper(), path, op
        params = op.get("parameters", [])
        self.path_params = [p for p in params if p["in"] == "path"]
        self.query_params = [
            p for p in params if p["in"] == "query" and p["name"] not in ("skip", "limit")
        ]
        self.paginated = method.startswith("list")
        if self.paginated and not {"skip", "limit"} <= {p["name"] for p in params}:
            raise SystemExit(f"{op_id}: a list method needs skip and limit query parameters")
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        self.body = ref_name(body.get("schema", {}))
        ok = [v for k, v in op["responses"].items() if k.startswith("2")]
        self.status = int(next(k for k in op["responses"] if k.startswith("2")))
        content = ok[0].get("content", {}) if ok else {}
        schema = content.get("application/json", {}).get("schema", {})
        if self.paginated:
            # Lists answer a bare array; an undocumented item type stays a plain dict.
            self.result = ref_name(schema.get("items", {})) or "dict[str, Any]"
        else:
            self.result = ref_name(schema) or "dict[str, Any]"

    def refs(self) -> set[str]:
        return {n for n in (self.body, self.result) if n and not n.startswith("dict")}


def as_list(kind: Any) -> list[Any]:
    """A schema's `type` as a list (OpenAPI 3.1 allows a list, such as ["string", "null"])."""
    return kind if isinstance(kind, list) else [kind]


def json_type(schema: dict[str, Any]) -> str:
    """The JSON type of a property (a reference is an object)."""
    if "allOf" in schema and len(schema["allOf"]) == 1:
        schema = schema["allOf"][0]
    if "$ref" in schema:
        return "object"
    return next((str(t) for t in as_list(schema.get("type")) if t not in (None, "null")), "object")


def ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return model_name(ref.rsplit("/", 1)[1]) if ref else None


def load() -> tuple[dict[str, Any], dict[str, Model], list[SpecOperation]]:
    spec = json.loads(SPEC.read_text())
    models = {model_name(n): Model(n, s) for n, s in spec["components"]["schemas"].items()}
    by_id = {
        op["operationId"]: (http, path, op)
        for path, item in spec["paths"].items()
        for http, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }
    missing = [row[2] for row in SDK_METHODS if row[2] not in by_id]
    untyped = sorted(set(by_id) - {row[2] for row in SDK_METHODS})
    if missing or untyped:
        raise SystemExit(f"sdk_methods.py vs spec: missing {missing}, not in the table {untyped}")
    operations = [SpecOperation(r, m, i, *by_id[i]) for r, m, i in SDK_METHODS]
    # A model lives with the only resource that uses it, or in `shared`.
    users: dict[str, set[str]] = defaultdict(set)

    def mark(name: str, resource: str) -> None:
        if resource not in users[name]:
            users[name].add(resource)
            for ref in models[name].refs:
                mark(ref, resource)

    for op in operations:
        for name in op.refs():
            mark(name, op.resource)
    for name, model in models.items():
        if len(users[name]) == 1:
            model.module = next(iter(users[name]))
    return spec, models, operations
