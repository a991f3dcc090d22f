"""`finalpos get` and `delete`, and what `export` shares: records as wire JSON, CSV cells.

Get and delete call `retrieve` and `delete`; `_export.py` walks a list method's pages.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, cast

from .._client import AsyncFinalPOS
from .._codec import dumps
from .._method_info import MethodInfo
from .._model import Model
from ._spec import MethodError

__all__ = [
    "call_one",
    "csv_cell",
    "csv_columns",
    "csv_paths",
    "csv_row",
    "list_arguments",
    "print_json",
    "to_json",
]


def to_json(value: Any) -> Any:
    """A typed method's answer (a model, or parsed JSON) as JSON data with wire names."""
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, list):
        return [to_json(item) for item in cast("list[object]", value)]
    return value  # parsed JSON already (a `dict` response model)


def list_arguments(op: MethodInfo, given: Mapping[str, str]) -> dict[str, str]:
    """`--param table-id=X` values as the list method's keyword arguments (`table_id`)."""
    known = {p.python_name: p for p in op.query_params}
    for p in op.query_params:
        known.setdefault(p.wire_name, p)
    args: dict[str, str] = {}
    for name, value in given.items():
        param = known.get(name.replace("-", "_")) or known.get(name)
        if param is None:
            names = ", ".join(p.python_name.replace("_", "-") for p in op.query_params)
            raise MethodError(
                f"{op.qualified_name} takes no parameter {name!r}"
                + (f"; it takes: {names}" if names else "; it takes none")
            )
        args[param.python_name] = value
    missing = [p.python_name for p in op.query_params if p.required and p.python_name not in args]
    if missing:
        flags = " ".join(f"--param {m.replace('_', '-')}=VALUE" for m in missing)
        raise MethodError(f"{op.qualified_name} needs {flags}")
    return args


def csv_columns(schema: Mapping[str, Any] | None) -> list[str]:
    """Dotted column names for a response schema (nested objects flattened: `billing.city`)."""
    if not schema:
        return ["id"]
    columns: list[str] = []

    def walk(node: Mapping[str, Any], prefix: str, depth: int) -> None:
        for name, prop in node.get("properties", {}).items():
            if prop.get("properties") and depth < 3:
                walk(prop, f"{prefix}{name}.", depth + 1)
            else:
                columns.append(prefix + name)

    walk(schema, "", 0)
    return columns


def csv_paths(columns: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """`csv_columns` as (first key, keys below it) pairs, the form `csv_row` reads."""
    split = [column.split(".") for column in columns]
    return [(parts[0], tuple(parts[1:])) for parts in split]


def csv_row(item: Mapping[str, Any], paths: Sequence[tuple[str, tuple[str, ...]]]) -> list[str]:
    """The cells of one record for the columns `paths` (see `csv_paths`)."""
    # One record at a time; `finalpos export` builds its rows a column at a time (`_csv_rows`).
    row: list[str] = []
    append = row.append
    get = item.get
    for head, rest in paths:
        value: Any = get(head)
        if rest:
            value = _below(value, rest)
        if value is None:
            append("")
        elif type(value) is str:
            append(value)
        else:
            append(csv_cell(value))
    return row


def _below(value: Any, parts: tuple[str, ...]) -> Any:
    """The value under the keys `parts` of `value` (None when a level is missing)."""
    for part in parts:
        if type(value) is not dict and not isinstance(value, Mapping):  # decoded JSON: a dict
            return None
        value = cast("Mapping[str, Any]", value).get(part)
    return value


def csv_cell(value: Any) -> str:
    """The CSV cell of one value as the API sent it (JSON text for a list or an object)."""
    if value is None:
        return ""
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        # JSON text: `finalpos import` reads a cell starting with "[" or "{" back as JSON.
        return dumps(value).decode()
    return str(value)


async def call_one(client: AsyncFinalPOS, op: MethodInfo, ident: str) -> Any:
    """Run a retrieve or delete method on one id; its answer as JSON data."""
    method: Any = getattr(getattr(client, op.resource), op.name)
    return to_json(await method(ident))


def print_json(value: Any) -> None:
    """Pretty JSON on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
