"""From the OpenAPI document and the operation table to the sandbox's route table.

What each operation does, and which store its records live in, is the operation table's
(`finalpos_async.operations`, generated with the SDK's methods): its `kind` picks the handler
(create, retrieve → ``find_one``, update, delete, list → ``find_all``) and its `collection` the
store, so ``POST /customer``, ``GET /customer/{id}`` and ``GET /customers`` share the records of
``CustomerDto`` with no rule over path names. The spec gives the schemas: request bodies, the
record's fields, the parameters and their types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from .._method_info import MethodInfo
from ..operations import OPERATIONS
from ..spec import inline_schema

__all__ = [
    "Route",
    "RouteParam",
    "RouteTable",
    "build_route_table",
]

Kind = Literal["create", "find_one", "update", "delete", "find_all", "unsupported"]

_METHODS = ("get", "post", "put", "patch", "delete")
# What `x.get(key) or _EMPTY` falls back to: typed, where a bare `{}` would be `dict[Unknown, ...]`.
_EMPTY: Mapping[str, Any] = {}


@attrs.frozen
class RouteParam:
    """One declared path or query parameter."""

    name: str
    location: str
    required: bool
    schema: dict[str, Any]


@attrs.frozen
class Route:
    """One spec operation as the sandbox serves it."""

    operation_id: str
    method: str
    path: str
    kind: Kind
    collection: str
    base_path: str
    path_params: tuple[RouteParam, ...]
    query_params: tuple[RouteParam, ...]
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

    routes: tuple[Route, ...]
    entities: dict[str, dict[str, Any]]

    def by_id(self, operation_id: str) -> Route:
        """The route of the operation with this operationId (raises KeyError)."""
        for op in self.routes:
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


# What the sandbox does for each kind of the operation table.
_SERVED: dict[str, Kind] = {
    "create": "create",
    "retrieve": "find_one",
    "update": "update",
    "delete": "delete",
    "list": "find_all",
}


def _spec_operations(spec: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(path, method, operation) for every operation of `spec`, in document order."""
    paths: Mapping[str, Any] = spec.get("paths") or _EMPTY
    return [
        (path, method, item[method])
        for path, item in paths.items()
        for method in _METHODS
        if item.get(method) is not None
    ]


def _answered_entity(row: MethodInfo, op: Mapping[str, Any]) -> Any:
    """The record schema an operation answers (a list's item schema); None if it answers none."""
    _, schema = _success(op)
    if schema is None or row.kind == "delete":
        return None
    if row.kind == "list":
        return schema.get("items") if schema.get("type") == "array" else None
    return schema


def build_route_table(
    spec: Mapping[str, Any], operations: Sequence[MethodInfo] = OPERATIONS
) -> RouteTable:
    """Every operation of `spec`, served as its row of the operation table says.

    The row (by operationId) gives the kind and the collection; an operation of `spec` that has
    no row is routed but answers 501. The schemas (bodies, records, parameters) come from `spec`.
    """
    rows = {row.operation_id: row for row in operations}
    spec_ops = [
        (path, method, op, rows.get(str(op.get("operationId"))))
        for path, method, op in _spec_operations(spec)
    ]
    entities: dict[str, dict[str, Any]] = {}
    create_fields: dict[str, frozenset[str]] = {}
    for _path, _method, op, row in spec_ops:
        if row is None:
            continue
        entity = _answered_entity(row, op)
        if entity is not None:
            entities.setdefault(row.collection, inline_schema(entity, spec))
        if row.kind == "create":
            body = inline_schema(_body_schema(op), spec) or _EMPTY
            create_fields[row.collection] = frozenset((body.get("properties") or _EMPTY).keys())
    return RouteTable(
        routes=tuple(
            _route(spec, path, method, op, row, entities, create_fields)
            for path, method, op, row in spec_ops
        ),
        entities=entities,
    )


def _route(
    spec: Mapping[str, Any],
    path: str,
    method: str,
    op: Mapping[str, Any],
    row: MethodInfo | None,
    entities: Mapping[str, dict[str, Any]],
    create_fields: Mapping[str, frozenset[str]],
) -> Route:
    """One served operation: the row's kind and collection, the spec's schemas."""
    kind: Kind = _SERVED[row.kind] if row is not None else "unsupported"
    collection = row.collection if row is not None else str(op.get("operationId") or path)
    # The record id is the last path parameter of an item operation (the table lists them).
    id_param: str | None = None
    if row is not None and row.kind in ("retrieve", "update", "delete") and row.path_params:
        id_param = row.path_params[-1].wire_name
    entity = _answered_entity(row, op) if row is not None else None
    if entity is not None:
        entity = inline_schema(entity, spec)
    elif kind in ("find_one", "update", "find_all"):
        # an operation without a documented body answers its collection's records as they are
        entity = entities.get(collection)
    params = [
        inline_schema(p, spec) for p in (item_params(spec, path) + list(op.get("parameters") or []))
    ]
    body = _body_schema(op)
    status, _ = _success(op)
    return Route(
        operation_id=str(op.get("operationId") or f"{method}_{path}"),
        method=method.upper(),
        path=path,
        kind=kind,
        collection=collection,
        base_path=path.removesuffix(f"/{{{id_param}}}") if id_param else path,
        path_params=tuple(_param(p) for p in params if p.get("in") == "path"),
        query_params=tuple(_param(p) for p in params if p.get("in") == "query"),
        body_schema=inline_schema(body, spec) if body is not None else None,
        body_required=bool((op.get("requestBody") or _EMPTY).get("required")),
        success_status=status,
        entity_schema=entity,
        create_fields=create_fields.get(collection, frozenset()),
        id_param=id_param,
    )


def item_params(spec: Mapping[str, Any], path: str) -> list[Any]:
    """Parameters declared on the path item (shared by all its operations)."""
    return list(((spec.get("paths") or _EMPTY).get(path) or _EMPTY).get("parameters") or ())


def _body_schema(op: Mapping[str, Any]) -> Any:
    content: Mapping[str, Any] = (op.get("requestBody") or _EMPTY).get("content") or _EMPTY
    media = content.get("application/json") or next(iter(content.values()), None)
    return (media or _EMPTY).get("schema")


def _param(raw: Mapping[str, Any]) -> RouteParam:
    return RouteParam(
        name=str(raw["name"]),
        location=str(raw["in"]),
        required=bool(raw.get("required")),
        schema=dict(raw.get("schema") or {}),
    )
