"""The one `$ref` resolver: the OpenAPI document, and its schemas made self-contained.

`inline_schema` follows every `$ref` and merges every `allOf` (the outer schema's own keywords,
such as `nullable` or `example`, win over the part's), so that what reads a schema (the sandbox's
routes and checks, the CLI's row checks and CSV columns) sees plain nested dictionaries.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from collections.abc import Mapping
from typing import Any, cast

__all__ = ["component", "inline_schema", "load_spec"]


def load_spec(path: str | None = None) -> dict[str, Any]:
    """Load the OpenAPI document: `path` if given, else the copy shipped in the package."""
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
        return data
    resource = importlib.resources.files("finalpos_async") / "spec" / "finalpos-openapi.json"
    loaded: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return loaded


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


@functools.lru_cache(maxsize=1)
def _shipped_spec() -> Mapping[str, Any]:
    return load_spec()


@functools.cache
def component(name: str) -> Mapping[str, Any]:
    """The shipped spec's schema component `name`, inlined (do not change it: it is shared)."""
    spec = _shipped_spec()
    inlined: Mapping[str, Any] = inline_schema(spec["components"]["schemas"][name], spec)
    return inlined
