"""`finalpos export`, `get` and `delete`: streaming lists and single calls, JSON or CSV out."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import AsyncIterator, Mapping
from typing import IO, Any, cast

from .._client import AsyncFinalPOS
from .._constants import DEFAULT_PAGE_LIMIT
from .._urls import encode_path_param
from ._spec import Resource, resolve_schema

__all__ = ["csv_columns", "delete_one", "export", "get_one", "iterate"]


async def iterate(
    client: AsyncFinalPOS, path: str, *, page_size: int = DEFAULT_PAGE_LIMIT, limit: int | None
) -> AsyncIterator[Any]:
    """Every item of a skip/limit list, one page in memory at a time.

    Stops on a short or empty page; a page that repeats the previous one (same first id) means
    the server ignores `skip`, and raises instead of looping forever.
    """
    skip = 0
    seen = 0
    previous_first: object = None
    while True:
        answer: object = await client.request(
            "GET", path, params={"skip": skip, "limit": page_size}
        )
        if not isinstance(answer, list):
            raise ValueError(f"GET {path} answered {type(answer).__name__}, expected a JSON array")
        page = cast("list[object]", answer)  # parsed JSON: its items are any JSON values
        if not page:
            return
        head: object = page[0]
        first = cast("Mapping[str, Any]", head).get("id") if isinstance(head, Mapping) else None
        if skip and first is not None and first == previous_first:
            raise RuntimeError(f"GET {path} returned the same page twice (skip={skip}); stopping")
        previous_first = first
        for item in page:
            yield item
            seen += 1
            if limit is not None and seen >= limit:
                return
        if len(page) < page_size:
            return
        skip += len(page)


def csv_columns(schema: Mapping[str, Any] | None) -> list[str]:
    """Dotted column names for a response schema (nested objects flattened: `billing.city`)."""
    if not schema:
        return ["id"]
    columns: list[str] = []

    def walk(node: Mapping[str, Any], prefix: str, depth: int) -> None:
        for name, prop in resolve_schema(node).get("properties", {}).items():
            resolved = resolve_schema(prop)
            if resolved.get("properties") and depth < 3:
                walk(resolved, f"{prefix}{name}.", depth + 1)
            else:
                columns.append(prefix + name)

    walk(schema, "", 0)
    return columns


def _cell(item: Mapping[str, Any], column: str) -> str:
    value: Any = item
    for part in column.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = cast("Mapping[str, Any]", value).get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        # JSON text: `finalpos import` reads a cell starting with "[" or "{" back as JSON.
        return json.dumps(cast("list[Any] | dict[str, Any]", value), ensure_ascii=False)
    return str(value)


async def export(
    client: AsyncFinalPOS,
    resource: Resource,
    out: IO[str],
    *,
    fmt: str,
    page_size: int,
    limit: int | None,
) -> int:
    """Write every item of the resource's list to `out`; returns how many."""
    assert resource.list_path is not None
    count = 0
    writer: Any = None
    columns: list[str] = []
    if fmt == "csv":
        columns = csv_columns(resource.item_schema)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
    async for item in iterate(client, resource.list_path, page_size=page_size, limit=limit):
        if writer is not None:
            writer.writerow([_cell(item, column) for column in columns])
        else:
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
        count += 1
    out.flush()
    return count


def _item_path(resource: Resource, ident: str) -> str:
    assert resource.item_path is not None
    return resource.item_path.replace("{id}", encode_path_param(ident, "id"))


async def get_one(client: AsyncFinalPOS, resource: Resource, ident: str) -> Any:
    """The item with this id, as parsed JSON."""
    return await client.request("GET", _item_path(resource, ident))


async def delete_one(client: AsyncFinalPOS, resource: Resource, ident: str) -> Any:
    """Delete the item with this id; the API's answer as parsed JSON."""
    return await client.request("DELETE", _item_path(resource, ident))


def print_json(value: Any) -> None:
    """Pretty JSON on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
