"""Every model leaves the process as JSON and comes back: `to_dict`, `to_json`, `from_dict`."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI

from finalpos_async import AsyncFinalPOS, Customer, FieldError, Model, Product
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


@pytest.fixture
async def seeded() -> AsyncIterator[dict[str, list[Any]]]:
    """One record of every resource the sandbox can create, as the typed client returns it."""
    async with (
        Sandbox() as sandbox,
        AsyncFinalPOS(api_key=sandbox.api_key, base_url=sandbox.url) as client,
    ):
        await client.customers.create(
            email="ada@example.com",
            first_name="Ada",
            last_name="Lovelace",
            total_spent=Decimal("12.30"),
            billing={"city": "London"},
            tags=["a", "b"],
        )
        await client.categories.create(name="Drinks", description="Hot and cold")
        await client.outlets.create(
            name="Main street",
            address="1 Main street",
            city="Porto",
            state="Porto",
            country="PT",
            post_code="4000-001",
            phone="+351 22 000 0000",
        )
        answers: dict[str, list[Any]] = {}
        for name in ("customers", "categories", "outlets"):
            answers[name] = [record async for record in getattr(client, name).list()]
        yield answers


async def test_every_answer_comes_back_equal_through_its_wire_form(
    seeded: dict[str, list[Any]],
) -> None:
    checked = 0
    for records in seeded.values():
        for record in records:
            assert isinstance(record, Model)
            again = type(record).from_dict(record.to_dict())
            assert again == record
            assert again.extra == record.extra
            assert type(record).from_dict(json.loads(record.to_json())) == record
            checked += 1
    assert checked == 3


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
