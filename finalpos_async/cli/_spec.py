"""The CLI's view of the API: which resources exist and what their create bodies look like.

Read from the spec the package ships, so every resource with a create operation is importable
and a new one in the spec needs no CLI code.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

import attrs

__all__ = ["Resource", "load_resources", "resolve_schema"]

_PREFIX = "/v1/api/"


@attrs.frozen(kw_only=True)
class Resource:
    """One API resource as the CLI sees it (`customers`, `products`, ...)."""

    name: str
    create_path: str | None
    create_schema: Mapping[str, Any] | None
    create_schema_name: str | None
    item_path: str | None  # with "{id}"
    list_path: str | None
    item_schema: Mapping[str, Any] | None
    has_get: bool
    has_delete: bool


def _plural(word: str) -> str:
    if word.endswith("s"):
        return word
    if word.endswith("y") and not word.endswith(("ay", "ey", "oy", "uy")):
        return word[:-1] + "ies"
    return word + "s"


@functools.lru_cache(maxsize=1)
def _spec() -> Mapping[str, Any]:
    text = (resources.files("finalpos_async") / "spec" / "finalpos-openapi.json").read_text(
        encoding="utf-8"
    )
    spec: Mapping[str, Any] = json.loads(text)
    return spec


def resolve_schema(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow `$ref` and single-element `allOf` to the schema they name."""
    spec = _spec()
    seen = 0
    while True:
        seen += 1
        if seen > 32:
            raise ValueError("spec schema references loop")
        if "$ref" in schema:
            name = str(schema["$ref"]).rsplit("/", 1)[-1]
            schema = spec["components"]["schemas"][name]
        elif "allOf" in schema and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def _json_schema(op: Mapping[str, Any], *, response: bool) -> Mapping[str, Any] | None:
    if response:
        for status in ("200", "201"):
            content = op.get("responses", {}).get(status, {}).get("content", {})
            if "application/json" in content:
                schema: Mapping[str, Any] = content["application/json"].get("schema", {})
                return schema
        return None
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    found: Mapping[str, Any] | None = body.get("schema")
    return found


@functools.lru_cache(maxsize=1)
def load_resources() -> dict[str, Resource]:
    """Every resource of the spec, keyed by its plural CLI name (`customers`)."""
    spec = _spec()
    found: dict[str, dict[str, Any]] = {}
    for path, ops in spec["paths"].items():
        if not path.startswith(_PREFIX):
            continue
        rest = path[len(_PREFIX) :]
        segment = rest.split("/", 1)[0]
        name = _plural(segment)
        entry = found.setdefault(name, {})
        is_item = bool(re.search(r"/\{[^}]+\}$", rest))
        if is_item:
            entry["item_path"] = re.sub(r"\{[^}]+\}$", "{id}", path)
            entry["has_get"] = "get" in ops
            entry["has_delete"] = "delete" in ops
            if "get" in ops:
                entry["item_schema"] = _json_schema(ops["get"], response=True)
        else:
            if "post" in ops:
                entry["create_path"] = path
                schema = _json_schema(ops["post"], response=False)
                if schema is not None:
                    entry["create_schema_name"] = str(schema.get("$ref", "")).rsplit("/", 1)[-1]
                    entry["create_schema"] = resolve_schema(schema)
                entry.setdefault("item_schema", _json_schema(ops["post"], response=True))
            if "get" in ops:
                listed = _json_schema(ops["get"], response=True)
                if listed is not None and listed.get("type") == "array":
                    entry["list_path"] = path
                    entry.setdefault("item_schema", listed.get("items"))
    table: dict[str, Resource] = {}
    for name, entry in sorted(found.items()):
        item_schema = entry.get("item_schema")
        table[name] = Resource(
            name=name,
            create_path=entry.get("create_path"),
            create_schema=entry.get("create_schema"),
            create_schema_name=entry.get("create_schema_name"),
            item_path=entry.get("item_path"),
            list_path=entry.get("list_path"),
            item_schema=resolve_schema(item_schema) if item_schema else None,
            has_get=entry.get("has_get", False),
            has_delete=entry.get("has_delete", False),
        )
    return table


def find_resource(name: str) -> Resource | None:
    """A resource by CLI name: plural or singular, `-` or `_` (`custom_table_rows`)."""
    table = load_resources()
    wanted = _plural(name.strip().lower().replace("_", "-"))
    return table.get(wanted)
