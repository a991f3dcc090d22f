"""The sandbox answers errors like the API: ErrorResponseDto bodies that name the problem."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import pytest

from finalpos_async.sandbox import Sandbox

CUSTOMER = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as response:
        return response.status, json.loads(await response.text())


def assert_error(body: Any, status: int, *fragments: str) -> None:
    assert set(body) == {"statusCode", "message", "error"}
    assert body["statusCode"] == status
    for fragment in fragments:
        assert fragment in body["message"]


async def test_missing_api_key_is_401(finalpos_sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession(finalpos_sandbox.url) as session:
        status, body = await call(session, "GET", "/v1/api/customers")
    assert status == 401
    assert_error(body, 401, "x-api-key")
    assert body["error"] == "Unauthorized"


async def test_wrong_api_key_is_401_and_not_echoed(finalpos_sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession(
        finalpos_sandbox.url, headers={"x-api-key": "sk_live_secret_123"}
    ) as session:
        status, body = await call(session, "GET", "/v1/api/customers")
    assert status == 401
    assert "sk_live_secret_123" not in json.dumps(body)


@pytest.mark.finalpos_sandbox(api_key="sk_custom_key")
async def test_a_configured_key_is_the_one_accepted(finalpos_sandbox: Sandbox) -> None:
    assert finalpos_sandbox.api_key == "sk_custom_key"
    async with aiohttp.ClientSession(
        finalpos_sandbox.url, headers={"x-api-key": "sk_custom_key"}
    ) as session:
        status, body = await call(session, "GET", "/v1/api/customers")
    assert (status, body) == (200, [])


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({"email": "a@b.c", "firstName": "A"}, ["`lastName`", "required"]),
        ({**CUSTOMER, "email": 5}, ["`email`", "string"]),
        ({**CUSTOMER, "tags": ["ok", 3]}, ["`tags[1]`", "string"]),
        ({**CUSTOMER, "billing": {"city": False}}, ["`billing.city`", "string"]),
        ({**CUSTOMER, "metadata": [{"key": "k", "value": 1}]}, ["`metadata[0].value`"]),
        ({**CUSTOMER, "lastAction": "yesterday"}, ["`lastAction`", "date-time"]),
        # what is stored is answered back, and must pass as a date-time there too
        ({**CUSTOMER, "lastAction": "2024-01-01T12:99:00Z"}, ["`lastAction`", "date-time"]),
        ({**CUSTOMER, "lastAction": "2025-02-29T10:00:00Z"}, ["`lastAction`", "date-time"]),
        ({**CUSTOMER, "lastAction": "2025-01-01T10:00:00"}, ["`lastAction`", "date-time"]),
        ([CUSTOMER], ["JSON object"]),
    ],
)
async def test_invalid_body_is_400_naming_the_field(
    http: aiohttp.ClientSession, body: Any, fragments: list[str]
) -> None:
    status, answer = await call(http, "POST", "/v1/api/customer", json=body)
    assert status == 400
    assert_error(answer, 400, "Validation failed", *fragments)
    assert answer["error"] == "Bad Request"


async def test_nested_required_field_is_named(http: aiohttp.ClientSession) -> None:
    role = {"name": "Manager", "permissions": [{"name": "x"}]}
    status, answer = await call(http, "POST", "/v1/api/roles", json=role)
    assert status == 400
    assert_error(answer, 400, "`permissions[0].")


async def test_malformed_json_is_400(http: aiohttp.ClientSession) -> None:
    status, answer = await call(
        http,
        "POST",
        "/v1/api/customer",
        data=b'{"email": ',
        headers={"content-type": "application/json"},
    )
    assert status == 400
    assert_error(answer, 400, "Malformed JSON")


@pytest.mark.finalpos_sandbox(max_body_size=1024)
async def test_oversized_body_is_413(http: aiohttp.ClientSession) -> None:
    status, answer = await call(
        http, "POST", "/v1/api/customer", json={**CUSTOMER, "pad": "x" * 2048}
    )
    assert status == 413
    assert_error(answer, 413, "1024 bytes")


async def test_unknown_id_is_404(http: aiohttp.ClientSession) -> None:
    status, answer = await call(http, "GET", "/v1/api/customer/" + "0" * 24)
    assert status == 404
    assert_error(answer, 404, "0" * 24)
    assert answer["error"] == "Not Found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/api/customer/0"),
        ("GET", "/v1/api/customer/c_123"),
        ("PUT", "/v1/api/outlet/o1p2q3r4s5t6u7v8w9x0y1z2"),  # the docs' own example id
        ("DELETE", "/v1/api/station/not-an-id"),
        ("GET", "/v1/api/variant/%C3%B5%3B"),
    ],
)
async def test_an_id_of_any_shape_the_store_does_not_hold_is_404(
    http: aiohttp.ClientSession, method: str, path: str
) -> None:
    # the spec's ids are plain strings and no docs page says they are validated: never a 400
    status, answer = await call(http, method, path, json={} if method == "PUT" else None)
    assert status == 404, answer
    assert set(answer) == {"statusCode", "message", "error"}
    assert answer["statusCode"] == 404
    assert answer["error"] == "Not Found"
    assert "not found" in answer["message"]


async def test_an_upper_case_object_id_names_the_same_record(
    http: aiohttp.ClientSession,
) -> None:
    status, created = await call(http, "POST", "/v1/api/customer", json=CUSTOMER)
    assert status == 201
    status, found = await call(http, "GET", f"/v1/api/customer/{created['id'].upper()}")
    assert status == 200
    assert found["id"] == created["id"]


async def test_a_query_parameter_the_operation_does_not_declare_is_400(
    http: aiohttp.ClientSession,
) -> None:
    # a typo must not quietly answer every record
    status, answer = await call(http, "GET", "/v1/api/custom-table-rows", params={"tableid": "x"})
    assert status == 400
    assert_error(answer, 400, "'tableid'", "`tableId`")
    status, answer = await call(http, "GET", "/v1/api/customer/" + "0" * 24, params={"a": "1"})
    assert status == 400
    assert_error(answer, 400, "'a'", "it takes: none")


async def test_query_parameters_are_validated(http: aiohttp.ClientSession) -> None:
    status, answer = await call(http, "GET", "/v1/api/customers", params={"limit": "ten"})
    assert status == 400
    assert_error(answer, 400, "`limit`", "number")
    status, answer = await call(http, "GET", "/v1/api/custom-table-fields")
    assert status == 400
    assert_error(answer, 400, "`tableId`", "required")


async def test_unknown_route_is_404_in_the_api_shape(http: aiohttp.ClientSession) -> None:
    status, answer = await call(http, "PATCH", "/v1/api/customers")
    assert status == 404
    assert_error(answer, 404, "Cannot PATCH /v1/api/customers")


async def test_api_keys_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with Sandbox(api_key="sk_very_secret_key", access_log=True) as sandbox:
        for key in ("sk_very_secret_key", "sk_wrong_secret_key"):
            async with aiohttp.ClientSession(sandbox.url, headers={"x-api-key": key}) as session:
                await call(session, "POST", "/v1/api/customer", json=CUSTOMER)
                await call(session, "GET", "/v1/api/customers")
    assert "/v1/api/customers" in caplog.text  # the requests were logged...
    assert "secret_key" not in caplog.text  # ...without their keys


async def test_a_missing_required_body_is_400(http: aiohttp.ClientSession) -> None:
    status, answer = await call(http, "POST", "/v1/api/account")
    assert status == 400
    assert_error(answer, 400, "request body is required")


async def test_an_id_with_braces_reaches_the_route_and_is_a_404(
    http: aiohttp.ClientSession,
) -> None:
    # the route answers (not the router's "Cannot GET"), and the id is simply not in the store
    status, answer = await call(http, "GET", "/v1/api/custom-table-row/%7B'$oid':%20'x'%7D")
    assert status == 404
    assert_error(answer, 404, "Resource with Id {'$oid': 'x'} not found")


async def test_a_request_line_longer_than_aiohttps_default_is_answered_in_the_api_shape(
    http: aiohttp.ClientSession,
) -> None:
    status, answer = await call(
        http, "GET", "/v1/api/products", params=[("skip", "x" * 100) for _ in range(200)]
    )
    assert status == 400
    assert_error(answer, 400, "`skip`", "number")
