"""Every documented example of the spec reads into its model and writes back to the same JSON."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest
from spec_examples import SCHEMAS, as_sent, model_name, operation_examples, schema_examples

from finalpos_async import types
from finalpos_async._converter import MissingFieldError, structure, unstructure


def model_for(schema_name: str) -> type:
    return getattr(types, model_name(schema_name))  # type: ignore[no-any-return]


@pytest.mark.parametrize(("schema_name", "example"), schema_examples(), ids=lambda v: str(v)[:40])
def test_schema_example_round_trips_to_the_same_json(schema_name: str, example: Any) -> None:
    original = copy.deepcopy(example)
    model = structure(example, model_for(schema_name))
    assert unstructure(model) == as_sent(original)
    assert example == original  # structuring did not change the input


@pytest.mark.parametrize(
    ("where", "schema_name", "example"), operation_examples(), ids=lambda v: str(v)[:50]
)
def test_operation_example_round_trips_to_the_same_json(
    where: str, schema_name: str, example: Any
) -> None:
    model = structure(example, model_for(schema_name))
    assert unstructure(model) == as_sent(example), where


def test_every_schema_has_a_model_and_every_model_is_exported() -> None:
    assert {model_name(n) for n in SCHEMAS} == set(types.__all__)


def test_a_model_requires_exactly_what_the_spec_requires() -> None:
    # The spec's `required` lists and nothing else: the record ids of the entities operations
    # answer with are among them (tests/client/test_resources_wire.py checks that), timestamps are
    # not.
    for name, schema in SCHEMAS.items():
        model = model_for(name)
        wire = {
            f.name: f.metadata.get("wire", f.name) for f in attrs.fields(model) if f.name != "extra"
        }
        required = {
            f.name for f in attrs.fields(model) if f.name != "extra" and f.default is attrs.NOTHING
        }
        expected = set(schema.get("required", []))
        assert {wire[n] if wire[n] != n else _camel(n) for n in required} == expected, name


def test_the_generator_types_a_field_by_the_spec_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from spec_examples import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    field = importlib.import_module("codegen.spec").Field  # the generator's reading of a property
    money = field("total", {"type": "string", "format": "decimal", "example": "10"}, False)
    assert (money.model_type, money.param_type) == ("Decimal", "Decimal | str")
    # An example that looks like money is not money: only `format: decimal` says so.
    assert field("code", {"type": "string", "example": "1.50"}, False).model_type == "str"
    assert field("at", {"type": "string", "format": "date-time"}, False).model_type == "datetime"
    assert field("x", {"type": "string", "nullable": True}, False).nullable
    either = field("x", {"type": ["string", "null"]}, False)  # OpenAPI 3.1's spelling
    assert (either.nullable, either.model_type, either.json_type) == (True, "str", "string")
    assert not field("x", {"type": "string"}, False).nullable


def test_no_docstring_repeats_the_specs_provenance_notes() -> None:
    # `x-provenance` says where the spec's text came from (docs pages, guesses): not for users.
    from spec_examples import ROOT, SPEC

    notes: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("x-provenance"), str):
                notes.append(" ".join(node["x-provenance"].split()))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(SPEC)
    assert len(notes) > 100
    generated = [
        path
        for folder in (
            "finalpos_async/types",
            "finalpos_async/resources",
            "finalpos_sync/resources",
        )
        for path in (ROOT / folder).glob("*.py")
    ]
    text = " ".join(" ".join(p.read_text(encoding="utf-8").split()) for p in generated)
    found = [note for note in notes if note in text]
    assert not found
    # The notes' tell-tale words are gone too (the generator used to strip them by pattern).
    for word in (".md", "curl", "stored docs", "Schema name ours", "The docs also mention"):
        assert word not in text, word


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def test_an_entity_body_without_its_id_is_refused_but_timestamps_may_be_missing() -> None:
    with pytest.raises(MissingFieldError) as caught:
        structure({"email": "a@b.c"}, types.Customer)
    assert caught.value.path_str == "id"
    customer = structure({"id": "c1"}, types.Customer)
    assert (customer.created_at, customer.updated_at) == (None, None)


def test_money_is_decimal_and_timestamps_are_aware_datetimes() -> None:
    data = {
        "id": "c1",
        "createdAt": "2025-12-07T19:31:48.436+00:00",
        "totalSpent": "1000.50",
        "notes": [{"createdAt": "2025-12-07T19:31:48.436+00:00", "message": "hi"}],
    }
    customer = structure(data, types.Customer)
    assert customer.total_spent == Decimal("1000.50")
    assert isinstance(customer.total_spent, Decimal)
    assert customer.created_at == datetime(2025, 12, 7, 19, 31, 48, 436000, tzinfo=timezone.utc)
    assert customer.created_at is not None
    assert customer.created_at.utcoffset() == timedelta(0)
    # Trailing zeros of money survive: "1000.50" goes back as "1000.50", not "1000.5".
    assert unstructure(customer)["totalSpent"] == "1000.50"


def test_unknown_fields_survive_a_read_modify_write_round_trip() -> None:
    data = {
        "id": "c1",
        "email": "a@example.com",
        "loyaltyTier": "gold",  # a custom-table field the spec cannot know
        "billing": {"city": "Paris", "floor": 3},
        "metadata": [{"key": "k", "value": "v", "source": "pos"}],
    }
    customer = structure(copy.deepcopy(data), types.Customer)
    assert customer.extra == {"loyaltyTier": "gold"}
    assert customer.billing is not None
    assert customer.billing.extra == {"floor": 3}
    customer.email = "b@example.com"
    written = unstructure(customer)
    assert written == {**data, "email": "b@example.com"}


def test_extra_is_not_part_of_equality() -> None:
    a = structure({"id": "x", "new": 1}, types.Customer)
    b = structure({"id": "x", "new": 2}, types.Customer)
    assert a == b
    assert "extra" in [f.name for f in attrs.fields(types.Customer)]


def test_schema_without_properties_keeps_everything_in_extra() -> None:
    body = {"id": "z1", "triggerType": "new_order", "createdAt": "2025-01-01T00:00:00.000Z"}
    trigger = structure(dict(body), types.ZapierTrigger)
    assert trigger.extra == body
    assert unstructure(trigger) == body


def test_unknown_enum_value_is_kept_not_rejected() -> None:
    error = structure(
        {"statusCode": 418, "message": "short and stout", "error": "I'm a teapot"},
        types.ErrorResponse,
    )
    assert error.error == "I'm a teapot"


def test_wire_names_that_are_not_camel_case_map_both_ways() -> None:
    row = structure(
        {"_id": {"$oid": "507f"}, "companyId": {"$oid": "c"}, "tableId": {"$oid": "t1"}},
        types.CustomTableRow,
    )
    assert row.id.oid == "507f"
    assert unstructure(row) == {
        "_id": {"$oid": "507f"},
        "companyId": {"$oid": "c"},
        "tableId": {"$oid": "t1"},
    }
