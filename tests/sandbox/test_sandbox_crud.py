"""The sandbox serves every spec operation statefully, through generic handlers (raw HTTP)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from finalpos_async.operations import OPERATIONS, MethodInfo, ParamInfo
from finalpos_async.sandbox import Sandbox
from finalpos_async.sandbox._routes import Route, build_route_table
from finalpos_async.sandbox._validation import default_for
from finalpos_async.spec import check_value, load_spec

ROUTES = build_route_table(load_spec())
HEX24 = re.compile(r"^[0-9a-f]{24}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


def minimal_body(op: Route) -> dict[str, Any]:
    """The required fields of an operation's body, filled from the spec's examples."""
    schema = op.body_schema or {}
    properties = schema.get("properties") or {}
    return {name: default_for(properties.get(name, {})) for name in schema.get("required", [])}


def record_id(record: dict[str, Any]) -> str:
    """The record's id, whether it is `id` or a MongoDB-style `_id: {"$oid": ...}`."""
    if "id" in record:
        return str(record["id"])
    return str(record["_id"]["$oid"])


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


async def create(http: aiohttp.ClientSession, op: Route, **extra: Any) -> dict[str, Any]:
    status, body = await call(http, "POST", op.path, json={**minimal_body(op), **extra})
    assert status == op.success_status, body
    assert isinstance(body, dict)
    return body


CREATES = {op.collection: op for op in ROUTES.routes if op.kind == "create"}


def test_route_table_covers_all_52_operations_with_generic_kinds() -> None:
    assert len(ROUTES.routes) == 52
    assert {op.kind for op in ROUTES.routes} <= {
        "create",
        "find_one",
        "update",
        "delete",
        "find_all",
    }
    by_id = {op.operation_id: op for op in ROUTES.routes}
    assert by_id["CustomersController_findAll"].collection == "CustomerDto"
    assert by_id["CustomerController_delete"].collection == "CustomerDto"
    # a plural list without a documented body still finds its singular's records
    assert by_id["CustomTableRowsController_findAll"].collection == "CustomTableRowDto"


@pytest.mark.parametrize(
    "op",
    [op for op in ROUTES.routes if op.kind != "create" and op.collection in CREATES],
    ids=lambda op: op.operation_id,
)
async def test_every_operation_of_a_creatable_resource_sees_created_state(
    http: aiohttp.ClientSession, op: Route
) -> None:
    created = await create(http, CREATES[op.collection])
    rid = record_id(created)
    if op.kind == "find_one":
        status, body = await call(http, "GET", op.path.replace("{id}", rid))
        assert (status, body) == (200, created)
    elif op.kind == "update":
        status, body = await call(http, op.method, op.path.replace("{id}", rid), json={})
        assert status == 200
        assert record_id(body) == rid
        assert body.get("updatedAt", "") >= created.get("updatedAt", "")
    elif op.kind == "delete":
        status, body = await call(http, "DELETE", op.path.replace("{id}", rid))
        assert status == 200
        assert body == {
            "statusCode": 200,
            "message": f"Resource with Id {rid} deleted successfully",
        }
        status, _ = await call(http, "DELETE", op.path.replace("{id}", rid))
        assert status == 404
    elif op.kind == "find_all":
        params = {p.name: "0" for p in op.query_params if p.name in ("skip", "limit")}
        for p in op.query_params:
            if p.required:
                params[p.name] = "x"
        status, body = await call(http, "GET", op.path, params=params)
        assert status == 200
        if not any(p.required for p in op.query_params):
            assert body == [created]


@pytest.mark.parametrize("op", list(CREATES.values()), ids=lambda op: op.operation_id)
async def test_create_answers_a_record_that_conforms_to_the_response_schema(
    http: aiohttp.ClientSession, op: Route
) -> None:
    record = await create(http, op)
    assert HEX24.match(record_id(record))
    assert op.entity_schema is not None
    assert check_value(record, op.entity_schema, "response") is None
    for name in ("createdAt", "updatedAt"):
        if name in (op.entity_schema.get("properties") or {name: None}):
            assert TIMESTAMP.match(record[name])


async def test_customer_create_fills_system_fields_and_keeps_unknown_fields(
    http: aiohttp.ClientSession, finalpos_sandbox: Sandbox
) -> None:
    customer = await create(http, CREATES["CustomerDto"], loyaltyTier="gold", score=7)
    assert HEX24.match(customer["id"])
    assert HEX24.match(customer["companyId"])
    assert customer["createdAt"] == customer["updatedAt"]
    assert customer["loyaltyTier"] == "gold"
    assert customer["score"] == 7
    assert customer["fromFinal"] is False


