"""`finalpos_async/operations.py`: the shipped operation table the CLI and the sandbox read."""

from __future__ import annotations

from typing import Any

from .spec import Model, SpecOperation
from .text import HEADER, snake

KINDS = ("create", "retrieve", "update", "delete", "list")


def collections(operations: list[SpecOperation], models: dict[str, Model]) -> dict[str, str]:
    """operationId -> the store its records live in.

    An operation answering a record uses that record's schema; a delete (which answers a receipt,
    not the record) uses the collection of its resource's create; a list of undocumented items
    gets its own.
    """
    found: dict[str, str] = {}
    for op in operations:
        if op.result in models and op.method != "delete":
            found[op.op_id] = models[op.result].schema_name
    for op in operations:
        if op.op_id in found:
            continue
        if op.method == "delete":
            siblings = [o for o in operations if o.resource == op.resource and o.method == "create"]
            if not siblings or siblings[0].op_id not in found:
                raise SystemExit(f"{op.op_id}: a delete needs a create in its resource")
            found[op.op_id] = found[siblings[0].op_id]
        else:
            found[op.op_id] = f"{op.resource}.{op.method}"
    return found


def param_src(python: str, wire: str, required: bool, json: str) -> str:
    return f"ParamInfo({python!r}, {wire!r}, {required!r}, {json!r})"


def render_operation(op: SpecOperation, models: dict[str, Model], collection: str) -> str:
    kind = op.method.split("_")[0]
    if kind not in KINDS:
        raise SystemExit(f"{op.op_id}: method {op.method!r} must start with one of {KINDS}")
    body = models[op.body] if op.body else None
    result = models.get(op.result)

    def params(raw: list[dict[str, Any]]) -> str:
        items = [
            param_src(
                snake(p["name"]),
                p["name"],
                bool(p.get("required")),
                p.get("schema", {}).get("type", "string"),
            )
            for p in raw
        ]
        return "(" + "".join(i + ", " for i in items) + ")"

    fields = [
        param_src(f.name, f.wire, f.required, f.json_type) for f in (body.fields if body else [])
    ]
    args = [
        f"resource={op.resource!r}",
        f"name={op.method!r}",
        f"kind={kind!r}",
        f"operation_id={op.op_id!r}",
        f"http_method={op.http!r}",
        f"path={op.path!r}",
        f"path_params={params(op.path_params)}",
        f"query_params={params(op.query_params)}",
        "body_fields=(" + "".join(f + ", " for f in fields) + ")",
        f"body_schema={body.schema_name if body else None!r}",
        f"response_schema={result.schema_name if result else None!r}",
        f"body_model={body.name if body else None!r}",
        f"response_model={result.name if result else None!r}",
        f"success_status={op.status!r}",
        f"collection={collection!r}",
    ]
    return "    MethodInfo(" + ", ".join(args) + "),"


def render_operations_module(operations: list[SpecOperation], models: dict[str, Model]) -> str:
    found = collections(operations, models)
    lines = [
        HEADER + '"""Every SDK method and the spec operation behind it (see `MethodInfo`)."""',
        "",
        "from __future__ import annotations",
        "",
        "from ._method_info import MethodInfo, ParamInfo",
        "",
        '__all__ = ["OPERATIONS", "MethodInfo", "Operation", "Param", "ParamInfo", "find"]',
        "",
        "# The former names of `MethodInfo` and `ParamInfo`, kept so that code importing them from",
        "# here goes on working; deprecated.",
        "Operation = MethodInfo",
        "Param = ParamInfo",
        "",
        "OPERATIONS: tuple[MethodInfo, ...] = (",
        *(render_operation(op, models, found[op.op_id]) for op in operations),
        ")",
        "",
        "_BY_NAME = {(op.resource, op.name): op for op in OPERATIONS}",
        "",
        "",
        "def find(resource: str, name: str) -> MethodInfo:",
        '    """The operation behind `client.<resource>.<name>` (KeyError if there is none)."""',
        "    try:",
        "        return _BY_NAME[resource, name]",
        "    except KeyError:",
        '        raise KeyError(f"no operation {resource}.{name}") from None',
    ]
    return "\n".join(lines) + "\n"
