"""From the OpenAPI document to the sandbox's route table.

Every operation is classified by its shape, never by its name, so a new operation in the spec is
served without new code:

- ``POST /things``              → ``create``
- ``GET /things/{id}``          → ``find_one``
- ``PUT|PATCH /things/{id}``    → ``update`` (``POST`` on an item path too)
- ``DELETE /things/{id}``       → ``delete``
- ``GET /things`` (or plural)   → ``find_all``

Operations of one entity share a *collection*: the name of the schema they answer with
(``CustomerDto`` for ``POST /customer``, ``GET /customer/{id}`` and ``GET /customers``).
An operation that does not name the entity (a delete answers ``DeleteResponseDto``, some lists
document no body) borrows the collection of its siblings on the same base path, or of the
singular of its plural path (``/custom-table-rows`` → ``/custom-table-row``).
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Mapping
from typing import Any, Literal, cast

import attrs

__all__ = [
    "Operation",
    "Param",
    "RouteTable",
    "build_route_table",
    "inline_schema",
    "load_spec",
]

Kind = Literal["create", "find_one", "update", "delete", "find_all", "unsupported"]

_METHODS = ("get", "post", "put", "patch", "delete")
_PARAM_SEGMENT = re.compile(r"^\{([^}]+)\}$")
# What `x.get(key) or _EMPTY` falls back to: typed, where a bare `{}` would be `dict[Unknown, ...]`.
_EMPTY: Mapping[str, Any] = {}


def load_spec(path: str | None = None) -> dict[str, Any]:
    """Load the OpenAPI document: `path` if given, else the copy shipped in the package."""
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
        return data
    resource = importlib.resources.files("finalpos_async") / "spec" / "finalpos-openapi.json"
    loaded: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return loaded


def _ref_name(schema: Mapping[str, Any] | None) -> str | None:
    if not schema:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rsplit("/", 1)[-1]
    all_of = schema.get("allOf")
    if isinstance(all_of, list):
        parts = cast("list[Mapping[str, Any]]", all_of)  # allOf: a list of schemas
        if len(parts) == 1:
            return _ref_name(parts[0])
    return None


def inline_schema(schema: Any, spec: Mapping[str, Any], _depth: int = 0) -> Any:
    """Resolve `$ref` and merge `allOf` so the validator sees plain, self-contained schemas."""
    if _depth > 32:  # a cycle in the spec; stop rather than recurse forever
        return {}
    if isinstance(schema, list):
        return [inline_schema(item, spec, _depth + 1) for item in cast("list[object]", schema)]
    if not isinstance(schema, dict):
        return schema
    schema = cast("dict[str, Any]", schema)  # a JSON object of the spec
    if "$ref" in schema:
        target: Any = spec
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            target = target[part]
        merged = dict(inline_schema(target, spec, _depth + 1))
        merged.update({k: v for k, v in schema.items() if k != "$ref"})
        return merged
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "allOf":
            continue
        if key == "properties" and isinstance(value, dict):
            properties = cast("dict[str, Any]", value)
            result[key] = {
                name: inline_schema(sub, spec, _depth + 1) for name, sub in properties.items()
            }
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            result[key] = inline_schema(value, spec, _depth + 1)
        else:
            result[key] = value
    for part in schema.get("allOf") or ():
        resolved = inline_schema(part, spec, _depth + 1)
        for key, value in resolved.items():
            if key == "properties":
                result["properties"] = {**value, **result.get("properties", {})}
            elif key == "required":
                result["required"] = sorted({*value, *result.get("required", [])})
            else:
                # the outer schema's own keywords (description, example) win over the part's
                result.setdefault(key, value)
    return result


@attrs.frozen
class Param:
    """One declared path or query parameter."""

    name: str
    location: str
    required: bool
    schema: dict[str, Any]


@attrs.frozen
class Operation:
    """One spec operation as the sandbox serves it."""

    operation_id: str
    method: str
    path: str
    kind: Kind
    collection: str
    base_path: str
    path_params: tuple[Param, ...]
    query_params: tuple[Param, ...]
    body_schema: dict[str, Any] | None
    body_required: bool
    success_status: int
    entity_schema: dict[str, Any] | None
    """The record's schema (a list's item schema), inlined; None if undocumented."""
    create_fields: frozenset[str]
    """Fields the create body of this collection declares (generated fields are not among them)."""
    id_param: str | None
    """Name of the trailing path parameter (the record id), if the path ends in one."""


@attrs.frozen
class RouteTable:
    """Every served operation, plus the collections' entity schemas."""

    operations: tuple[Operation, ...]
    entities: dict[str, dict[str, Any]]

    def by_id(self, operation_id: str) -> Operation:
        """The operation with this operationId (raises KeyError)."""
        for op in self.operations:
            if op.operation_id == operation_id:
                return op
        raise KeyError(operation_id)


def _success(op: Mapping[str, Any]) -> tuple[int, Mapping[str, Any] | None]:
    responses: Mapping[str, Any] = op.get("responses") or _EMPTY
    for code, response in sorted(responses.items()):
        if str(code).startswith("2"):
            content: Mapping[str, Any] = (response or _EMPTY).get("content") or _EMPTY
            media = content.get("application/json") or next(iter(content.values()), None)
            return int(code), (media or _EMPTY).get("schema")
    return 200, None