async def test_customer_with_external_id_is_from_final(http: aiohttp.ClientSession) -> None:
    customer = await create(http, CREATES["CustomerDto"], externalId="crm-1")
    assert customer["fromFinal"] is True


async def test_server_owned_fields_in_a_body_are_ignored(http: aiohttp.ClientSession) -> None:
    customer = await create(http, CREATES["CustomerDto"], id="f" * 24, companyId="nope")
    assert customer["id"] != "f" * 24
    assert customer["companyId"] != "nope"


async def test_outlet_sequence_numbers_increase(http: aiohttp.ClientSession) -> None:
    numbers = [(await create(http, CREATES["OutletDto"]))["sequenceNumber"] for _ in range(3)]
    assert numbers == [1, 2, 3]


async def test_update_merges_fields_and_bumps_updated_at(http: aiohttp.ClientSession) -> None:
    customer = await create(http, CREATES["CustomerDto"], phone="+100")
    status, updated = await call(
        http, "PUT", f"/v1/api/customer/{customer['id']}", json={"firstName": "Grace"}
    )
    assert status == 200
    assert updated["firstName"] == "Grace"
    assert updated["phone"] == "+100"  # untouched fields survive
    assert updated["createdAt"] == customer["createdAt"]
    assert updated["updatedAt"] > customer["updatedAt"]
    status, fetched = await call(http, "GET", f"/v1/api/customer/{customer['id']}")
    assert (status, fetched) == (200, updated)


async def test_an_update_null_clears_the_field_and_a_create_null_is_refused(
    http: aiohttp.ClientSession,
) -> None:
    # The spec marks every update field nullable and no create or answer field: null clears.
    customer = await create(http, CREATES["CustomerDto"], phone="+100", billing={"city": "Oslo"})
    path = f"/v1/api/customer/{customer['id']}"
    status, updated = await call(http, "PUT", path, json={"phone": None, "billing": None})
    assert status == 200, updated
    assert "phone" not in updated
    assert "billing" not in updated
    assert updated["email"] == customer["email"]
    assert await call(http, "GET", path) == (200, updated)
    # A null the update body does not allow (a field only the record has) is still refused.
    status, answer = await call(http, "PUT", path, json={"fromFinal": None})
    assert status == 400
    assert answer["message"] == "Validation failed: Field `fromFinal` must be a boolean."
    status, answer = await call(
        http,
        "POST",
        "/v1/api/customer",
        json={**minimal_body(CREATES["CustomerDto"]), "phone": None},
    )
    assert status == 400
    assert answer["message"] == "Validation failed: Field `phone` must be a string."


async def test_money_must_be_a_decimal_string(http: aiohttp.ClientSession) -> None:
    customer = await create(http, CREATES["CustomerDto"], totalSpent="-12.50")
    assert customer["totalSpent"] == "-12.50"
    for bad in ("1e3", "12,50", " 1.5", "1."):
        status, answer = await call(
            http,
            "POST",
            "/v1/api/customer",
            json={**minimal_body(CREATES["CustomerDto"]), "totalSpent": bad},
        )
        assert status == 400, bad
        assert answer["message"] == (
            "Validation failed: Field `totalSpent` must be a decimal string such as 1000.50."
        )


async def test_lists_answer_bare_arrays_in_creation_order_and_honour_skip_limit(
    http: aiohttp.ClientSession,
) -> None:
    ids = [(await create(http, CREATES["CustomerDto"]))["id"] for _ in range(5)]
    status, everything = await call(http, "GET", "/v1/api/customers")
    assert status == 200
    assert [c["id"] for c in everything] == ids
    _, page = await call(http, "GET", "/v1/api/customers", params={"skip": "2", "limit": "2"})
    assert [c["id"] for c in page] == ids[2:4]
    _, tail = await call(http, "GET", "/v1/api/customers", params={"skip": "4", "limit": "2"})
    assert [c["id"] for c in tail] == ids[4:]
    _, none = await call(http, "GET", "/v1/api/customers", params={"skip": "10", "limit": "2"})
    assert none == []
    # an update keeps the record's place in the order
    await call(http, "PUT", f"/v1/api/customer/{ids[0]}", json={"lastName": "X"})
    _, again = await call(http, "GET", "/v1/api/customers")
    assert [c["id"] for c in again] == ids


async def test_list_query_filters_match_object_id_fields(http: aiohttp.ClientSession) -> None:
    table_a, table_b = "a" * 24, "b" * 24
    row_op = CREATES["CustomTableRowDto"]
    row = await create(http, row_op, tableId={"$oid": table_a})
    await create(http, row_op, tableId={"$oid": table_b})
    status, rows = await call(http, "GET", "/v1/api/custom-table-rows", params={"tableId": table_a})
    assert status == 200
    assert rows == [row]


