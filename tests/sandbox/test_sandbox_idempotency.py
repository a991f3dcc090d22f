"""`Idempotency-Key`: a repeated POST replays its first answer; another body with it is a 409."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

CUSTOMER = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}


async def post(
    http: aiohttp.ClientSession, body: Any, key: str | None
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Idempotency-Key": key} if key else {}
    async with http.post("/v1/api/customer", json=body, headers=headers) as response:
        return response.status, json.loads(await response.text()), dict(response.headers)


async def count(http: aiohttp.ClientSession) -> int:
    async with http.get("/v1/api/customers") as response:
        return len(await response.json())


async def test_same_key_and_body_replays_without_a_duplicate(http: aiohttp.ClientSession) -> None:
    first = await post(http, CUSTOMER, "key-1")
    second = await post(http, dict(reversed(list(CUSTOMER.items()))), "key-1")  # key order differs
    assert first[0] == second[0] == 201
    assert first[1] == second[1]
    assert second[2].get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first[2]
    assert await count(http) == 1


async def test_same_key_with_another_body_is_409(http: aiohttp.ClientSession) -> None:
    await post(http, CUSTOMER, "key-2")
    status, body, _ = await post(http, {**CUSTOMER, "firstName": "Grace"}, "key-2")
    assert status == 409
    assert body["error"] == "Conflict"
    assert "key-2" in body["message"]
    assert await count(http) == 1


async def test_without_a_key_every_post_creates(http: aiohttp.ClientSession) -> None:
    await post(http, CUSTOMER, None)
    await post(http, CUSTOMER, None)
    assert await count(http) == 2


async def test_concurrent_requests_with_one_key_create_once(http: aiohttp.ClientSession) -> None:
    results = await asyncio.gather(*(post(http, CUSTOMER, "key-3") for _ in range(10)))
    assert {r[1]["id"] for r in results} == {results[0][1]["id"]}
    assert await count(http) == 1


async def test_a_validation_error_is_replayed_too(http: aiohttp.ClientSession) -> None:
    first = await post(http, {"email": "x"}, "key-4")
    second = await post(http, {"email": "x"}, "key-4")
    assert first[0] == second[0] == 400
    assert first[1] == second[1]
