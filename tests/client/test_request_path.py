"""The request path through `MockTransport`: headers, auth, query, body, responses, errors.

What the client hands its transport (`Request`: method, URL, query, headers, body) and what it
makes of the answer; no socket is involved. Retries are `test_retries.py`'s.
"""

from __future__ import annotations

import copy
import pickle
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import ScriptedTransport, Step, ok

from finalpos_async import (
    APIStatusError,
    AsyncFinalPOS,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FinalPOSError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RawResponse,
    Request,
    RequestOptions,
    ResponseValidationError,
    UnprocessableEntityError,
    __version__,
    encode_path_param,
)
from finalpos_async._exceptions import make_status_error

BASE = "https://api.finalpos.com"
KEY = "sk_live_SECRET_do_not_leak_1234"


@pytest.fixture
async def client(scripted: ScriptedTransport) -> AsyncIterator[AsyncFinalPOS]:
    async with scripted.client(api_key=KEY, base_url=BASE, backoff_cap=0.002) as c:
        yield c


def sent(scripted: ScriptedTransport, method: str = "GET") -> list[Request]:
    """Every attempt the transports were handed for `method`, in order."""
    return [r for t in scripted.transports for r in t.requests if r.method == method]


# ---------------------------------------------------------------------------------- headers


async def test_every_request_carries_auth_user_agent_and_accept(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    scripted.play(ok([]))
    await client.request("GET", "/v1/api/customers")
    (call,) = sent(scripted)
    headers = call.headers
    assert headers["x-api-key"] == KEY
    assert headers["Accept"] == "application/json"
    agent = headers["User-Agent"]
    assert re.fullmatch(
        rf"finalpos-python/{re.escape(__version__)} python/\d+\.\d+\.\d+\S* aiohttp/\S+", agent
    )
    assert "Idempotency-Key" not in headers
    assert "Content-Type" not in headers


async def test_post_sends_json_with_one_idempotency_key(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    scripted.play(Step(201, {"id": "c1"}))
    raw = await client.send("POST", "/v1/api/customer", json={"name": "Ada", "vip": True})
    (call,) = sent(scripted, "POST")
    headers = call.headers
    assert headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f-]{36}", headers["Idempotency-Key"])
    assert raw.idempotency_key == headers["Idempotency-Key"]
    assert call.content == b'{"name":"Ada","vip":true}'
    assert raw.status_code == 201
    assert raw.json() == {"id": "c1"}


async def test_each_logical_post_gets_its_own_key(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    scripted.play(ok({}))
    first = await client.send("POST", "/v1/api/customer", json={})
    second = await client.send("POST", "/v1/api/customer", json={})
    assert first.idempotency_key != second.idempotency_key


async def test_extra_headers_override_and_caller_key_is_sent(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    scripted.play(ok({}))
    await client.request(
        "put",
        "/v1/api/customer/c1",
        json={},
        extra_headers={"Accept": "application/x-custom", "X-Trace": "t-1"},
        idempotency_key="my-key",
    )
    (call,) = sent(scripted, "PUT")
    headers = call.headers
    assert headers["Accept"] == "application/x-custom"
    assert headers["X-Trace"] == "t-1"
    assert headers["Idempotency-Key"] == "my-key"


async def test_default_headers_apply_to_every_call(scripted: ScriptedTransport) -> None:
    scripted.play(ok({}))
    async with scripted.client(
        api_key=KEY, base_url=BASE, default_headers={"X-Tenant": "t1"}
    ) as client:
        await client.request("GET", "/v1/api/a")
        view = client.with_options(default_headers={"X-Extra": "e"})
        await view.request("GET", "/v1/api/b")
    first, second = sent(scripted)
    assert first.headers["X-Tenant"] == "t1"
    assert "X-Extra" not in first.headers
    assert second.headers["X-Tenant"] == "t1"
    assert second.headers["X-Extra"] == "e"


async def test_header_injection_is_refused(client: AsyncFinalPOS) -> None:
    with pytest.raises(ValueError, match="extra_headers"):
        await client.request("GET", "/v1/api/x", extra_headers={"X-A": "1\r\nX-Evil: 2"})


# ------------------------------------------------------------------------------------ query


async def test_query_parameters_are_flattened(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    scripted.play(ok([]))
    await client.send(
        "GET",
        "/v1/api/customers",
        params={"skip": 0, "limit": 10, "active": True, "gone": None, "tag": ["a", "b"]},
        options=RequestOptions(extra_query={"debug": False}),
    )
    (call,) = sent(scripted)
    assert call.url == f"{BASE}/v1/api/customers"
    # The multiset is what matters (a repeated name keeps its values' order).
    assert sorted(call.query) == [
        ("active", "true"),
        ("debug", "false"),
        ("limit", "10"),
        ("skip", "0"),
        ("tag", "a"),
        ("tag", "b"),
    ]


async def test_unsendable_query_value_names_the_parameter(client: AsyncFinalPOS) -> None:
    with pytest.raises(TypeError, match="'filter'"):
        await client.request("GET", "/v1/api/customers", params={"filter": {"a": 1}})


@pytest.mark.parametrize("path", ["v1/api/customers", "https://evil.example/v1", "/a\r\nb"])
async def test_bad_paths_are_refused(client: AsyncFinalPOS, path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        await client.request("GET", path)


# --------------------------------------------------------------------------- path encoding


def test_encode_path_param_escapes_everything() -> None:
    assert encode_path_param("abc-123", "id") == "abc-123"
    assert encode_path_param("a/b?c#d", "id") == "a%2Fb%3Fc%23d"
    assert encode_path_param("ä b", "id") == "%C3%A4%20b"


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("", ValueError, "'customer_id' must not be empty"),
        ("a\nb", ValueError, "'customer_id' contains the control character"),
        ("a\r", ValueError, "'customer_id'"),
        ("..", ValueError, "'customer_id'"),
        (42, TypeError, "'customer_id' must be a str, got int"),
        (None, TypeError, "'customer_id'"),
    ],
)
def test_encode_path_param_rejects_bad_values_naming_them(
    value: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        encode_path_param(value, "customer_id")


# ------------------------------------------------------------------------------ responses


async def test_raw_response_fields(client: AsyncFinalPOS, scripted: ScriptedTransport) -> None:
    scripted.play(Step(200, [{"id": 1}], {"X-Request-Id": "req-9"}))
    raw = await client.send("GET", "/v1/api/customers")
    assert isinstance(raw, RawResponse)
    assert raw.status_code == 200
    assert raw.request_id == "req-9"
    assert raw.headers["x-request-id"] == "req-9"  # case-insensitive
    assert raw.method == "GET"
    assert raw.url == f"{BASE}/v1/api/customers"
    assert raw.attempts == 1
    assert raw.elapsed >= 0
    assert raw.json() is raw.json()  # decoded once
    assert raw.parse() == [{"id": 1}]
    counted = raw.with_parser(len)
    assert counted.parse() == 1
    assert counted.status_code == 200


async def test_empty_success_body_is_none(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    scripted.play(Step(204, ""))
    assert await client.request("DELETE", "/v1/api/customer/c1") is None


async def test_invalid_json_on_success_is_a_response_validation_error(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    scripted.play(Step(200, "<html>oops</html>"))
    with pytest.raises(ResponseValidationError, match="not valid JSON") as info:
        await client.request("GET", "/v1/api/customers")
    assert info.value.response is not None
    assert info.value.response.status_code == 200
    assert info.value.url == f"{BASE}/v1/api/customers"


# --------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (503, InternalServerError),
        (418, APIStatusError),
    ],
)
async def test_statuses_map_to_typed_errors(
    client: AsyncFinalPOS, scripted: ScriptedTransport, status: int, cls: type[APIStatusError]
) -> None:
    body = {"statusCode": status, "message": "Customer not found", "error": "Nope"}
    scripted.play(Step(status, body, {"x-request-id": "r-1"}))
    with pytest.raises(cls) as info:
        await client.request("GET", "/v1/api/customer/c1", max_retries=0)
    error = info.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.body == body
    assert error.message == "Customer not found"
    assert error.error == "Nope"
    assert error.request_id == "r-1"
    assert error.headers["X-Request-Id"] == "r-1"
    assert error.method == "GET"
    assert error.url == f"{BASE}/v1/api/customer/c1"
    assert error.attempts == 1
    assert error.idempotency_key is None
    assert f"HTTP {status}" in str(error)
    assert "Customer not found" in str(error)
    assert "request id r-1" in str(error)
    assert KEY not in str(error)
    assert KEY not in repr(error)


async def test_validation_message_lists_are_joined(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    body = {"statusCode": 400, "message": ["name must be a string", "email is invalid"]}
    scripted.play(Step(400, body))
    with pytest.raises(BadRequestError) as info:
        await client.request("POST", "/v1/api/customer", json={"name": 1})
    assert info.value.message == "name must be a string; email is invalid"
    assert info.value.idempotency_key is not None


async def test_error_without_a_body_still_reads_well(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    scripted.play(Step(401, ""))
    with pytest.raises(AuthenticationError) as info:
        await client.request("GET", "/v1/api/customers")
    assert info.value.message == "Unauthorized"
    assert info.value.body is None
    assert info.value.text == ""


async def test_long_error_text_is_truncated(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    scripted.play(Step(400, "x" * 10_000))
    with pytest.raises(BadRequestError) as info:
        await client.request("GET", "/v1/api/customers")
    assert len(info.value.text) < 2100
    assert "truncated" in info.value.text
    assert len(info.value.message) < 400


def test_html_502_message_from_the_title() -> None:
    raw: RawResponse[Any] = RawResponse(
        status_code=502,
        headers={},
        content=b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>",
        elapsed=0.0,
        attempts=1,
        request_id=None,
        method="GET",
        url=f"{BASE}/x",
    )
    error = make_status_error(raw)
    assert isinstance(error, InternalServerError)
    assert error.message == "502 Bad Gateway"


def test_html_page_without_title_falls_back_to_visible_text() -> None:
    raw: RawResponse[Any] = RawResponse(
        status_code=503,
        headers={},
        content=b"<html><body><script>x()</script><p>Service &amp; API down</p></body></html>",
        elapsed=0.0,
        attempts=1,
        request_id=None,
        method="GET",
        url=f"{BASE}/x",
    )
    assert make_status_error(raw).message == "Service & API down"


async def test_errors_are_finalpos_errors(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    scripted.play(Step(404, {"message": "nope"}))
    with pytest.raises(FinalPOSError):
        await client.request("GET", "/v1/api/customer/x")


async def test_errors_survive_copy_and_pickle(
    client: AsyncFinalPOS, scripted: ScriptedTransport
) -> None:
    body = {"statusCode": 409, "message": "duplicate email"}
    scripted.play(Step(409, body, {"x-request-id": "r-7"}))
    with pytest.raises(ConflictError) as info:
        await client.request("POST", "/v1/api/customer", json={})
    for clone in (copy.copy(info.value), pickle.loads(pickle.dumps(info.value))):
        assert type(clone) is ConflictError
        assert str(clone) == str(info.value)
        assert clone.status_code == 409
        assert clone.body == body
        assert clone.headers["X-Request-Id"] == "r-7"
        assert clone.idempotency_key == info.value.idempotency_key
        assert clone.response.json() == body
