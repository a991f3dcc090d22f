"""A list page is built from a decode of its own, letting go of each record as its model is
built (fewer objects alive at once, so fewer full garbage collections per page), with the
same models, the same errors and an untouched body in the error's response."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ScriptedServer, ok
from multidict import CIMultiDict, CIMultiDictProxy

from finalpos_async import RawResponse, ResponseValidationError
from finalpos_async._converter import FieldError, structure_list
from finalpos_async.types import Customer

README = Path(__file__).resolve().parents[2] / "README.md"


def record(index: int) -> dict[str, Any]:
    """A customer with every kind of field: dates, money, nested models, lists, an extra key."""
    return {
        "id": f"c{index}",
        "createdAt": "2025-12-07T19:31:48.436+00:00",
        "email": f"c{index}@example.com",
        "fromFinal": index % 2 == 0,
        "totalSpent": f"{index}.50",
        "tags": ["vip", "loyal"],
        "billing": {"firstName": "John", "city": "New York", "floor": 3},
        "metadata": [{"key": "source", "value": "bench"}],
        "notes": [{"createdAt": "2025-12-07T19:31:48Z", "message": "hi"}],
        "loyaltyTier": "gold",
    }


def response(body: bytes) -> RawResponse[Any]:
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
    return RawResponse(
        status_code=200,
        headers=headers,
        content=body,
        elapsed=0.0,
        attempts=1,
        request_id=None,
        method="GET",
        url="http://127.0.0.1/v1/api/customers",
    )


def test_consuming_structure_builds_the_same_models_and_lets_go_of_each_record() -> None:
    data = [record(i) for i in range(5)]
    kept = copy.deepcopy(data)
    plain = structure_list(kept, Customer)
    consumed = structure_list(data, Customer, consume=True)
    assert consumed == plain
    assert [c.extra for c in consumed] == [{"loyaltyTier": "gold"}] * 5
    assert consumed[0].billing is not None
    assert consumed[0].billing.extra == {"floor": 3}
    assert data == [None] * 5  # every decoded record released
    assert kept == [record(i) for i in range(5)]  # the plain path leaves its input alone


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("email", 5, "[2].email"),
        ("tags", ["vip", 7], "[2].tags[1]"),
        ("tags", "vip", "[2].tags"),
        ("billing", {"city": 1}, "[2].billing.city"),
        ("metadata", [{"key": "k", "value": "v"}, {"key": "k"}], "[2].metadata[1].value"),
        ("totalSpent", "NaN", "[2].totalSpent"),
        ("createdAt", "yesterday", "[2].createdAt"),
    ],
)
def test_consuming_structure_names_a_bad_field_as_the_plain_one_does(
    field: str, value: object, path: str
) -> None:
    errors = []
    for consume in (False, True):
        data = [record(i) for i in range(4)]
        data[2][field] = value
        with pytest.raises(FieldError) as caught:
            structure_list(data, Customer, consume=consume)
        errors.append((caught.value.path_str, str(caught.value), type(caught.value)))
    assert errors[0] == errors[1]
    assert errors[0][0] == path


def test_optional_fields_take_null_and_refuse_a_wrong_type() -> None:
    data = record(1) | {"email": None, "tags": None, "fromFinal": None}
    (customer,) = structure_list([data], Customer, consume=True)
    assert (customer.email, customer.tags, customer.from_final) == (None, None, None)
    with pytest.raises(FieldError) as caught:
        structure_list([record(1) | {"fromFinal": "yes"}], Customer, consume=True)
    assert caught.value.path_str == "[0].fromFinal"
    assert "boolean" in str(caught.value)


def test_decode_gives_a_fresh_object_and_leaves_json_cached() -> None:
    raw = response(b'[{"id": "c1"}]')
    first, second = raw.decode(), raw.decode()
    assert first == second == [{"id": "c1"}]
    assert first is not second
    cached = raw.json()
    assert cached is raw.json()
    assert raw.decode() is not cached
    first[0] = None  # the caller owns what `decode()` gave
    assert raw.json() == [{"id": "c1"}]
    assert response(b" \n").decode() is None


def test_decode_refuses_what_json_refuses_with_the_same_message() -> None:
    messages = []
    for read in (RawResponse.decode, RawResponse.json):
        with pytest.raises(ResponseValidationError) as caught:
            read(response(b"<html>oops</html>"))
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "response body is not valid JSON" in messages[0]


async def test_a_bad_page_error_keeps_the_whole_body_in_its_response(
    scripted_server: ScriptedServer,
) -> None:
    body = [record(0), record(1) | {"email": 5}, record(2)]
    scripted_server.play(ok(body))
    async with scripted_server.client() as client:
        with pytest.raises(ResponseValidationError) as caught:
            _ = [c async for c in client.customers.list(limit=3)]
    error = caught.value
    assert error.field_path == "[1].email"
    assert error.response is not None
    assert error.response.json() == body  # not the half-released decode the page was built from


async def test_walks_and_raw_pages_give_the_same_models(scripted_server: ScriptedServer) -> None:
    body = [record(i) for i in range(3)]
    scripted_server.play(ok(body), ok(body))
    async with scripted_server.client() as client:
        walked = [c async for c in client.customers.list(limit=5)]
        raw = await client.customers.with_raw_response.list(limit=5)
        page = raw.parse()
    assert list(page) == walked
    assert raw.json() == body  # the raw page's parser leaves the cached body alone


def test_readme_says_how_a_page_is_built() -> None:
    text = re.sub(r"\s+", " ", README.read_text())
    assert "each record's decoded JSON is released as soon as its model is built" in text
