"""The shipped operation table (`finalpos_async.operations`) matches the methods and the spec."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

import finalpos_async.types as types
from finalpos_async import AsyncFinalPOS
from finalpos_async.operations import OPERATIONS, find

SPEC = json.loads(
    (Path(__file__).parents[2] / "finalpos_async/spec/finalpos-openapi.json").read_text()
)


def test_every_spec_operation_has_one_row() -> None:
    in_spec = {
        op["operationId"]
        for item in SPEC["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    ids = [op.operation_id for op in OPERATIONS]
    assert sorted(ids) == sorted(in_spec)


async def test_every_row_is_a_method_of_the_client_with_its_arguments() -> None:
    async with AsyncFinalPOS(api_key="sk_test", base_url="http://127.0.0.1:9") as client:
        for op in OPERATIONS:
            method = getattr(getattr(client, op.resource), op.name)
            names = set(inspect.signature(method).parameters)
            wanted = {p.python_name for p in (*op.path_params, *op.query_params, *op.body_fields)}
            assert wanted <= names, op.qualified_name
            assert ("max_items" in names) == op.paginated, op.qualified_name


async def test_an_argument_takes_none_exactly_where_the_spec_allows_null() -> None:
    # Update bodies mark every field nullable (None sends null, which clears the field); no
    # create field is, so a create argument takes no None. Both flavours share the signatures.
    schemas = SPEC["components"]["schemas"]
    nullable_seen = 0
    async with AsyncFinalPOS(api_key="sk_test", base_url="http://127.0.0.1:9") as client:
        for op in OPERATIONS:
            if op.body_schema is None:
                continue
            properties = schemas[op.body_schema]["properties"]
            method = getattr(getattr(client, op.resource), op.name)
            parameters = inspect.signature(method).parameters
            for param in op.body_fields:
                annotation = str(parameters[param.python_name].annotation)
                nullable = bool(properties[param.wire_name].get("nullable"))
                nullable_seen += nullable
                assert annotation.endswith("| None]") == nullable, (op.qualified_name, annotation)
                assert nullable == (op.kind == "update"), op.qualified_name
    assert nullable_seen >= 80  # the nine update bodies' fields


def test_the_readme_says_the_types_come_from_the_spec() -> None:
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    for words in (
        "A model requires exactly the fields the spec lists as required",
        "Money is a `Decimal` where the spec says `format: decimal`",
        "a `datetime` where it says `format: date-time`",
        "`phone=None` sends an explicit null, which clears the field",
        "a create argument takes no `None`",
        "its `x-provenance`, is left out",
    ):
        assert words in readme, words
    assert "REQUIRED_IN_RESPONSES" not in readme  # the table is gone: the spec says it


def test_models_and_collections() -> None:
    for op in OPERATIONS:
        for model in (op.body_model, op.response_model):
            if model is not None:
                assert hasattr(types, model), model
    create = find("customers", "create")
    assert (create.kind, create.http_method, create.success_status) == ("create", "POST", 201)
    assert create.body_model == "CreateCustomer"
    assert create.response_model == "Customer"
    assert {p.wire_name for p in create.body_fields if p.required} == {
        "email",
        "firstName",
        "lastName",
    }
    # one store for the item paths and the plural list path
    assert {find("customers", n).collection for n in ("create", "delete", "list")} == {
        "CustomerDto"
    }
    assert find("custom_tables", "list_rows").collection == "CustomTableRowDto"
    assert find("customers", "retrieve").path_params[0].wire_name == "id"
    with pytest.raises(KeyError, match=r"customers\.nope"):
        find("customers", "nope")


def test_the_former_names_stay_importable_as_aliases() -> None:
    # Renamed so that each concept has one name (`MethodInfo` is a row of this table, the
    # sandbox serves `Route`s, the bulk engine runs a `BulkOperation`); the public old names are
    # aliases of the new ones, so code that imports them goes on working.
    from finalpos_async import bulk, operations

    assert operations.Operation is operations.MethodInfo
    assert operations.Param is operations.ParamInfo
    assert isinstance(OPERATIONS[0], operations.Operation)
    assert all(isinstance(p, operations.Param) for op in OPERATIONS for p in op.path_params)
    assert bulk.Operation is bulk.BulkOperation
    assert {"Operation", "BulkOperation"} <= set(bulk.__all__)
