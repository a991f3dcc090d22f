"""Every operation of the table, called once through `MockTransport`: method, path, query, body.

What each generated method hands the transport is the point, so no socket is involved; the last
test round-trips through the sandbox plugin fixture.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import ScriptedTransport, Step, ok
from spec_examples import ROOT, SCHEMAS, SPEC, as_sent, example_of, model_name, resolve

from finalpos_async import AsyncFinalPOS, RawResponse, ResponseValidationError, types
from finalpos_async._pagination import Page

_spec = importlib.util.spec_from_file_location("sdk_methods", ROOT / "scripts" / "sdk_methods.py")
assert _spec is not None
assert _spec.loader is not None
_sdk_methods = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sdk_methods)
OPERATIONS: list[tuple[str, str, str]] = _sdk_methods.SDK_METHODS

BY_ID = {
    op["operationId"]: (verb.upper(), path, op)
    for path, item in SPEC["paths"].items()
    for verb, op in item.items()
}


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name.lstrip("_$")).lower()


def ok_schema(op: dict[str, Any]) -> dict[str, Any]:
    status = min(s for s in op["responses"] if s.startswith("2"))
    content = op["responses"][status].get("content", {})
    return content.get("application/json", {}).get("schema", {})  # type: ignore[no-any-return]


def plan(
    op_id: str, paginated: bool
) -> tuple[str, str, dict[str, str], Any, list[Any], dict[str, Any], Any]:
    """(verb, path, query, body, args, kwargs, answer) for one operation."""
    verb, path, op = BY_ID[op_id]
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    query: dict[str, str] = {}
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = f"{param['name']}-42"
            args.append(value)
            path = path.replace("{" + param["name"] + "}", value)
        elif param["name"] not in ("skip", "limit"):
            kwargs[snake(param["name"])] = f"q-{param['name']}"
            query[param["name"]] = f"q-{param['name']}"
    body: Any = None
    media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    if media:
        schema = resolve(media["schema"])
        required = set(schema.get("required", []))
        body = {}
        optional_given = 0
        for wire, prop in schema["properties"].items():
            if wire in required or optional_given == 0:
                body[wire] = as_sent(example_of(prop))
                kwargs[snake(wire)] = example_of(prop)
                optional_given += wire not in required
            elif optional_given == 1 and prop.get("nullable"):
                # An explicit None is sent as null where the spec allows null (update bodies);
                # every other optional field is left out.
                body[wire] = None
                kwargs[snake(wire)] = None
                optional_given += 1
    schema = ok_schema(op)
    if paginated:
        # Lists answer bare arrays; some list schemas are left empty by the spec.
        query.update({"skip": "0", "limit": "100"})
        item = example_of(schema["items"]) if schema.get("items") else None
        answer: Any = [item or {"id": "row-1"}]
    else:
        answer = example_of(schema) or {"id": "z-1"}
    return verb, path, query, body, args, kwargs, answer


def result_type(op_id: str, paginated: bool) -> type:
    schema = ok_schema(BY_ID[op_id][2])
    if paginated:
        return Page
    ref = schema.get("$ref")
    return getattr(types, model_name(ref.rsplit("/", 1)[1])) if ref else dict  # type: ignore[no-any-return]


def test_the_table_covers_every_operation_of_the_spec() -> None:
    assert len(OPERATIONS) == 52
    assert {row[2] for row in OPERATIONS} == set(BY_ID)


@pytest.mark.parametrize(
    ("attribute", "method", "op_id"), OPERATIONS, ids=[r[2] for r in OPERATIONS]
)
async def test_operation_sends_the_documented_request(
    scripted: ScriptedTransport, attribute: str, method: str, op_id: str
) -> None:
    paginated = method.startswith("list")
    verb, path, query, body, args, kwargs, answer = plan(op_id, paginated)
    scripted.play(Step(201 if verb == "POST" else 200, answer))
    async with scripted.client() as client:
        bound = getattr(getattr(client, attribute), method)
        result = bound(*args, **kwargs)
        result = await result  # a paginator gives its first page when awaited
    assert isinstance(result, result_type(op_id, paginated))
    (seen,) = scripted.seen
    assert seen.method == verb
    url = urlsplit(seen.path)
    assert url.path == path
    assert dict(parse_qsl(url.query)) == query
    if body is None:
        assert seen.body == b""
    else:
        assert json.loads(seen.body) == body


async def test_required_body_fields_are_required_arguments(
    scripted: ScriptedTransport,
) -> None:
    async with scripted.client() as client:
        with pytest.raises(TypeError, match="last_name"):
            await client.customers.create(email="a@b.c", first_name="A")  # type: ignore[call-arg]
    assert scripted.attempts == 0


async def test_wrong_argument_type_names_the_field_before_any_request(
    scripted: ScriptedTransport,
) -> None:
    async with scripted.client() as client:
        with pytest.raises(TypeError, match=r"first_name: expected string, got number"):
            await client.customers.create(email="a@b.c", first_name=5, last_name="B")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"billing\.city: expected string, got number"):
            await client.customers.update("c1", billing={"city": 75})
        with pytest.raises(TypeError, match=r"metadata\[1\]"):
            await client.customers.update(
                "c1", metadata=[{"key": "a", "value": "b"}, {"key": "c", "value": 1}]
            )
        with pytest.raises(TypeError, match=r"total_spent"):
            await client.customers.update("c1", total_spent=10.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"metadata\[0\]\.value"):
            await client.customers.update("c1", metadata=[{"key": "a"}])
        with pytest.raises(TypeError, match="'id'"):
            await client.customers.retrieve(7)  # type: ignore[arg-type]
    assert scripted.attempts == 0


async def test_bad_query_argument_names_the_python_argument_when_the_list_is_made(
    scripted: ScriptedTransport,
) -> None:
    async with scripted.client() as client:
        # Raised by the call itself, before any paginator exists or any request is sent.
        with pytest.raises(ValueError, match=r"'table_id' must be a finite number"):
            client.custom_tables.list_rows(table_id=float("nan"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"'row_id' has a value of type object"):
            client.custom_tables.list_values(table_id="t1", row_id=object())  # type: ignore[arg-type]
    assert scripted.attempts == 0


async def test_update_sends_only_given_fields_and_none_as_null(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok({"id": "c1"}))
    async with scripted.client() as client:
        await client.customers.update(
            "c1",
            phone=None,
            total_spent=Decimal("12.30"),
            billing=types.Address(city="Paris"),
            extra_body={"loyaltyTier": "gold"},
        )
    (seen,) = scripted.seen
    assert json.loads(seen.body) == {
        "phone": None,
        "totalSpent": "12.30",
        "billing": {"city": "Paris"},
        "loyaltyTier": "gold",
    }


async def test_nested_mapping_may_use_python_or_wire_names(scripted: ScriptedTransport) -> None:
    scripted.play(ok({"id": "c1"}))
    async with scripted.client() as client:
        await client.customers.update("c1", billing={"first_name": "A", "postCode": "1"})
    assert json.loads(scripted.seen[0].body) == {"billing": {"firstName": "A", "postCode": "1"}}


async def test_with_raw_response_gives_status_headers_and_the_parsed_model(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(Step(200, {"id": "c1", "totalSpent": "5.00"}, {"x-request-id": "req-9"}))
    async with scripted.client() as client:
        raw = await client.customers.with_raw_response.retrieve("c1")
        assert isinstance(raw, RawResponse)
        assert raw.status_code == 200
        assert raw.headers["X-Request-Id"] == "req-9"
        assert raw.attempts == 1
        assert raw.elapsed >= 0
        customer = raw.parse()
        assert isinstance(customer, types.Customer)
        assert customer.total_spent == Decimal("5.00")
        scripted.play(ok([{"id": "c1"}, {"id": "c2"}]))
        page_raw = await client.customers.with_raw_response.list(limit=5)
        page = page_raw.parse()
        assert [c.id for c in page] == ["c1", "c2"]
        assert (page.skip, page.limit) == (0, 5)


async def test_body_that_does_not_fit_raises_response_validation_error(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok({"id": "c1", "billing": "not an object"}))
    async with scripted.client() as client:
        with pytest.raises(ResponseValidationError) as caught:
            await client.customers.retrieve("c1")
    assert caught.value.field_path == "billing"
    assert "got string" in str(caught.value)
    assert caught.value.response is not None


async def test_missing_required_response_field_is_reported(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok({"statusCode": 200}))
    async with scripted.client() as client:
        with pytest.raises(ResponseValidationError) as caught:
            await client.customers.delete("c1")
    assert caught.value.field_path == "message"


async def test_an_entity_without_its_id_raises_response_validation_error_naming_id(
    scripted: ScriptedTransport,
) -> None:
    # The spec requires the id of every entity an operation answers with, so `customer.id` is a
    # `str` and a body without one is an error, not a Customer(id=None).
    scripted.play(ok({"email": "a@b.c"}), ok([{"id": "c1"}, {"email": "a@b.c"}]))
    async with scripted.client() as client:
        with pytest.raises(ResponseValidationError) as caught:
            await client.customers.retrieve("c1")
        assert caught.value.field_path == "id"
        assert "Customer" in str(caught.value)
        with pytest.raises(ResponseValidationError) as caught:
            await client.customers.list()
        assert caught.value.field_path == "[1].id"
        # The raw twin reports the same when its body is parsed.
        scripted.play(ok({"email": "a@b.c"}))
        raw = await client.customers.with_raw_response.retrieve("c1")
        with pytest.raises(ResponseValidationError) as caught:
            raw.parse()
        assert caught.value.field_path == "id"


def test_every_entity_an_operation_answers_with_requires_its_id() -> None:
    import attrs

    for attribute, method, op_id in OPERATIONS:
        schema = ok_schema(BY_ID[op_id][2])
        ref = (schema.get("items", {}) if method.startswith("list") else schema).get("$ref")
        if ref is None:
            continue
        model = getattr(types, model_name(ref.rsplit("/", 1)[1]))
        fields = attrs.fields_dict(model)
        if "id" in fields:
            assert fields["id"].default is attrs.NOTHING, (attribute, method)
            assert model.__annotations__["id"] in ("str", "ObjectId"), (attribute, method)
        # Timestamps follow the spec, which does not require them.
        for name in ("created_at", "updated_at"):
            if name in fields:
                assert fields[name].default is None, (model, name)


async def test_delete_returns_the_delete_response_model(scripted: ScriptedTransport) -> None:
    scripted.play(ok({"statusCode": 200, "message": "Resource with Id c1 deleted"}))
    async with scripted.client() as client:
        answer = await client.customers.delete("c1")
    assert answer == types.DeleteResponse(status_code=200, message="Resource with Id c1 deleted")


def test_resource_methods_are_plain_coroutines_with_explicit_keywords() -> None:
    from finalpos_async.resources.customers import AsyncCustomers

    assert inspect.iscoroutinefunction(AsyncCustomers.create)
    assert not inspect.iscoroutinefunction(AsyncCustomers.list)
    params = inspect.signature(AsyncCustomers.create).parameters
    assert all(p.kind is not p.VAR_KEYWORD for p in params.values())
    assert params["email"].default is inspect.Parameter.empty
    assert AsyncCustomers.create.__doc__ is not None
    assert "Create a new customer" in AsyncCustomers.create.__doc__


def test_generated_files_carry_the_do_not_edit_header() -> None:
    for folder in ("types", "resources"):
        for path in (Path(ROOT) / "finalpos_async" / folder).glob("*.py"):
            assert "Do not edit" in path.read_text().splitlines()[1], path


def test_spec_schemas_are_all_known() -> None:
    assert len(SCHEMAS) == 61


async def test_custom_fields_survive_read_modify_write_through_the_sandbox(
    finalpos_client: AsyncFinalPOS,
) -> None:
    customers = finalpos_client.customers
    made = await customers.create(
        email="rmw@example.com",
        first_name="Read",
        last_name="Write",
        total_spent="10.50",
        billing={"city": "Paris"},
        extra_body={"loyaltyTier": "gold"},
    )
    fetched = await customers.retrieve(made.id)
    assert fetched == made
    assert fetched.extra == {"loyaltyTier": "gold"}
    updated = await customers.update(made.id, phone="+33100000000")
    assert updated.extra == {"loyaltyTier": "gold"}
    assert updated.total_spent == Decimal("10.50")
    assert (await customers.delete(made.id)).status_code == 200
