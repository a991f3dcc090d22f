"""The converter: field paths in errors, money and time on the wire, hooks built once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest

from finalpos_async import NOT_GIVEN, types
from finalpos_async._converter import (
    FieldError,
    MissingFieldError,
    converter,
    structure,
    structure_list,
    unstructure,
    unstructure_params,
)


@pytest.mark.parametrize(
    ("data", "path", "received"),
    [
        ("a string", "", "string"),
        ({"email": 5}, "email", "number"),
        ({"billing": []}, "billing", "array"),
        ({"billing": {"city": True}}, "billing.city", "boolean"),
        ({"tags": ["a", None]}, "tags[1]", "null"),
        ({"metadata": [{"key": "k", "value": "v"}, {"key": "k"}]}, "metadata[1].value", "nothing"),
        ({"createdAt": "yesterday"}, "createdAt", "string"),
        ({"totalSpent": "12,50"}, "totalSpent", "string"),
        ({"totalSpent": "NaN"}, "totalSpent", "string"),
        ({"notes": {"message": "x"}}, "notes", "object"),
    ],
)
def test_a_value_that_does_not_fit_names_the_path_and_the_received_type(
    data: Any, path: str, received: str
) -> None:
    if isinstance(data, dict):
        data = {"id": "c1", **data}  # the id is required; these are about the other fields
    with pytest.raises(FieldError) as caught:
        structure(data, types.Customer)
    assert caught.value.path_str == path
    assert caught.value.received_type == received
    assert str(caught.value).startswith(f"{path or '<root>'}: expected")


def test_a_missing_required_field_is_a_value_error_too() -> None:
    with pytest.raises(MissingFieldError) as caught:
        structure({"statusCode": 200}, types.DeleteResponse)
    assert isinstance(caught.value, ValueError)
    assert caught.value.path_str == "message"


def test_a_response_without_its_id_names_the_id() -> None:
    # The spec lists no required fields on entities; the SDK requires the id (operations.py).
    with pytest.raises(MissingFieldError) as caught:
        structure({"email": "a@b.c"}, types.Customer)
    assert caught.value.path_str == "id"
    with pytest.raises(FieldError, match="id: expected string, got null"):
        structure({"id": None, "email": "a@b.c"}, types.Customer)
    with pytest.raises(MissingFieldError) as caught:
        structure({"_id": {}, "companyId": {"$oid": "c"}, "tableId": {"$oid": "t"}},
                  types.CustomTableRow)  # fmt: skip
    assert caught.value.path_str == "_id.$oid"
    # Timestamps stay optional: the spec does not require them either.
    assert structure({"id": "c1"}, types.Customer).created_at is None


def test_list_items_are_named_by_index() -> None:
    with pytest.raises(FieldError) as caught:
        structure_list([{"id": "a"}, {"id": "b"}, {"id": "c", "email": []}], types.Customer)
    assert caught.value.path_str == "[2].email"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-12-07T19:31:48.436+00:00", datetime(2025, 12, 7, 19, 31, 48, 436000, timezone.utc)),
        ("2025-12-07T19:31:48.436Z", datetime(2025, 12, 7, 19, 31, 48, 436000, timezone.utc)),
        (
            "2025-12-07T21:31:48+02:00",
            datetime(2025, 12, 7, 21, 31, 48, tzinfo=timezone(timedelta(hours=2))),
        ),
        # A naive timestamp is taken as UTC, so every datetime a model holds is aware.
        ("2025-12-07T19:31:48", datetime(2025, 12, 7, 19, 31, 48, tzinfo=timezone.utc)),
    ],
)
def test_timestamps_are_timezone_aware(text: str, expected: datetime) -> None:
    value = structure({"id": "c1", "createdAt": text}, types.Customer).created_at
    assert value == expected
    assert value is not None
    assert value.tzinfo is not None


def test_timestamps_go_back_with_milliseconds_or_finer_precision() -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, 600000, timezone.utc)
    assert (
        unstructure(types.Customer(id="c1", created_at=at))["createdAt"]
        == "2025-01-02T03:04:05.600+00:00"
    )
    fine = at.replace(microsecond=123456)
    assert unstructure(types.Customer(id="c1", created_at=fine))["createdAt"].endswith(
        "05.123456+00:00"
    )


def test_a_naive_datetime_is_refused_on_the_way_out() -> None:
    with pytest.raises(FieldError, match="created_at: expected a timezone-aware datetime"):
        unstructure(types.Customer(id="c1", created_at=datetime(2025, 1, 1)))


def test_money_never_goes_through_float() -> None:
    assert unstructure(types.Customer(id="c1", total_spent=Decimal("0.10")))["totalSpent"] == "0.10"
    big = "123456789012345678901234.99"
    assert (
        unstructure(structure({"id": "c1", "totalSpent": big}, types.Customer))["totalSpent"] == big
    )
    with pytest.raises(FieldError, match="total_spent"):
        unstructure(types.Customer(id="c1", total_spent=0.1))  # type: ignore[arg-type]
    with pytest.raises(FieldError, match="total_spent"):
        unstructure_params(types.CreateCustomer, {"total_spent": 19.99})


def test_money_goes_out_in_fixed_point_notation() -> None:
    # The spec's money pattern (-?[0-9]+(.[0-9]+)?) has no exponent: 1E+3 is sent as 1000.
    for value, sent in (
        (Decimal("1E+3"), "1000"),
        (Decimal("1.5E-7"), "0.00000015"),
        ("2.5e2", "250"),
        (Decimal("-0.10"), "-0.10"),
    ):
        body = unstructure_params(types.UpdateCustomer, {"total_spent": value})
        assert body == {"totalSpent": sent}, value
    assert unstructure(types.Customer(id="c1", total_spent=Decimal("1E+2")))["totalSpent"] == "100"


def test_number_fields_keep_integers_as_integers() -> None:
    variant = structure({"id": "v1", "price": 100, "salePrice": 89.5}, types.Variant)
    assert variant.price == 100
    assert type(variant.price) is int
    assert unstructure(variant) == {"id": "v1", "price": 100, "salePrice": 89.5}
    with pytest.raises(FieldError, match="price: expected number, got boolean"):
        structure({"id": "v1", "price": True}, types.Variant)


def test_unstructure_checks_types_of_hand_built_models() -> None:
    with pytest.raises(FieldError, match=r"billing"):
        unstructure(types.Customer(id="c1", billing={"city": "Paris"}))  # type: ignore[arg-type]
    with pytest.raises(MissingFieldError, match="value"):
        unstructure(types.Metadata(key="k", value=None))  # type: ignore[arg-type]


def test_none_fields_are_left_out_and_extra_is_written_back() -> None:
    customer = types.Customer(id="c1", email=None, extra={"tier": "gold", "id": "not me"})
    # A known field wins over an extra key of the same name.
    assert unstructure(customer) == {"id": "c1", "tier": "gold"}


def test_params_leave_out_not_given_and_send_none_as_null() -> None:
    body = unstructure_params(
        types.UpdateCustomer,
        {"email": NOT_GIVEN, "phone": None, "tags": ("a", "b"), "first_name": "A"},
        {"custom": 1},
    )
    assert body == {"phone": None, "tags": ["a", "b"], "firstName": "A", "custom": 1}


def test_params_refuse_none_for_a_required_field() -> None:
    with pytest.raises(FieldError, match="email"):
        unstructure_params(types.CreateCustomer, {"email": None})


def test_params_refuse_a_string_where_a_list_belongs() -> None:
    with pytest.raises(FieldError, match="tags: expected array, got string"):
        unstructure_params(types.CreateCustomer, {"tags": "vip"})


def test_hooks_are_built_once_per_type() -> None:
    first = converter.get_structure_hook(types.Customer)
    assert converter.get_structure_hook(types.Customer) is first
    assert converter.get_unstructure_hook(types.Customer) is converter.get_unstructure_hook(
        types.Customer
    )


def test_structure_does_not_mutate_its_input_and_str_subclasses_are_accepted() -> None:
    class Name(str):
        pass

    data = {"id": "c1", "firstName": Name("Ann"), "unknown": 1}
    customer = structure(data, types.Customer)
    assert customer.first_name == "Ann"
    assert data == {"id": "c1", "firstName": "Ann", "unknown": 1}


def test_attrs_classes_that_are_not_api_models_keep_cattrs_defaults() -> None:
    @attrs.define
    class Plain:
        count: int

    assert structure({"count": 3}, Plain) == Plain(count=3)
    assert unstructure(Plain(count=3)) == {"count": 3}