def _classify(method: str, path: str) -> Kind:
    on_item = bool(_PARAM_SEGMENT.match(path.rstrip("/").rsplit("/", 1)[-1]))
    if on_item:
        return {"get": "find_one", "put": "update", "patch": "update", "post": "update"}.get(
            method, "delete" if method == "delete" else "unsupported"
        )  # type: ignore[return-value]
    return {"post": "create", "get": "find_all"}.get(method, "unsupported")  # type: ignore[return-value]


def _trailing_param(path: str) -> str | None:
    match = _PARAM_SEGMENT.match(path.rstrip("/").rsplit("/", 1)[-1])
    return match.group(1) if match else None


def _base(path: str) -> str:
    parts = path.rstrip("/").split("/")
    if parts and _PARAM_SEGMENT.match(parts[-1]):
        parts = parts[:-1]
    return "/".join(parts)


def _singular(base: str) -> str:
    head, _, last = base.rpartition("/")
    if last.endswith("ies"):
        last = last[:-3] + "y"
    elif last.endswith("s"):
        last = last[:-1]
    return f"{head}/{last}"


def build_route_table(spec: Mapping[str, Any]) -> RouteTable:
    """Classify every operation of `spec` and group them into collections."""
    raw: list[tuple[str, str, Mapping[str, Any], Kind, str | None, Any]] = []
    paths: Mapping[str, Any] = spec.get("paths") or _EMPTY
    for path, item in paths.items():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            kind = _classify(method, path)
            _, schema = _success(op)
            entity_ref: str | None = None
            entity_schema: Any = None
            if kind in ("create", "find_one", "update") and schema is not None:
                entity_ref, entity_schema = _ref_name(schema), schema
            elif kind == "find_all" and schema is not None and schema.get("type") == "array":
                entity_ref, entity_schema = _ref_name(schema.get("items")), schema.get("items")
            raw.append((path, method, op, kind, entity_ref, entity_schema))

    # base path → entity name, from the operations that name their entity
    base_entity: dict[str, str] = {}
    for path, _method, _op, _kind, entity_ref, _schema in raw:
        if entity_ref is not None:
            base_entity.setdefault(_base(path), entity_ref)
    create_fields: dict[str, frozenset[str]] = {}
    for _path, _method, op, kind, entity_ref, _schema in raw:
        if kind == "create" and entity_ref is not None:
            body = inline_schema(_body_schema(op), spec) or _EMPTY
            create_fields[entity_ref] = frozenset((body.get("properties") or _EMPTY).keys())

    entities: dict[str, dict[str, Any]] = {}
    operations: list[Operation] = []
    for path, method, op, kind, entity_ref, entity_schema in raw:
        base = _base(path)
        collection = (
            entity_ref
            or base_entity.get(base)
            or (base_entity.get(_singular(base)) if kind == "find_all" else None)
            or base
        )
        inlined_entity = inline_schema(entity_schema, spec) if entity_schema is not None else None
        if inlined_entity is not None:
            entities.setdefault(collection, inlined_entity)
        params = [
            inline_schema(p, spec)
            for p in (item_params(spec, path) + list(op.get("parameters") or []))
        ]
        body = _body_schema(op)
        status, _ = _success(op)
        operations.append(
            Operation(
                operation_id=str(op.get("operationId") or f"{method}_{path}"),
                method=method.upper(),
                path=path,
                kind=kind,
                collection=collection,
                base_path=base,
                path_params=tuple(_param(p) for p in params if p.get("in") == "path"),
                query_params=tuple(_param(p) for p in params if p.get("in") == "query"),
                body_schema=inline_schema(body, spec) if body is not None else None,
                body_required=bool((op.get("requestBody") or _EMPTY).get("required")),
                success_status=status,
                entity_schema=inlined_entity,
                create_fields=create_fields.get(collection, frozenset()),
                id_param=_trailing_param(path),
            )
        )
    # an operation without a documented body answers its collection's records as they are
    final = tuple(
        attrs.evolve(op, entity_schema=entities.get(op.collection))
        if op.entity_schema is None and op.kind in ("find_one", "update", "find_all")
        else op
        for op in operations
    )
    return RouteTable(operations=final, entities=entities)


def item_params(spec: Mapping[str, Any], path: str) -> list[Any]:
    """Parameters declared on the path item (shared by all its operations)."""
    return list(((spec.get("paths") or _EMPTY).get(path) or _EMPTY).get("parameters") or ())


def _body_schema(op: Mapping[str, Any]) -> Any:
    content: Mapping[str, Any] = (op.get("requestBody") or _EMPTY).get("content") or _EMPTY
    media = content.get("application/json") or next(iter(content.values()), None)
    return (media or _EMPTY).get("schema")


def _param(raw: Mapping[str, Any]) -> Param:
    return Param(
        name=str(raw["name"]),
        location=str(raw["in"]),
        required=bool(raw.get("required")),
        schema=dict(raw.get("schema") or {}),
    )
