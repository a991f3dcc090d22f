"""End-to-end through `AsyncFinalPOS`: every generated resource method against the sandbox.

Each generated method's docstring names its operation (`POST /v1/api/customer`); the test finds
every method that way, so a resource added by the generator is covered without editing this file.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

import finalpos_async._client as client_module
import finalpos_async.resources as resources_module
from finalpos_async import _converter as converter
from finalpos_async.sandbox import Sandbox
from finalpos_async.sandbox._routes import Route, build_route_table
from finalpos_async.sandbox._validation import default_for
from finalpos_async.spec import load_spec

ROUTES = build_route_table(load_spec())
OPERATIONS = {(op.method, op.path): op for op in ROUTES.routes}
_ENDPOINT = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`]+)`")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _resource_methods() -> list[tuple[str, str, Route]]:
    """(client attribute, method name, operation) for every generated resource method."""
    found = []
    for attribute, class_name in resources_module.RESOURCES.items():
        module = importlib.import_module(f"finalpos_async.resources.{attribute}")
        resource_class = getattr(module, class_name)
        for name, function in inspect.getmembers(resource_class, inspect.isfunction):
            match = _ENDPOINT.search(function.__doc__ or "")
            if name.startswith("_") or match is None:
                continue
            op = OPERATIONS.get((match.group(1), match.group(2)))
            if op is not None:
                found.append((attribute, name, op))
    return found


METHODS = _resource_methods()
CREATE_METHODS = {
    op.collection: (attr, name, op) for attr, name, op in METHODS if op.kind == "create"
}


def _create_kwargs(op: Route) -> dict[str, Any]:
    schema = op.body_schema or {}
    properties = schema.get("properties") or {}
    return {
        _snake(name): default_for(properties.get(name, {})) for name in schema.get("required", [])
    }


def _wire(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(model)
    return data


def _wire_id(data: dict[str, Any]) -> str:
    return str(data["id"]) if "id" in data else str(data["_id"]["$oid"])


def test_every_spec_operation_has_a_client_method() -> None:
    covered = {(op.method, op.path) for _, _, op in METHODS}
    assert covered == set(OPERATIONS), set(OPERATIONS) - covered


@pytest.mark.parametrize(
    ("attribute", "method", "op"), METHODS, ids=[f"{a}.{m}" for a, m, _ in METHODS]
)
async def test_client_method_round_trips_through_the_sandbox(
    finalpos_sandbox: Sandbox, attribute: str, method: str, op: Route
) -> None:
    async with client_module.AsyncFinalPOS(
        api_key=finalpos_sandbox.api_key, base_url=finalpos_sandbox.url, max_retries=0
    ) as client:
        created_wire: dict[str, Any] | None = None
        if op.collection in CREATE_METHODS:
            c_attr, c_name, c_op = CREATE_METHODS[op.collection]
            create: Callable[..., Any] = getattr(getattr(client, c_attr), c_name)
            created_wire = _wire(await create(**_create_kwargs(c_op)))
        call: Callable[..., Any] = getattr(getattr(client, attribute), method)
        if op.kind == "create":
            assert created_wire is not None
            assert re.fullmatch(r"[0-9a-f]{24}", _wire_id(created_wire))
        elif op.kind == "find_one":
            assert created_wire is not None
            assert _wire(await call(_wire_id(created_wire))) == created_wire
        elif op.kind == "update":
            assert created_wire is not None
            updated = _wire(await call(_wire_id(created_wire)))
            assert _wire_id(updated) == _wire_id(created_wire)
            assert updated["updatedAt"] > created_wire["updatedAt"]
        elif op.kind == "delete":
            assert created_wire is not None
            rid = _wire_id(created_wire)
            result = _wire(await call(rid))
            assert result == {
                "statusCode": 200,
                "message": f"Resource with Id {rid} deleted successfully",
            }
        elif op.kind == "find_all":
            required = {_snake(p.name): "a" * 24 for p in op.query_params if p.required}
            items = [item async for item in call(**required)]
            if created_wire is not None and not required:
                assert [_wire(item) for item in items] == [created_wire]
            else:
                assert items == []