async def test_lists_of_undocumented_collections_answer_empty_arrays(
    http: aiohttp.ClientSession,
) -> None:
    status, tables = await call(http, "GET", "/v1/api/custom-tables")
    assert (status, tables) == (200, [])
    status, fields = await call(
        http, "GET", "/v1/api/custom-table-fields", params={"tableId": "a" * 24}
    )
    assert (status, fields) == (200, [])


def widget_rows() -> tuple[MethodInfo, ...]:
    """Operation-table rows for the widget operations below (what the generator would write)."""
    common: dict[str, Any] = {
        "resource": "widgets",
        "query_params": (),
        "body_fields": (),
        "body_schema": None,
        "response_schema": "WidgetDto",
        "body_model": None,
        "response_model": "Widget",
        "success_status": 200,
        "collection": "WidgetDto",
    }
    item = (ParamInfo("id", "id", True),)
    return (
        MethodInfo(
            **{**common, "success_status": 201, "body_fields": (ParamInfo("size", "size", True),)},
            name="create",
            kind="create",
            operation_id="WidgetController_create",
            http_method="POST",
            path="/v1/api/widget",
            path_params=(),
        ),
        MethodInfo(
            **common,
            name="retrieve",
            kind="retrieve",
            operation_id="WidgetController_findOne",
            http_method="GET",
            path="/v1/api/widget/{id}",
            path_params=item,
        ),
        MethodInfo(
            **common,
            name="list",
            kind="list",
            operation_id="WidgetsController_findAll",
            http_method="GET",
            path="/v1/api/widgets",
            path_params=(),
        ),
    )


async def test_a_new_operation_is_served_from_its_table_row_without_new_code(
    tmp_path: Path,
) -> None:
    spec = load_spec()
    spec = copy.deepcopy(spec)
    spec["components"]["schemas"]["WidgetDto"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"},
            "updatedAt": {"type": "string", "format": "date-time"},
            "companyId": {"type": "string"},
            "size": {"type": "number"},
        },
    }
    spec["components"]["schemas"]["CreateWidgetDto"] = {
        "type": "object",
        "required": ["size"],
        "properties": {"size": {"type": "number"}},
    }
    widget = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WidgetDto"}}}
    }
    body = {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/CreateWidgetDto"}}
        },
    }
    spec["paths"]["/v1/api/widget"] = {
        "post": {
            "operationId": "WidgetController_create",
            "requestBody": body,
            "responses": {"201": {"description": "created", **widget}},
        },
    }
    spec["paths"]["/v1/api/widget/{id}"] = {
        "get": {
            "operationId": "WidgetController_findOne",
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"200": {"description": "ok", **widget}},
        },
    }
    spec["paths"]["/v1/api/widgets"] = {
        "get": {
            "operationId": "WidgetsController_findAll",
            "responses": {
                "200": {
                    "description": "ok",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/WidgetDto"},
                            }
                        }
                    },
                }
            },
        },
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    async with (
        Sandbox(spec=str(path), operations=(*OPERATIONS, *widget_rows())) as sandbox,
        aiohttp.ClientSession(sandbox.url, headers={"x-api-key": sandbox.api_key}) as session,
    ):
        status, made = await call(session, "POST", "/v1/api/widget", json={"size": 3})
        assert status == 201
        assert made["size"] == 3
        status, bad = await call(session, "POST", "/v1/api/widget", json={"size": "big"})
        assert status == 400
        assert "`size`" in bad["message"]
        assert (await call(session, "GET", f"/v1/api/widget/{made['id']}")) == (200, made)
        assert (await call(session, "GET", "/v1/api/widgets")) == (200, [made])


async def test_huge_skip_and_limit_values_are_accepted(http: aiohttp.ClientSession) -> None:
    await create(http, CREATES["CustomerDto"])
    status, page = await call(http, "GET", "/v1/api/customers", params={"skip": "1e300"})
    assert (status, page) == (200, [])
    status, page = await call(http, "GET", "/v1/api/customers", params={"limit": "-1e300"})
    assert status == 200
    assert len(page) == 1


async def test_an_operation_without_a_table_row_answers_501() -> None:
    rows = tuple(op for op in OPERATIONS if op.operation_id != "CustomerController_delete")
    async with (
        Sandbox(operations=rows) as sandbox,
        aiohttp.ClientSession(sandbox.url, headers={"x-api-key": sandbox.api_key}) as session,
    ):
        made = await create(session, CREATES["CustomerDto"])
        status, _ = await call(session, "DELETE", f"/v1/api/customer/{made['id']}")
        assert status == 501
        status, _ = await call(session, "GET", f"/v1/api/customer/{made['id']}")
        assert status == 200
