"""Every model leaves the process as JSON and comes back: `to_dict`, `to_json`, `from_dict`."""

from __future__ import annotations

import json
import typing
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, cast

import attrs
import pytest
from fastapi import FastAPI
from spec_examples import SCHEMAS, full_example

import finalpos_async
from finalpos_async import AsyncFinalPOS, Customer, FieldError, Model, Product
from finalpos_async.operations import OPERATIONS, MethodInfo
from finalpos_async.sandbox import Sandbox


def test_to_dict_is_the_wire_form_with_json_ready_values() -> None:
    customer = Customer(
        id="c1",
        email="ada@example.com",
        total_spent=Decimal("1000.50"),
        created_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc),
        tags=["vip"],
        extra={"loyaltyTier": "gold"},
    )
    assert customer.to_dict() == {
        "id": "c1",
        "email": "ada@example.com",
        "totalSpent": "1000.50",
        "createdAt": "2026-01-02T03:04:05.678+00:00",
        "tags": ["vip"],
        "loyaltyTier": "gold",
    }  # unset fields (None) are left out; `extra` is included under its wire name
    assert json.loads(customer.to_json()) == customer.to_dict()
    assert json.loads(customer.to_json(indent=2)) == customer.to_dict()
    assert "\n  " in customer.to_json(indent=2)


def test_from_dict_checks_like_an_answer_and_names_the_field() -> None:
    with pytest.raises(FieldError, match=r"^id: expected string, got number"):
        Customer.from_dict({"id": 5})
    with pytest.raises(FieldError, match=r"^id: expected a value \(required field\)"):
        Customer.from_dict({"email": "a@b.io"})
    with pytest.raises(FieldError, match=r"^billing\.city: expected string, got number"):
        Customer.from_dict({"id": "c1", "billing": {"city": 3}})
    assert isinstance(Customer.from_dict({"id": "c1"}), Model)


def test_a_wrong_value_set_by_hand_is_named_by_to_dict() -> None:
    product = Product.from_dict({"id": "p1", "name": "Tea"})
    product.name = 5  # type: ignore[assignment]  # what an untyped caller may do
    with pytest.raises(FieldError, match=r"^name: "):
        product.to_dict()


# Creates first (the others need their ids), deletes last.
_KIND_ORDER = {"create": 0, "retrieve": 1, "update": 2, "list": 3, "delete": 4}
_MODEL_OPERATIONS = sorted(
    (op for op in OPERATIONS if op.response_model is not None),
    key=lambda op: _KIND_ORDER[op.kind],
)


def _body_example(op: MethodInfo) -> dict[str, Any]:
    """A request body for `op` with every field the spec gives an example for."""
    assert op.body_schema is not None
    example = full_example(SCHEMAS[op.body_schema])
    assert isinstance(example, dict)
    return cast("dict[str, Any]", example)


def _nested_models(value: object) -> Iterator[Model]:
    """Every model inside `value` (itself included), depth first."""
    if isinstance(value, Model):
        yield value
        for field in attrs.fields(type(value)):
            yield from _nested_models(getattr(value, field.name))
    elif isinstance(value, (list, tuple)):
        for item in cast("list[object]", value):
            yield from _nested_models(item)


def _model_classes(cls: type[Model]) -> set[type[Model]]:
    """`cls` and every model class its fields can hold, from the annotations."""
    found = {cls}
    pending = list(typing.get_type_hints(cls).values())
    while pending:
        hint = pending.pop()
        if isinstance(hint, type) and issubclass(hint, Model) and hint not in found:
            found |= _model_classes(hint)
        pending += typing.get_args(hint)
    return found


async def _call(client: AsyncFinalPOS, op: MethodInfo, ids: dict[str, str]) -> list[Any]:
    """Call `op` with the spec's example (and the id created for its collection); the answers."""
    method: Any = getattr(getattr(client, op.resource), op.name)
    args = [ids[op.collection]] if op.path_params else []
    if op.kind == "list":
        return [record async for record in method()]
    kwargs: dict[str, Any] = {}
    if op.body_fields:
        example = _body_example(op)
        kwargs = {
            f.python_name: example[f.wire_name] for f in op.body_fields if f.wire_name in example
        }
    answer = await method(*args, **kwargs)
    if op.kind == "create":
        # `id` or `_id` (as the schema names it), a string or an ObjectId `{"$oid": ...}`
        wire = answer.to_dict()
        created = wire.get("id", wire.get("_id"))
        ids[op.collection] = created["$oid"] if isinstance(created, dict) else created
    return [answer]


async def test_every_model_the_sandbox_returns_comes_back_equal_through_its_wire_form() -> None:
    """Every operation of the spec with a response model, driven against the sandbox."""
    covered: set[type[Model]] = set()
    calls = 0
    async with (
        Sandbox() as sandbox,
        AsyncFinalPOS(api_key=sandbox.api_key, base_url=sandbox.url) as client,
    ):
        ids: dict[str, str] = {}
        for op in _MODEL_OPERATIONS:
            answers = await _call(client, op, ids)
            assert answers, f"{op.resource}.{op.name} answered nothing"
            calls += 1
            for record in answers:
                assert type(record).__name__ == op.response_model
                for model in _nested_models(record):
                    again = type(model).from_dict(model.to_dict())
                    assert again == model, (op.resource, op.name, type(model).__name__)
                    assert again.extra == model.extra
                    assert type(model).from_dict(json.loads(model.to_json())) == model
                    covered.add(type(model))
    assert calls == len(_MODEL_OPERATIONS)
    responses = {getattr(finalpos_async, op.response_model) for op in _MODEL_OPERATIONS}
    assert len({c for c in covered if c in responses}) == len(responses)
    # and every model class a response can hold was filled by some answer (nested ones too)
    reachable = set().union(*(_model_classes(c) for c in responses))
    assert {c.__name__ for c in reachable - covered} == set()
    assert covered == reachable


def test_a_fastapi_handler_returns_a_model_as_its_dict() -> None:
    customer = Customer(id="c1", email="ada@example.com", total_spent=Decimal("9.99"))
    app = FastAPI()

    @app.get("/customer")
    def read() -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]  # used by its route
        return customer.to_dict()

    with warnings.catch_warnings():
        # Starlette's test client warns, on import, about the httpx it is built on.
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    answer = TestClient(app).get("/customer")
    assert answer.status_code == 200
    assert answer.json() == {"id": "c1", "email": "ada@example.com", "totalSpent": "9.99"}
    assert Customer.from_dict(answer.json()) == customer
